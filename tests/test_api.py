"""The Python API (goldens.open_store / load_golden / load_run / judge): docs/api.md's notebook session
runs as written and leaves the store byte-identical; each preset, a policy file and a PolicySet
judge; nothing is written unless stage=True, and then only outside CI."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import goldens
from goldens.approve import list_pending
from goldens.core.errors import FormatError, GoldenError, StoreError
from tests.builders import LOSS, ZEROS, shifted, tree_bytes, write_run

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "api.md"


def doc_examples() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_the_notebook_session_in_docs_runs_and_leaves_the_store_byte_identical(tmp_path, monkeypatch, capsys):
    shutil.copytree(REPO / "cases", tmp_path / "cases")
    monkeypatch.chdir(tmp_path)
    before = tree_bytes(tmp_path / "cases", folders=True)
    namespace: dict = {}
    blocks = doc_examples()
    assert len(blocks) >= 8
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"{DOC}: python block {number}", "exec"), namespace)
    assert tree_bytes(tmp_path / "cases", folders=True) == before
    printed = capsys.readouterr().out.splitlines()
    # what the comments in the document say the session prints
    assert "['golden_values_dev_cpu.json', 'golden_values_dev_cpu_2nd.json']" in printed
    assert "1 20 1" in printed and "6.9530158042907715" in printed
    assert "default pass 0" in printed and "megatron pass 0" in printed
    # the policy line names every source the rules came from (the dict, the case's case.yaml)
    case_yaml = "cases/bert_mcore_tp2_pp2_resume_torch_dist_local_spec/case.yaml"
    assert f"default + policy (a dict) + {case_yaml} True" in printed
    assert f"megatron, mine + {case_yaml} False" in printed
    failing = [line for line in printed if line.startswith("1 lm loss 20 of 20 steps out of tolerance")]
    assert failing and "(+8 %); mean rel diff +8 %" in failing[0]
    frame = namespace["frame"]
    assert frame.columns.tolist() == ["check", "phase", "metric", "step", "golden", "actual", "delta", "rel_diff",
                                      "status"]
    loss = frame[(frame.check == "golden") & (frame.metric == "lm loss") & (frame.phase == 1)]
    assert len(loss) == 20 and (loss.status == "fail").all()
    assert ((loss.actual - loss.golden * 1.08).abs() < 1e-12).all()
    assert (tmp_path / "comparison.csv").is_file()  # the session's own file, outside the store


def test_importing_goldens_or_its_plugin_imports_no_heavy_library_until_the_api_is_used():
    code = ("import sys, goldens, goldens.pytest_plugin\nheavy = ('numpy', 'pandas', 'torch')\n"
            "print([m for m in heavy if m in sys.modules])\n"
            "goldens.judge\nprint([m for m in heavy if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.stdout.splitlines() == ["[]", "['numpy']"], proc.stderr


def test_each_preset_a_policy_file_and_a_policy_set_judge_a_run(store, tmp_path):
    run = write_run(tmp_path / "runs", "tiny", "r1", {"lm loss": shifted(LOSS, 1.03), "num-zeros": ZEROS})
    assert goldens.judge(run, store=store).passed  # default: approx, 5 %
    assert goldens.judge(run, store=store.root, policy="megatron").passed
    strict_file = tmp_path / "strict.yaml"
    strict_file.write_text("metrics:\n  lm loss: {mode: approx, rtol: 0.01}\n")
    assert not goldens.judge(run, store=store, policy=strict_file).passed  # a Path works as a str does
    strict = goldens.preset("default").with_document({"metrics": {"lm loss": {"mode": "approx", "rtol": 0.01}}}, "test")
    result = goldens.judge(goldens.load_run(run), store=store, policy=strict)
    assert not result.passed and [(m.metric, m.phase) for m in result.failures()] == [("lm loss", 1)]
    assert "0.01" in result.failures()[0].rule.text


def test_judging_writes_nothing_unless_asked_and_never_in_ci(store, tmp_path, monkeypatch):
    run = write_run(tmp_path / "runs", "tiny", "r2", {"lm loss": shifted(LOSS, 1.5), "num-zeros": ZEROS})
    before = tree_bytes(store.root, folders=True)
    assert not goldens.judge(run, store=store).passed
    assert tree_bytes(store.root, folders=True) == before
    monkeypatch.setenv("CI", "true")
    assert not goldens.judge(run, store=store, stage=True).passed
    assert tree_bytes(store.root, folders=True) == before
    monkeypatch.delenv("CI")
    result = goldens.judge(run, store=store, stage=True)
    [candidate] = list_pending(store)
    assert (candidate.case, candidate.run_id, candidate.verdict) == ("tiny", "r2", "fail")
    assert any(w.startswith("staged tiny dev/cpu (r2) for review") for w in result.warnings)


def test_a_metrics_dict_is_a_run_and_a_bad_one_is_refused_by_name(store):
    grid = {"start_step": 1, "end_step": 20, "step_interval": 1}
    metrics = {"lm loss": {**grid, "values": {str(s): v for s, v in LOSS.items()}},
               "num-zeros": {**grid, "values": {str(s): v for s, v in ZEROS.items()}}}
    assert goldens.judge(metrics, store=store, case="tiny", env="dev", platform="cpu").passed
    with pytest.raises(FormatError, match="give case="):
        goldens.judge(metrics, store=store)
    with pytest.raises(FormatError, match=r"<metrics>.*lm loss"):
        goldens.run_from_metrics({"lm loss": {**grid, "values": {"1": "ten"}}})
    with pytest.raises(FormatError, match="not a number"):
        goldens.run_from_metrics({"lm loss": {**grid, "values": {"1": object()}}})


def test_no_golden_a_reference_and_staging_with_one(store, tmp_path):
    run = write_run(tmp_path / "runs", "other", "r3", {"lm loss": LOSS})
    with pytest.raises(StoreError, match="no golden: case 'other' has none"):
        goldens.judge(run, store=store)
    reference = write_run(tmp_path / "runs", "other", "r4", {"lm loss": LOSS})
    assert goldens.judge(run, store=store, reference=reference).passed
    with pytest.raises(GoldenError, match="a reference replaces"):
        goldens.judge(run, store=store, reference=reference, stage=True)


def test_a_policy_set_stands_for_the_preset_and_a_policy_dict_overlays_all(tmp_path):
    """case.yaml's rules apply on top of a PolicySet (as on a preset); a dict, like --policy FILE, wins."""
    from tests.builders import make_store, seed

    store = make_store(tmp_path / "cases", ("strict",),
                       case_yaml="description: a strict case\nmetrics:\n  lm loss: {mode: approx, rtol: 0.01}\n")
    seed(store, "strict", {"lm loss": LOSS})
    run = write_run(tmp_path / "runs", "strict", "r5", {"lm loss": shifted(LOSS, 1.03)})
    lenient = goldens.preset("default").with_document({"metrics": {"lm loss": {"mode": "approx", "rtol": 0.5}}}, "t")
    assert not goldens.judge(run, store=store, policy=lenient).passed
    assert goldens.judge(run, store=store, policy={"metrics": {"lm loss": {"mode": "approx", "rtol": 0.5}}}).passed
