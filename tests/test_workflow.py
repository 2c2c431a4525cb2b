"""One workflow, one set of rules: diff and check share the judge → stage path; every command
finds the same store from any folder; every write records the approver by one rule."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from goldens.cli import app
from goldens.files.formats.artifact import read_artifact
from goldens.workflow import judge
from tests.builders import LOSS, ZEROS, shifted, write_run

REPO = Path(__file__).resolve().parents[1]
SEED = "bert_mcore_tp2_pp2_resume_torch_dist_local_spec"


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env={"CI": "", **(env or {})})


class FakeRun:
    """What ``runner.launch.run_case`` returns, for a run that already happened."""

    def __init__(self, path: Path):
        self.artifact = read_artifact(path)
        self.artifact_path = path
        self.outcomes = ()


def pending_of(store) -> list[str]:
    return sorted(p.name for p in (store.root / ".pending").rglob("*.json")) if (store.root / ".pending").is_dir() \
        else []


@pytest.fixture
def check_with(monkeypatch):
    """`golden check` with its run replaced by an artifact on disk (no training)."""
    from goldens.cli import run as run_command
    from goldens.cli.extras import missing_reason

    if missing_reason("runner"):
        pytest.skip(missing_reason("runner"))

    def check(path: Path, store) -> object:
        monkeypatch.setattr(run_command, "execute", lambda **_: FakeRun(path))
        return invoke("check", "tiny", "--store", str(store.root), "--platform", "cpu", "--format", "json")
    return check


def judged_by(command: str, request, run: Path, store):
    """`golden diff RUN` or `golden check` (its run replaced by RUN) on the synthetic store."""
    if command == "diff":
        return invoke("diff", str(run), "--store", str(store.root))
    return request.getfixturevalue("check_with")(run, store)


@pytest.mark.parametrize("command", ["diff", "check"])
@pytest.mark.parametrize("rule, passing_staged, failing_staged", [
    (lambda result: result is None or not result.passed, [], ["dev_cpu.json"]),   # the real rule
    (lambda result: True, ["dev_cpu.json"], ["dev_cpu.json"]),                      # stage everything
    (lambda result: False, [], []),                                                 # stage nothing
])
def test_diff_and_check_follow_one_staging_rule(store, runs, monkeypatch, request, command, rule, passing_staged,
                                                failing_staged):
    monkeypatch.setattr(judge, "should_stage", rule)
    passing = write_run(runs, "tiny", "good", {"lm loss": LOSS, "num-zeros": ZEROS})
    failing = write_run(runs, "tiny", "bad", {"lm loss": shifted(LOSS, 1.3), "num-zeros": ZEROS})
    for run, expected in ((passing, passing_staged), (failing, failing_staged)):
        out = judged_by(command, request, run, store)
        assert out.exit_code == (0 if run == passing else 1), out.output
        assert pending_of(store) == expected, run.parent.name
        for staged in (store.root / ".pending").rglob("*.json"):
            staged.unlink()


def test_check_and_diff_give_the_same_result_and_notes(store, runs, check_with):
    failing = write_run(runs, "tiny", "bad", {"lm loss": shifted(LOSS, 1.3), "num-zeros": ZEROS})
    by_diff = invoke("diff", str(failing), "--store", str(store.root), "--format", "json")
    by_check = check_with(failing, store)
    assert json.loads(by_diff.stdout) == json.loads(by_check.stdout)
    assert "staged tiny dev/cpu (bad) for review" in by_diff.stderr
    assert "staged tiny dev/cpu (bad) for review" in by_check.stderr


def test_no_golden_is_exit_1_and_staged(store, runs):
    run = write_run(runs, "tiny", "r", {"lm loss": LOSS}, platform="gpu")
    out = invoke("diff", str(run), "--store", str(store.root))
    assert out.exit_code == 1 and "no golden: case 'tiny' has none for dev/gpu yet" in out.stderr
    assert pending_of(store) == ["dev_gpu.json"]


def test_judge_run_without_staging_writes_nothing(store, runs):
    from goldens.inputs import load_run

    failing = write_run(runs, "tiny", "bad", {"lm loss": shifted(LOSS, 1.3), "num-zeros": ZEROS})
    judgement = judge.judge_run(store, load_run(str(failing)), stage=False)
    assert not judgement.passed and judgement.staged is None and pending_of(store) == []


# ---------------------------------------------------------------- one store rule, from any folder

def golden_cli(*args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "goldens", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), **env})


@pytest.mark.parametrize("where", ["elsewhere", "GOLDEN_STORE"])
def test_history_show_fsck_pending_resolve_the_same_store_from_any_folder(tmp_path, where):
    env = {} if where == "elsewhere" else {"GOLDEN_STORE": str(REPO / "cases")}
    cwd = tmp_path / "somewhere" / "else"
    cwd.mkdir(parents=True)
    history = golden_cli("history", SEED, cwd=cwd, env=env)
    first = history.stdout.splitlines()[0] if history.stdout else ""
    assert history.returncode == 0 and "approve  by runner (issue 6)" in first, history.stderr
    show = golden_cli("show", SEED, "--phase", "1", "--metric", "lm loss", cwd=cwd, env=env)
    assert show.returncode == 0 and "golden_values_dev_cpu.json" in show.stdout, show.stderr
    fsck = golden_cli("fsck", "--no-repair", cwd=cwd, env=env)
    assert fsck.returncode == 0 and fsck.stdout.strip().endswith("0 errors left)"), fsck.stdout + fsck.stderr
    pending = golden_cli("pending", "--json", cwd=cwd, env=env)
    assert pending.returncode == 0, pending.stderr
    assert all(c["path"].startswith(str(REPO / "cases" / ".pending")) for c in json.loads(pending.stdout))
    assert list(cwd.iterdir()) == []  # nothing made where the command ran


# ---------------------------------------------------------------- one approver rule, every write

def test_every_write_records_the_approver_by_one_rule(store, runs, tmp_path, monkeypatch):
    config = tmp_path / "gitconfig"
    config.write_text("[user]\n\tname = Ada Lovelace\n")
    env = {"GIT_CONFIG_GLOBAL": str(config), "GIT_CONFIG_NOSYSTEM": "1", "USER": "someone-else"}
    run = write_run(runs, "tiny", "r2", {"lm loss": shifted(LOSS, 1.01), "num-zeros": ZEROS})
    assert invoke("approve", str(run), "--store", str(store.root), "--reason", "new", env=env).exit_code == 0
    assert invoke("rollback", "tiny", "--to", "v1", "--store", str(store.root), "--reason", "back",
                  env=env).exit_code == 0
    other = store.case_dir("other") / "golden_values_dev_cpu.json"
    other.write_text(json.dumps({"lm loss": {"start_step": 1, "end_step": 1, "step_interval": 1,
                                             "values": {"1": 1.5}}}, indent=4))
    assert invoke("adopt", "other", "--store", str(store.root), env=env).exit_code == 0
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    written = [e.approver for e in store.history("tiny")[1:]] + [e.approver for e in store.history("other")]
    assert written == ["Ada Lovelace"] * 3
    run3 = write_run(runs, "tiny", "r3", {"lm loss": shifted(LOSS, 1.02), "num-zeros": ZEROS})
    assert invoke("approve", str(run3), "--store", str(store.root), "--reason", "x", "--approver", "Bob",
                  env=env).exit_code == 0
    assert store.history("tiny")[-1].approver == "Bob"


def test_a_diff_rewrites_the_result_its_run_folder_keeps(store, runs):
    """``golden check`` kept result.json (PASS) beside the run; the run is judged again and fails: the
    kept result says FAIL and ``golden report RUN`` exits 1 (before: it still showed PASS)."""
    from goldens.workflow.operands import diff
    from goldens.workflow.publish import publish
    from tests.builders import LOSS, ZEROS, invoke, write_run

    run_dir = write_run(runs, "tiny", "r1", {"lm loss": LOSS, "num-zeros": ZEROS}).parent
    passing = diff([str(run_dir)], store_root=store.root, runs_dir=runs)
    publish(passing, run_dir, store_root=store.root)
    assert json.loads((run_dir / "result.json").read_text())["verdict"] == "pass"
    write_run(runs, "tiny", "r1", {"lm loss": {s: v * 1.5 for s, v in LOSS.items()}, "num-zeros": ZEROS})
    out = invoke("diff", str(run_dir), "--store", str(store.root), env={"CI": "true"})
    assert out.exit_code == 1 and f"updated {run_dir / 'result.json'}" in out.stderr
    assert json.loads((run_dir / "result.json").read_text())["verdict"] == "fail"
    assert invoke("report", str(run_dir), "--store", str(store.root)).exit_code == 1
    fresh = write_run(runs, "tiny", "r2", {"lm loss": LOSS, "num-zeros": ZEROS}).parent
    diff([str(fresh)], store_root=store.root, runs_dir=runs)
    assert not (fresh / "result.json").exists()  # a run folder without a kept result gets none
