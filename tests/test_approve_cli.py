"""The approval workflow through the ``golden`` CLI: end to end, guardrails, review without a
terminal, and approving into a Megatron checkout."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from goldens import approve
from goldens.cli import app
from goldens.cli import approve as approve_command
from goldens.core.model import GoldenKey, GoldenSet, MetricSeries
from goldens.files.formats.golden import read_golden
from goldens.store import GoldenStore
from goldens.store.dialect import megatron_value
from tests.builders import LOSS, ZEROS, ScriptedIO, make_store, seed, shifted, tree_bytes, write_run


def golden(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env=env)


@pytest.fixture
def world(store, runs):
    """conftest's store with a golden for case other too, and where the runs go."""
    seed(store, "other", {"lm loss": LOSS})
    return store, runs


def diff_and_stage(store: GoldenStore, run: Path) -> int:
    """``golden diff`` a run: a failing run (or one without a golden) is staged for review."""
    out = golden("diff", str(run), "--store", str(store.root), "--format", "json")
    assert out.exit_code in (0, 1), out.output
    if out.exit_code == 1:
        case = json.loads(run.read_text())["case"]
        assert f"staged {case} dev/cpu" in out.stderr, out.stderr
    return out.exit_code


def test_failing_run_pending_review_approve_history_diff_rollback(world, monkeypatch):
    store, runs = world
    s = str(store.root)
    tiny_run = write_run(runs, "tiny", "r-tiny", {"lm loss": shifted(LOSS, 1.1), "num-zeros": ZEROS})
    other_run = write_run(runs, "other", "r-other", {"lm loss": shifted(LOSS, 0.8)})
    assert diff_and_stage(store, tiny_run) == 1
    assert diff_and_stage(store, other_run) == 1

    listed = golden("pending", "--store", s, "--json")
    assert listed.exit_code == 0
    pending = json.loads(listed.stdout)
    assert [(c["case"], c["run_id"], c["verdict"], c["base_version"]) for c in pending] == [
        ("other", "r-other", "fail", 1), ("tiny", "r-tiny", "fail", 1)]
    assert [m["metric"] for m in pending[1]["metrics"] if not m["passed"]] == ["lm loss"]
    assert "tiny" in golden("pending", "--store", s).stdout

    io = ScriptedIO(["a", "s"])
    monkeypatch.setattr(approve_command, "review_io", lambda: io)
    reviewed = golden("review", "--store", s, "--reason", "other: new tokenizer", "--approver", "ada")
    assert reviewed.exit_code == 0, reviewed.output
    assert [t for t, *_ in io.shown] == ["other dev/cpu", "tiny dev/cpu"]
    assert "accepted 1 · rejected 0 · skipped 1 · refused 0" in reviewed.stdout
    assert "approved other dev/cpu as v2 from run r-other" in reviewed.stdout
    assert [c.case for c in approve.list_pending(store)] == ["tiny"]

    approved = golden("approve", "--pending", "--case", "tiny", "--store", s, "--approver", "bob",
                      "--reason", "loss +10% after the fused-kernel change")
    assert approved.exit_code == 0, approved.output
    assert approved.stdout.strip() == "approved tiny dev/cpu as v2 from run r-tiny"
    assert approve.list_pending(store) == []

    history = golden("history", "tiny", "--store", s)
    assert history.exit_code == 0
    assert "v2" in history.stdout and "approve  by bob  run r-tiny" in history.stdout
    assert "reason: loss +10% after the fused-kernel change" in history.stdout
    assert "approve  by ada  run r-other" in golden("history", "other", "--store", s).stdout

    assert golden("diff", str(tiny_run), "--store", s).exit_code == 0
    assert golden("diff", str(other_run), "--store", s).exit_code == 0

    rolled = golden("rollback", "tiny", "--to", "v1", "--store", s, "--reason", "fused kernel reverted",
                    "--approver", "bob")
    assert rolled.exit_code == 0, rolled.output
    assert rolled.stdout.strip() == "rolled back tiny to the content of v1 as v3"
    assert golden("diff", str(tiny_run), "--store", s).exit_code == 1
    assert golden("diff", str(other_run), "--store", s).exit_code == 0
    assert golden("fsck", "--store", s).exit_code == 0


