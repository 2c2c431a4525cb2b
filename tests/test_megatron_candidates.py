"""A golden_values file as Megatron's CI writes it (and its _2nd pair) is a candidate run: diff
judges it against the store's golden and stages it, pending lists it, approve writes it."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from goldens.cli import app
from goldens.core.errors import FormatError
from goldens.files.formats.golden import read_golden
from goldens.files.formats.run import megatron_run, read_run
from goldens.store import GoldenStore
from goldens.store.dialect import megatron_value

CASE = "bert_tiny"
STEPS = range(1, 21)


def golden_doc(scale: float = 1.0, steps=STEPS, nan_before: int | None = None) -> dict:
    """Two metrics over ``steps``; ``nan_before``: "nan" before that step, as an older _2nd file pads."""
    def padded(value):
        return {str(s): ("nan" if nan_before is not None and s < nan_before else value(s)) for s in steps}

    steps = list(steps)
    grid = {"start_step": steps[0], "end_step": steps[-1], "step_interval": 1}
    return {"lm loss": {**grid, "values": padded(lambda s: 10.0 - 0.25 * s * scale)},
            "num-zeros": {**grid, "values": padded(lambda s: float(100 + s))}}


def write(path: Path, doc: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=4))
    return path


@pytest.fixture
def store(tmp_path) -> GoldenStore:
    root = tmp_path / "store"
    write(root / CASE / "golden_values_dev_dgx_h100.json", golden_doc())
    (root / CASE / "model_config.yaml").write_text("MODEL_ARGS: {}\n")
    return GoldenStore(root)


def golden(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env={"CI": "", **(env or {})})


def test_a_pair_becomes_a_run_with_both_phases(tmp_path):
    first = write(tmp_path / CASE / "golden_values_dev_dgx_h100.json", golden_doc())
    write(tmp_path / CASE / "golden_values_dev_dgx_h100_2nd.json", golden_doc(nan_before=11))
    run = read_run(first)
    assert run.case == CASE and run.status == "complete" and run.fingerprint is None
    assert (run.provenance["env"], run.provenance["platform"]) == ("dev", "dgx_h100")
    assert sorted(run.phases) == [1, 2]
    second = run.phases[2]
    assert (second.first_step, second.last_step, second.resumed_from) == (11, 20, 10)
    assert second.metrics["lm loss"].steps.tolist() == list(range(11, 21))  # the padding is not a step it ran
    assert second.metrics["lm loss"].start_step == 1  # the grid header is kept as written
    assert read_run(tmp_path / CASE / "golden_values_dev_dgx_h100_2nd.json").run_id == run.run_id  # same files
    assert run.run_id.startswith("golden_values_dev_dgx_h100-")


def test_the_run_id_follows_the_content_and_flags_override_the_target(tmp_path):
    path = write(tmp_path / CASE / "golden_values_dev_dgx_h100.json", golden_doc())
    before = megatron_run(path)
    write(path, golden_doc(1.01))
    after = megatron_run(path, env="lts", platform="dgx_a100")
    assert before.run_id != after.run_id
    assert (after.provenance["env"], after.provenance["platform"]) == ("lts", "dgx_a100")


@pytest.mark.parametrize("doc, message", [
    ({"lm loss": {"start_step": 1, "end_step": 1, "step_interval": 1, "values": {"1": 1.0}},
      "iteration_timing_avg": 0.5}, "scalar entries (iteration_timing_avg) cannot be a candidate run"),
    ({"lm loss": {"start_step": 1, "end_step": 2, "step_interval": 1, "values": {"1": "nan", "2": "nan"}}},
     "no metric has a value at any step"),
])
def test_what_cannot_be_a_run_is_refused_naming_the_file(tmp_path, doc, message):
    path = write(tmp_path / CASE / "golden_values_dev_cpu.json", doc)
    with pytest.raises(FormatError, match=re.escape(message)) as info:
        megatron_run(path)
    assert str(path) in str(info.value)


def test_diff_judges_a_ci_file_against_the_store_and_stages_it(store, tmp_path):
    candidate = write(tmp_path / "ci" / CASE / "golden_values_dev_dgx_h100.json", golden_doc(1.2))
    out = golden("diff", str(candidate), "--store", str(store.root))
    assert out.exit_code == 1, out.output
    assert f"staged {CASE} dev/dgx_h100" in out.stderr
    pending = golden("pending", "--store", str(store.root), "--json")
    [staged] = json.loads(pending.stdout)
    assert staged["artifact"] == str(candidate.resolve()) and staged["verdict"] == "fail"
    assert golden("diff", str(store.case_dir(CASE) / "golden_values_dev_dgx_h100.json"),
                  "--store", str(store.root)).exit_code == 0  # the golden itself passes


def test_approve_writes_the_ci_file_and_it_then_passes(store, tmp_path):
    candidate = write(tmp_path / "ci" / CASE / "golden_values_dev_dgx_h100.json", golden_doc(1.2))
    assert golden("diff", str(candidate), "--store", str(store.root)).exit_code == 1
    out = golden("approve", "--pending", "--store", str(store.root), "--reason", "new container",
                 "--approver", "ada")
    assert out.exit_code == 0, out.output
    written = read_golden(store.case_dir(CASE) / "golden_values_dev_dgx_h100.json")
    assert written.metrics["lm loss"].values.tolist() == [  # a Megatron tree: as its extraction writes them
        megatron_value(v) for v in read_golden(candidate).metrics["lm loss"].values.tolist()]
    entry = store.history(CASE)[-1]
    assert entry.approver == "ada" and entry.source_run_id == megatron_run(candidate).run_id
    assert golden("diff", str(candidate), "--store", str(store.root)).exit_code == 0


def test_approve_a_file_for_another_target_with_flags(store, tmp_path):
    candidate = write(tmp_path / "ci" / CASE / "golden_values_dev_dgx_h100.json", golden_doc(1.1))
    out = golden("approve", str(candidate), "--env", "lts", "--platform", "dgx_a100", "--store", str(store.root),
                 "--reason", "a100 goldens from the h100 run", "--approver", "ada")
    assert out.exit_code == 0, out.output
    assert (store.case_dir(CASE) / "golden_values_lts_dgx_a100.json").is_file()
