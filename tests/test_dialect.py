"""Write dialects: a Megatron tree gets its files exactly as Megatron's own extraction writes them
(values rounded as it rounds them, its grid header, each file's layout), our store full precision;
a file a change does not touch is never rewritten."""
from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from goldens.cli import app
from goldens.cli.extras import missing_reason
from goldens.core.model import GoldenKey, GoldenSet, MetricSeries
from goldens.files.formats.golden import metric_to_json, parse_golden, read_golden
from goldens.files.validate import validate_golden_file
from goldens.store import GoldenStore
from goldens.store.dialect import (
    FULL,
    MEGATRON,
    detect_layout,
    megatron_series,
    megatron_value,
    render,
    render_megatron,
)
from tests.builders import (
    MODEL_CONFIG,
    megatron_artifact,
    megatron_doc,
    odd_tree,
    series,
    tree_bytes,
    write_tensorboard,
)
from tests.oracle import megatron_oracle


def golden(*args: str):
    return CliRunner().invoke(app, list(args), env={"CI": ""})


def extraction_recipe(value: float) -> float:
    """Megatron's extraction, by hand: TensorBoard keeps a float32, the extractor rounds to 5 decimals."""
    return round(struct.unpack("<f", struct.pack("<f", value))[0], 5)


# ---------------------------------------------------------------- values and headers

def test_values_are_rounded_as_the_extraction_rounds_them():
    rng = random.Random(12)
    values = [rng.uniform(-20, 20) for _ in range(2000)] + [rng.uniform(0, 3e9) for _ in range(200)]
    values += [10.929539680480957, 1754654208.0, 1e-05, 0.123455, 2.5e-6]
    assert [megatron_value(v) for v in values] == [extraction_recipe(v) for v in values]
    assert megatron_value(10.929539680480957) == 10.92954   # the example
    assert all(megatron_value(megatron_value(v)) == megatron_value(v) for v in values)  # idempotent


@pytest.mark.parametrize("steps, header", [
    ([1, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50], (1, 50, 5)),   # the grid: Megatron writes 5
    (list(range(2, 25, 2)), (2, 24, 2)),                       # iteration-time logged every 2nd step
    (list(range(51, 101)), (51, 100, 1)),                      # a resumed phase
    ([1, 10, 20, 30], (1, 30, 10)),
])
def test_the_grid_header_is_the_extraction_s(steps, header):
    made = megatron_series(series("lm loss", steps, 1.0))
    assert (made.start_step, made.end_step, made.step_interval) == header
    assert metric_to_json(series("lm loss", steps, 1.0))["step_interval"] == header[2]  # our own writer agrees


def test_steps_without_a_value_are_not_written():
    padded = series("lm loss", range(1, 11), [np.nan] * 5 + [1.0, 2.0, 3.0, 4.0, 5.0], grid=True)
    made = megatron_series(padded)
    assert made.steps.tolist() == [6, 7, 8, 9, 10] and (made.start_step, made.end_step) == (6, 10)


# ---------------------------------------------------------------- layout

def _golden(doc: dict) -> GoldenSet:
    return parse_golden(doc)


def test_a_new_file_is_laid_out_as_the_extraction_writes_it():
    data = render_megatron(_golden(megatron_doc(range(1, 4), 10.0)), None)
    assert data == json.dumps(megatron_doc(range(1, 4), 10.0), indent=4).encode()  # indent 4, no newline at the end


@pytest.mark.parametrize("dump", [lambda d: json.dumps(d), lambda d: json.dumps(d, indent=4) + "\n",
                                  lambda d: json.dumps(d, indent=2), lambda d: json.dumps(d, separators=(",", ":"))])
def test_an_existing_file_keeps_its_layout_and_key_order(dump):
    doc = megatron_doc(range(1, 4), 10.0)
    old = {"num-zeros": doc["num-zeros"], "lm loss": doc["lm loss"]}
    old["lm loss"] = {"values": old["lm loss"]["values"], "start_step": 1, "end_step": 3, "step_interval": 1}
    existing = dump(old).encode()
    new = _golden(old)
    moved = GoldenSet(metrics={**new.metrics, "lm loss": MetricSeries("lm loss", np.array([1, 2, 3]),
                                                                      np.array([9.123456789, 8.5, 7.25]), 1, 3, 1)})
    data = render_megatron(moved, existing)
    written = json.loads(data)
    assert list(written) == ["num-zeros", "lm loss"] and list(written["lm loss"]) == ["values", "start_step",
                                                                                     "end_step", "step_interval"]
    assert written["lm loss"]["values"]["1"] == 9.12346
    assert data == dump(written).encode()                       # the same layout as before
    assert json.dumps(written["num-zeros"]) == json.dumps(old["num-zeros"])   # untouched metric: same text
    assert render_megatron(new, existing) is None               # nothing changed: nothing to write
    assert render(new, FULL, existing) == render(new, FULL, None)  # our store: always the canonical layout