def test_a_case_without_a_golden_gets_its_first_one_through_review(world, monkeypatch):
    store, runs = world
    (store.root / "fresh").mkdir()
    (store.root / "fresh" / "case.yaml").write_text("description: new case\n")
    run = write_run(runs, "fresh", "r-first", {"lm loss": LOSS})
    assert diff_and_stage(GoldenStore(store.root), run) == 1
    [candidate] = approve.list_pending(GoldenStore(store.root), case="fresh")
    assert (candidate.verdict, candidate.base_version, candidate.metrics) == ("new", 0, ())
    monkeypatch.setattr(approve_command, "review_io", lambda: ScriptedIO(["a"]))
    out = golden("review", "--store", str(store.root), "--reason", "first golden of fresh", "--approver", "ada")
    assert out.exit_code == 0 and "approved fresh dev/cpu as v1 from run r-first" in out.stdout
    assert golden("diff", str(run), "--store", str(store.root)).exit_code == 0


def test_selective_approve_from_the_cli(world):
    store, runs = world
    run = write_run(runs, "tiny", "r1", {"lm loss": shifted(LOSS, 1.1), "num-zeros": shifted(ZEROS, 3)})
    out = golden("approve", str(run.parent), "--store", str(store.root), "--metric", "num-zeros",
                 "--reason", "more zeros expected with the new init", "--approver", "ada")
    assert out.exit_code == 0, out.output
    assert out.stdout.strip() == "approved tiny dev/cpu as v2 from run r1 (took num-zeros; kept lm loss)"
    values = store.read(GoldenKey("tiny", "dev", "cpu", 1)).metrics
    assert values["lm loss"].as_dict() == LOSS and values["num-zeros"].as_dict() == shifted(ZEROS, 3)


def test_history_shows_what_a_selective_approval_took_and_kept(tmp_path):
    store = make_store(tmp_path / "cases")
    second = {s: v for s, v in LOSS.items() if s > 10}
    seed(store, "tiny", {"lm loss": LOSS, "num-zeros": ZEROS}, phase2={"lm loss": second, "num-zeros": ZEROS})
    runs, s = tmp_path / "runs", str(store.root)
    moved = {"lm loss": shifted(LOSS, 1.1), "num-zeros": shifted(ZEROS, 3)}
    run = write_run(runs, "tiny", "r1", moved, phase2=moved, resumed_from=10)
    assert golden("approve", str(run), "--store", s, "--metric", "num-zeros", "--reason", "init",
                  "--approver", "ada").exit_code == 0
    assert golden("approve", str(run), "--store", s, "--reason", "all of it", "--approver", "ada").exit_code == 0
    out = golden("history", "tiny", "--store", s)
    assert out.exit_code == 0, out.output
    v1, v2, v3 = out.stdout.split("\nv")
    # One line per file, as the ledger's provenance.selection recorded it.
    for name in ("golden_values_dev_cpu.json", "golden_values_dev_cpu_2nd.json"):
        [line] = [ln for ln in v2.splitlines() if ln.strip().startswith(name)]
        assert line.endswith("(took num-zeros; kept lm loss)"), line
    assert "took" not in v1 and "took" not in v3  # the seed and a whole-run approval took everything


