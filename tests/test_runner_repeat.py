"""``golden run CASE --repeat N [--seed-stride K]``: the seed plan and the output contract.

stdout carries one artifact path per line and nothing else, so
``golden stats $(golden run CASE --repeat 3)`` works; the summaries go to stderr. The runs
themselves are replaced by a recorder here, except in the one slow test at the end.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from goldens.cli.extras import missing_reason

if missing_reason("runner"):
    pytest.skip(missing_reason("runner"), allow_module_level=True)

from typer.testing import CliRunner

from goldens.cli import app
from goldens.cli import run as run_command
from goldens.core.errors import RunError
from runner.config import repeat_seeds

REPO = Path(__file__).resolve().parents[1]
CASE = "bert_mcore_tp2_pp2_resume_torch_dist_local_spec"
STORE = REPO / "cases"
CASE_SEED = 1234  # determinism.seed in the case's case.yaml


def test_repeat_seeds_step_by_the_stride():
    assert repeat_seeds(1234, 3, 1) == [1234, 1235, 1236]
    assert repeat_seeds(10, 4, 7) == [10, 17, 24, 31]
    assert repeat_seeds(5, 3, 0) == [5, 5, 5]  # the same seed: nondeterminism alone
    assert repeat_seeds(5, 1, 9) == [5]


@pytest.fixture
def fake_execute(monkeypatch, tmp_path):
    """Replaces the real run: records each call, writes nothing, reports a path per run."""
    calls: list[dict] = []
    fail_at: dict[str, int | None] = {"run": None}

    def execute(**kwargs):
        calls.append(kwargs)
        if fail_at["run"] == len(calls):
            raise RunError(f"rank 1 died in phase 1 (artifact: run{len(calls)}/artifact.json, status failed)")
        root = kwargs["out"] or kwargs.get("runs_root") or Path("runs")
        path = tmp_path / root / f"run{len(calls)}" / "artifact.json"
        artifact = SimpleNamespace(status="complete", phases={}, provenance={})
        return SimpleNamespace(artifact=artifact, artifact_path=path)

    monkeypatch.setattr(run_command, "execute", execute)
    return SimpleNamespace(calls=calls, fail_at=fail_at, tmp=tmp_path)


def invoke(*args: str):
    return CliRunner().invoke(app, ["run", CASE, "--store", str(STORE), *args])


def test_repeat_runs_from_the_case_seed_and_prints_only_paths(fake_execute):
    result = invoke("--repeat", "3")
    assert result.exit_code == 0, result.stderr
    assert [c["seed"] for c in fake_execute.calls] == [CASE_SEED, CASE_SEED + 1, CASE_SEED + 2]
    assert result.stdout.splitlines() == [str(fake_execute.tmp / "runs" / f"run{i}" / "artifact.json")
                                          for i in (1, 2, 3)]
    assert "run 2 of 3: seed 1235" in result.stderr
    # each run gets its own folder: no --out, so each call picks a new runs/<run-id>
    assert all(c["out"] is None and c["runs_root"] is None for c in fake_execute.calls)


def test_repeat_seed_and_stride_options(fake_execute):
    result = invoke("--repeat", "3", "--seed", "100", "--seed-stride", "5")
    assert result.exit_code == 0, result.stderr
    assert [c["seed"] for c in fake_execute.calls] == [100, 105, 110]


def test_stride_zero_repeats_one_seed(fake_execute):
    result = invoke("--repeat", "2", "--seed-stride", "0")
    assert result.exit_code == 0, result.stderr
    assert [c["seed"] for c in fake_execute.calls] == [CASE_SEED, CASE_SEED]


def test_repeat_out_is_the_parent_of_the_run_folders(fake_execute):
    result = invoke("--repeat", "2", "--out", "calibration")
    assert result.exit_code == 0, result.stderr
    assert [(c["out"], c["runs_root"]) for c in fake_execute.calls] == [(None, Path("calibration"))] * 2
    assert result.stdout.splitlines()[0] == str(fake_execute.tmp / "calibration" / "run1" / "artifact.json")


def test_an_incomplete_run_stops_the_repeat_with_exit_2(fake_execute):
    fake_execute.fail_at["run"] = 2
    result = invoke("--repeat", "3")
    assert result.exit_code == 2
    assert len(fake_execute.calls) == 2  # stopped at the failed run
    assert result.stdout.splitlines() == [str(fake_execute.tmp / "runs" / "run1" / "artifact.json")]
    assert "rank 1 died in phase 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_single_run_is_unchanged(fake_execute):
    result = invoke("--seed", "7")
    assert result.exit_code == 0, result.stderr
    assert [c["seed"] for c in fake_execute.calls] == [7]
    assert fake_execute.calls[0]["out"] is None and fake_execute.calls[0].get("runs_root") is None
    assert result.stdout.startswith(f"artifact: {fake_execute.tmp / 'runs' / 'run1' / 'artifact.json'} (complete)")


@pytest.mark.parametrize("args, message", [
    (("--seed-stride", "2"), "--seed-stride needs --repeat N"),
    (("--repeat", "0"), "--repeat"),
    (("--repeat", "2", "--seed-stride", "-1"), "--seed-stride"),
])
def test_bad_repeat_options_are_usage_errors(fake_execute, args, message):
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert fake_execute.calls == []


def test_an_unknown_profile_fails_before_any_run(fake_execute):
    result = invoke("--repeat", "2", "--profile", "nope")
    assert result.exit_code == 2
    assert "unknown profile 'nope'" in result.stderr
    assert fake_execute.calls == []


@pytest.mark.slow
def test_real_repeat_with_one_seed_feeds_golden_stats(tmp_path):
    """Two real runs of a 4-step schedule with stride 0: stdout is exactly the two artifact paths,
    each run records its seed, the runs are bit-identical (determinism), and golden stats takes
    the paths as they are and floors the zero spread instead of switching the check off."""
    pytest.importorskip("torch")
    pytest.importorskip("megatron.core")
    import yaml

    from goldens.files.formats.artifact import read_artifact

    store = tmp_path / "store"
    (store / CASE).mkdir(parents=True)
    doc = yaml.safe_load((STORE / CASE / "case.yaml").read_text())
    doc["profiles"]["cpu-tiny"]["schedule"].update(train_iters=4, save_interval=2)
    (store / CASE / "case.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    shutil.copy(STORE / CASE / "model_config.yaml", store / CASE)  # the case's base sections

    run = subprocess.run([sys.executable, "-m", "goldens", "run", CASE, "--store", str(store), "--repeat", "2",
                          "--seed", "42", "--seed-stride", "0", "--out", str(tmp_path / "runs")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    paths = run.stdout.split()
    assert len(paths) == 2 and len(set(paths)) == 2
    artifacts = [read_artifact(Path(p)) for p in paths]
    assert [a.provenance["seed"] for a in artifacts] == [42, 42]
    assert all(a.status == "complete" and Path(p).parent.parent == tmp_path / "runs"
               for a, p in zip(artifacts, paths, strict=True))
    first, second = (a.phases[1].metrics["lm loss"].values for a in artifacts)
    assert first.tobytes() == second.tobytes()

    stats = subprocess.run([sys.executable, "-m", "goldens", "stats", *paths, "--out", "-"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert stats.returncode == 0, stats.stderr[-2000:]
    policy = yaml.safe_load(stats.stdout)
    assert 0 < policy["metrics"]["lm loss"]["rtol"] < 1e-5  # s = 0: the float floor, not zero