def test_a_kept_legacy_metric_keeps_its_exact_text():
    legacy = {"lm loss": {"start_step": 1, "end_step": 4, "step_interval": 1,
                          "values": {"1": "nan", "2": "nan", "3": 1.5, "4": 1.25}},
              "num-zeros": {"start_step": 1, "end_step": 4, "step_interval": 1,
                            "values": {"1": "nan", "2": "nan", "3": 7.0, "4": 8.0}}}
    existing = json.dumps(legacy, indent=4).encode()
    parsed = _golden(legacy)
    changed = GoldenSet(metrics={"lm loss": parsed.metrics["lm loss"],
                                 "num-zeros": MetricSeries("num-zeros", np.array([3, 4]), np.array([9.0, 10.0]))})
    written = json.loads(render_megatron(changed, existing))
    assert written["lm loss"] == legacy["lm loss"]              # "nan" padding and all, as it was
    assert written["num-zeros"] == {"start_step": 3, "end_step": 4, "step_interval": 1, "values": {"3": 9.0, "4": 10.0}}


def test_every_real_golden_file_s_layout_is_reproduced_byte_for_byte(megatron_fixtures):
    checked = 0
    for path in sorted((megatron_fixtures / "test_cases").rglob("golden_values*.json")):
        data = path.read_bytes()
        try:
            doc = json.loads(data)
        except ValueError:
            continue  # the empty files
        assert detect_layout(data).dumps(doc) == data, path
        checked += 1
    assert checked >= 50


# ---------------------------------------------------------------- through the store and the CLI

@pytest.fixture
def tree(tmp_path) -> Path:
    return odd_tree(tmp_path / "test_cases")


def test_the_dialect_is_detected_and_can_be_set(tree, tmp_path, monkeypatch):
    assert GoldenStore(tree).describe()["dialect"] == MEGATRON
    ours = tmp_path / "cases" / "c"
    ours.mkdir(parents=True)
    (ours / "case.yaml").write_text("description: ours\n")
    assert GoldenStore(ours.parent).dialect == FULL
    assert GoldenStore(tree, dialect="full").dialect == FULL
    monkeypatch.setenv("GOLDEN_DIALECT", "full")
    assert GoldenStore(tree).dialect == FULL
    monkeypatch.delenv("GOLDEN_DIALECT")
    out = golden("fsck", "--store", str(tree))
    assert out.exit_code == 0 and "megatron dialect (detected: 5 Megatron case folders" in out.stdout
    assert golden("fsck", "--store", str(tree), "--dialect", "mine").exit_code == 2


def test_approve_into_a_megatron_tree_rounds_and_keeps_everything_else(tree, tmp_path):
    before = tree_bytes(tree)
    run = megatron_artifact(tmp_path / "runs", "gpt/resume", "r1", factor=1.01)
    out = golden("approve", str(run), "--store", str(tree), "--reason", "new driver", "--approver", "ada")
    assert out.exit_code == 0, out.output
    assert "megatron dialect" in out.stderr
    path = tree / "gpt" / "resume" / "golden_values_dev_dgx_h100.json"
    doc = json.loads(path.read_text())
    loss = {int(s): v for s, v in doc["lm loss"]["values"].items()}
    assert loss == {s: megatron_value((10.0 - 0.25 * s + 1e-6 * s * s) * 1.01 + 1.234567e-7 * s) for s in range(1, 21)}
    assert path.read_text() == json.dumps(doc, indent=4)       # the extraction's layout
    assert validate_golden_file(path).findings == ()           # no warning about its own file
    after = tree_bytes(tree)
    changed = {k for k in after if before.get(k) != after[k]}
    assert {k for k in changed if not k.startswith("gpt/resume/.golden/")} == {
        "gpt/resume/golden_values_dev_dgx_h100.json"}