def _refusals(store, runs, monkeypatch):
    s = str(store.root)
    ok = write_run(runs, "tiny", "r-ok", {"lm loss": shifted(LOSS, 1.1)})
    stale = write_run(runs, "tiny", "r-stale", {"lm loss": shifted(LOSS, 1.2)})
    approve.stage_candidate(store, stale, "dev", "cpu")
    store.write("tiny", {GoldenKey("tiny", "dev", "cpu", 1): read_golden(
        store.case_dir("tiny") / "golden_values_dev_cpu.json")}, approver="x", reason="touch")
    broken = write_run(runs, "tiny", "r-broken", {"lm loss": LOSS}, status="incomplete")
    empty = write_run(runs, "tiny", "r-empty", {"lm loss": LOSS})
    doc = json.loads(empty.read_text())
    doc["phases"]["1"]["metrics"]["lm loss"]["values"] = {}
    empty.write_text(json.dumps(doc))
    return {
        "no reason": (["approve", str(ok), "--store", s], {}, "a reason is required"),
        "CI": (["approve", str(ok), "--store", s, "--reason", "r"], {"CI": "true"}, "CI never writes goldens"),
        "incomplete": (["approve", str(broken), "--store", s, "--reason", "r"], {}, "is incomplete"),
        "env": (["approve", str(ok), "--store", s, "--reason", "r", "--env", "lts"], {}, "ran with env 'dev'"),
        "stale": (["approve", "--pending", "--store", s, "--reason", "r"], {}, "made against v1, but v2"),
        "rollback without reason": (["rollback", "tiny", "--to", "v1", "--store", s], {}, "a reason is required"),
        "bad version": (["rollback", "tiny", "--to", "one", "--store", s, "--reason", "r"], {}, "use CASE@vN"),
        "neither": (["approve", "--store", s, "--reason", "r"], {}, "say what to act on"),
        "both": (["approve", str(ok), "--pending", "--store", s, "--reason", "r"], {}, "not both"),
        "hostile case": (["approve", "--pending", "--case", "../x", "--store", s, "--reason", "r"], {},
                         "invalid case pattern"),
        "empty metric": (["approve", str(empty), "--store", s, "--reason", "r"], {},
                         "'lm loss' (phase 1) has no value at any step"),
        "only-failing, not staged": (["approve", str(ok), "--only-failing", "--store", s, "--reason", "r"], {},
                                     "--only-failing takes the metrics whose staged verdict failed"),
        "hostile env filter": (["reject", "--pending", "--env", "../x", "--store", s], {}, "invalid env name"),
        "hostile platform filter": (["review", "--platform", "a\nb", "--store", s], {}, "invalid platform name"),
        "pending, no store": (["pending", "--store", s + "-typo"], {}, "no golden store at"),
        "reject, no store": (["reject", "--pending", "--store", s + "-typo"], {}, "no golden store at"),
    }


@pytest.mark.parametrize("name", ["no reason", "CI", "incomplete", "env", "stale", "rollback without reason",
                                  "bad version", "neither", "both", "hostile case",
                                  "empty metric", "only-failing, not staged",
                                  "hostile env filter", "hostile platform filter",
                                  "pending, no store", "reject, no store"])
def test_cli_refusals_are_one_line_exit_2_and_write_nothing(name, world, monkeypatch, tmp_path):
    store, runs = world
    args, env, message = _refusals(store, runs, monkeypatch)[name]
    before = tree_bytes(tmp_path)
    out = golden(*args, env=env)
    assert out.exit_code == 2, out.output
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: ") and message in out.stderr
    assert "Traceback" not in out.output
    assert tree_bytes(tmp_path) == before


def test_review_without_a_terminal_prints_the_commands_that_work(world, monkeypatch):
    store, runs = world
    s = str(store.root)
    approve.stage_candidate(store, write_run(runs, "tiny", "r1", {"lm loss": shifted(LOSS, 1.1)}), "dev", "cpu")
    approve.stage_candidate(store, write_run(runs, "other", "r2", {"lm loss": LOSS}), "dev", "cpu")
    out = golden("review", "--store", s)
    assert out.exit_code == 0
    lines = out.stdout.splitlines()
    assert lines[0] == "# other dev/cpu: run r2 (new)"
    approve_line = next(line for line in lines if line.startswith("golden approve") and "tiny" in line)
    reject_line = next(line for line in lines if line.startswith("golden reject") and "other" in line)
    import shlex

    args = [*shlex.split(approve_line.replace("'WHY'", "'checked by hand'"))[1:], "--approver", "ada"]
    assert golden(*args).exit_code == 0
    assert golden(*shlex.split(reject_line)[1:]).exit_code == 0
    assert approve.list_pending(store) == []
    assert store.current_entry("tiny").reason == "checked by hand"
    assert store.current_entry("other").number == 1


def test_review_with_a_refusal_exits_2(world, monkeypatch):
    store, runs = world
    approve.stage_candidate(store, write_run(runs, "tiny", "r1", {"lm loss": LOSS}, status="failed"), "dev", "cpu")
    monkeypatch.setattr(approve_command, "review_io", lambda: ScriptedIO(["a"]))
    out = golden("review", "--store", str(store.root), "--reason", "r")
    assert out.exit_code == 2
    assert "refused tiny dev/cpu: run 'r1' is failed" in out.stdout


def test_reject_and_prune_from_the_cli(world):
    store, runs = world
    s = str(store.root)
    run = write_run(runs, "tiny", "r1", {"lm loss": LOSS})
    approve.stage_candidate(store, run, "dev", "cpu")
    gone = write_run(runs, "other", "r2", {"lm loss": LOSS})
    approve.stage_candidate(store, gone, "dev", "cpu")
    gone.unlink()
    check = golden("prune", "--check", "--store", s)
    assert check.exit_code == 1
    assert "stale candidate" in check.stdout and "run 'r2' is gone" in check.stdout
    assert golden("prune", "--store", s).exit_code == 0
    assert golden("prune", "--check", "--store", s).stdout.strip() == "nothing to prune"
    out = golden("reject", str(run), "--store", s)
    assert out.exit_code == 0 and out.stdout.strip() == "rejected tiny dev/cpu (run r1)"
    assert golden("pending", "--store", s).stdout.strip() == "no pending candidates"


# ---------------------------------------------------------------- Megatron interop

MEGATRON_LOSS = {1: 10.49, 5: 10.48, 10: 10.47, 15: 10.41, 20: 10.30}


def _megatron_checkout(root: Path) -> Path:
    """A Megatron-like tree: tests/functional_tests/test_cases/<model>/<case>/ with model_config.yaml."""
    test_cases = root / "tests" / "functional_tests" / "test_cases"
    for case in ("bert_tiny", "bert_other"):
        d = test_cases / "bert" / case
        d.mkdir(parents=True)
        (d / "model_config.yaml").write_text("MODEL_ARGS:\n  --num-layers: 2\n")
        doc = {"lm loss": {"start_step": 1, "end_step": 20, "step_interval": 5,
                           "values": {str(k): v for k, v in MEGATRON_LOSS.items()}},
               "num-zeros": {"start_step": 1, "end_step": 20, "step_interval": 5,
                             "values": {str(k): 100.0 + k for k in MEGATRON_LOSS}}}
        (d / "golden_values_dev_dgx_h100.json").write_text(json.dumps(doc, indent=4))
    return test_cases


def _megatron_run(runs: Path, golden: GoldenSet, run_id: str, factor: float, case: str = "bert_tiny") -> Path:
    """A dev/dgx_h100 run of ``golden`` scaled by ``factor``, on its grid; provenance: fingerprint, env, platform."""
    metrics = {name: MetricSeries(name, s.steps, s.values * factor, s.start_step, s.end_step, s.step_interval)
               for name, s in golden.metrics.items()}
    return write_run(runs, case, run_id, metrics, platform="dgx_h100", fingerprint="fp-h100",
                     provenance={"created": None, "device": None})


def test_approving_into_a_megatron_checkout_updates_its_file_in_place(tmp_path):
    test_cases = _megatron_checkout(tmp_path / "Megatron-LM")
    case_dir = test_cases / "bert" / "bert_tiny"
    golden_file = case_dir / "golden_values_dev_dgx_h100.json"
    untouched = {p: p.read_bytes() for p in test_cases.rglob("*") if p.is_file() and p != golden_file}
    run = _megatron_run(tmp_path / "runs", read_golden(golden_file), "r1", 1.01)
    out = golden("approve", str(run), "--store", str(test_cases), "--reason", "h100 driver update",
                 "--approver", "ada")
    assert out.exit_code == 0, out.output
    doc = json.loads(golden_file.read_text())
    assert list(doc) == ["lm loss", "num-zeros"]
    assert doc["lm loss"]["step_interval"] == 5 and list(doc["lm loss"]["values"]) == ["1", "5", "10", "15", "20"]
    assert doc["lm loss"]["values"]["10"] == megatron_value(10.47 * 1.01) == 10.5747  # as Megatron writes it
    assert golden_file.read_text() == json.dumps(doc, indent=4)           # Megatron's own layout
    assert {p: p.read_bytes() for p in untouched} == untouched            # model_config, the other case
    history = [json.loads(line) for line in (case_dir / ".golden" / "ledger.jsonl").read_text().splitlines()]
    assert [(e["version"], e["action"]) for e in history] == [(1, "imported"), (2, "approve")]
    assert not (test_cases / "bert" / "bert_other" / ".golden").exists()
    assert GoldenStore(test_cases).fsck() == []