def test_a_selective_approval_keeps_the_one_line_layout_and_untouched_text(tree, tmp_path):
    path = tree / "bert" / "oneline" / "golden_values_dev_dgx_a100.json"
    original = path.read_text()
    others = {k: v for k, v in tree_bytes(tree).items() if k != "bert/oneline/golden_values_dev_dgx_a100.json"}
    run = megatron_artifact(tmp_path / "runs", "bert/oneline", "r1", factor=1.05, platform="dgx_a100", start=8.0)
    out = golden("approve", str(run), "--metric", "num-zeros", "--store", str(tree), "--reason", "zeros moved",
                 "--approver", "ada")
    assert out.exit_code == 0, out.output
    text = path.read_text()
    assert "\n" not in text and text.startswith('{"lm loss": {"start_step": 1')  # still one line, same order
    assert json.dumps(json.loads(text)["lm loss"]) == json.dumps(json.loads(original)["lm loss"])  # kept as written
    assert json.loads(text)["num-zeros"]["values"]["2"] == megatron_value(1006.0 * 1.05)
    assert {k: v for k, v in tree_bytes(tree).items() if k in others and not k.startswith("bert/oneline/.golden")} \
        == others
    assert golden("rollback", "oneline", "--to", "v1", "--store", str(tree), "--reason", "back",
                  "--approver", "ada").exit_code == 0
    assert path.read_text() == original                          # the exact bytes again, one line


def test_our_store_keeps_full_precision(tmp_path):
    case = tmp_path / "cases" / "tiny"
    case.mkdir(parents=True)
    (case / "case.yaml").write_text("description: ours\n")
    store = GoldenStore(tmp_path / "cases")
    value = 10.929539680480957
    store.write("tiny", {GoldenKey("tiny", "dev", "cpu"): GoldenSet({"lm loss": series("lm loss", [1, 2], value,
                                                                                         grid=True)})},
                approver="a", reason="r")
    assert read_golden(case / "golden_values_dev_cpu.json").metrics["lm loss"].values.tolist() == [value, value]


# ---------------------------------------------------------------- Megatron's own check, as its CI runs it

def test_an_approved_golden_passes_megatron_s_deterministic_check_against_its_extraction(megatron_fixtures, tmp_path):
    """Values a run logs → (a) Megatron's extraction from TensorBoard, as its CI writes the run's file;
    (b) ``golden approve`` of the same values into a Megatron tree. Megatron's test_regular_pipeline in
    its deterministic mode (exact) must pass (b) against (a) — and fails a full-precision golden."""
    if missing_reason("tb"):
        pytest.skip(f"Megatron's extraction reads TensorBoard files: {missing_reason('tb')}")
    test_cases = tmp_path / "test_cases"
    case = test_cases / "gpt" / "det_case"
    case.mkdir(parents=True)
    (case / "model_config.yaml").write_text(MODEL_CONFIG.replace("--train-iters: 20", "--train-iters: 50")
                                            + "METRICS:\n  - lm loss\n  - num-zeros\n")
    steps = [1, *range(5, 51, 5)]
    run = megatron_artifact(tmp_path / "runs", "gpt/det_case", "r1", steps=steps, factor=1.0 + 1e-7)
    logged = json.loads(run.read_text())["phases"]["1"]["metrics"]
    scalars = {name: {int(s): v for s, v in metric["values"].items()} for name, metric in logged.items()}
    write_tensorboard(tmp_path / "tb", scalars)
    extracted = tmp_path / "golden_values_dev_dgx_h100.json"
    with megatron_oracle(megatron_fixtures / "python_test_utils") as megatron:
        megatron.extract.collect_train_test_metrics(logs_dir=str(tmp_path / "tb"), train_iters=50,
                                                    output_path=str(extracted), is_convergence_test=False,
                                                    step_size=5)
        out = golden("approve", str(run), "--store", str(test_cases), "--reason", "first", "--approver", "ada")
        assert out.exit_code == 0, out.output
        approved = case / "golden_values_dev_dgx_h100.json"
        assert approved.read_bytes() == extracted.read_bytes()     # byte for byte what Megatron's CI writes

        def deterministic(golden_path: Path) -> bool:
            try:
                megatron.regular.test_regular_pipeline(
                    compare_approximate_results=False,
                    golden_values=megatron.common.read_golden_values_from_json(str(golden_path)),
                    actual_values=megatron.common.read_golden_values_from_json(str(extracted)),
                    model_config_path=str(case / "model_config.yaml"))
            except AssertionError:
                return False
            return True

        assert deterministic(approved)
        full = tmp_path / "full_precision.json"
        full.write_text(json.dumps({name: {"start_step": 1, "end_step": 50, "step_interval": 5,
                                           "values": {str(s): v for s, v in values.items()}}
                                    for name, values in scalars.items()}, indent=4))
        assert not deterministic(full)                              # what the store wrote before this issue
    assert validate_golden_file(approved).findings == ()