def test_a_real_megatron_case_round_trips_byte_identical(megatron_fixtures, tmp_path):
    source = megatron_fixtures / "test_cases" / "bert" / "bert_mcore_tp2_pp2"
    test_cases = tmp_path / "test_cases"
    shutil.copytree(source, test_cases / "bert" / source.name)
    golden_file = test_cases / "bert" / source.name / "golden_values_dev_dgx_h100.json"
    original = golden_file.read_bytes()
    golden_set = read_golden(golden_file)
    same = _megatron_run(tmp_path / "runs", golden_set, "same", 1.0, case=source.name)
    out = golden("approve", str(same), "--store", str(test_cases), "--reason", "re-approve", "--approver", "ada")
    assert out.exit_code == 0, out.output
    assert golden_file.read_bytes() == original
    moved = _megatron_run(tmp_path / "runs", golden_set, "moved", 1.02, case=source.name)
    assert golden("approve", str(moved), "--store", str(test_cases), "--reason", "r", "--approver",
                  "ada").exit_code == 0
    assert read_golden(golden_file).metrics["lm loss"].values.tolist() == [  # as Megatron's extraction writes them
        megatron_value(v) for v in (golden_set.metrics["lm loss"].values * 1.02).tolist()]
    assert golden("rollback", source.name, "--to", "v1", "--store", str(test_cases), "--reason", "r",
                  "--approver", "ada").exit_code == 0
    assert golden_file.read_bytes() == original


@pytest.mark.slow
def test_review_in_a_real_terminal(world, tmp_path):
    """``golden review`` on a pseudo-terminal: the real key source (one key press, no Enter)."""
    import os
    import pty
    import select
    import subprocess
    import sys
    import time

    store, runs = world
    approve.stage_candidate(store, write_run(runs, "other", "r2", {"lm loss": shifted(LOSS, 1.1),
                                                                     "num-[zeros]": ZEROS}), "dev", "cpu")
    approve.stage_candidate(store, write_run(runs, "tiny", "r1", {"lm loss": shifted(LOSS, 1.1)}), "dev", "cpu")
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "GOLDEN_STORE")}
    env.update(COLUMNS="120", TERM="xterm")
    proc = subprocess.Popen([sys.executable, "-m", "goldens", "review", "--store", str(store.root),
                             "--approver", "ada"], stdin=slave, stdout=slave, stderr=slave, env=env,
                            cwd=Path(__file__).resolve().parents[1])
    os.close(slave)
    screen = b""

    def wait_for(text: bytes, count: int = 1) -> None:
        nonlocal screen
        deadline = time.monotonic() + 60
        while screen.count(text) < count and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    screen += os.read(master, 65536)
                except OSError:
                    break
        assert screen.count(text) >= count, screen.decode(errors="replace")[-2000:]

    def press(key: bytes, prompt: bytes, count: int) -> None:
        wait_for(prompt, count)
        time.sleep(0.5)   # the key reader switches the terminal to raw mode after drawing the prompt
        os.write(master, key)

    try:
        press(b"a", b"a/r/s/A/R/q", 1)
        press(b"from a terminal\r", b"reason for accepting", 1)
        press(b"r", b"a/r/s/A/R/q", 2)
        wait_for(b"accepted 1")
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = screen.decode(errors="replace")
    assert proc.returncode == 0, text[-2000:]
    assert "num-[zeros]" in text and "▁" in text                  # literal names, sparklines
    assert "accepted 1 · rejected 1 · skipped 0 · refused 0" in text
    assert store.current_entry("other").reason == "from a terminal"
    assert store.current_entry("tiny").number == 1 and approve.list_pending(store) == []
