"""Approvals racing each other, and approvers killed mid-write (a short bench/crash_approve.py)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from goldens import approve
from goldens.core.model import GoldenKey
from goldens.store import GoldenStore
from tests.builders import LOSS, ZEROS, commit_all, git_repo, make_store, seed, shifted, write_run

REPO = Path(__file__).resolve().parents[1]
METRICS = ("lm loss", "num-zeros", "mem-allocated-bytes", "mem-max-allocated-bytes")


def race(tmp_path: Path, commands: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Start every ``golden`` command in its own process, release them at once, collect them."""
    go = tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "GOLDEN_STORE")}
    env["PYTHONPATH"] = str(REPO)
    procs = [subprocess.Popen([sys.executable, "-c", "import sys; from tests.builders import cli_worker; "
                                                     "cli_worker(*sys.argv[1:])", str(go), *args],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for args in commands]
    go.touch()
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def test_eight_processes_approving_the_same_and_different_cases(tmp_path):
    store = make_store(tmp_path / "cases", ("tiny", "same", "c6", "c7"))
    base = {"lm loss": LOSS, "num-zeros": ZEROS, "mem-allocated-bytes": ZEROS, "mem-max-allocated-bytes": ZEROS}
    for case in ("tiny", "same", "c6", "c7"):
        seed(store, case, base)
    runs = tmp_path / "runs"
    commands = []
    for i, metric in enumerate(METRICS):   # four approvals of one metric each into the same case
        run = write_run(runs, "tiny", f"tiny-{i}", {m: shifted(v, 1 + (i + 1) / 100) for m, v in base.items()})
        commands.append(["approve", str(run), "--metric", metric])
    for name in ("same-a", "same-b"):       # two whole approvals of the same target
        factor = 1.5 if name == "same-a" else 2.5
        run = write_run(runs, "same", name, {m: shifted(v, factor) for m, v in base.items()})
        commands.append(["approve", str(run)])
    for case in ("c6", "c7"):               # two other cases
        run = write_run(runs, case, f"{case}-run", {m: shifted(v, 3.0) for m, v in base.items()})
        commands.append(["approve", str(run)])
    results = race(tmp_path, [[*c, "--store", str(store.root), "--reason", "race", "--approver", f"p{i}"]
                              for i, c in enumerate(commands)])
    assert [r.returncode for r in results] == [0] * 8, [r.stderr for r in results]

    store = GoldenStore(store.root)
    assert store.fsck(repair=False) == []
    # no lost update: each metric of tiny holds the value of the process that approved it
    tiny = store.read(GoldenKey("tiny", "dev", "cpu", 1)).metrics
    for i, metric in enumerate(METRICS):
        assert tiny[metric].as_dict() == shifted(base[metric], 1 + (i + 1) / 100), metric
    history = store.history("tiny")
    assert [e.number for e in history] == [1, 2, 3, 4, 5]
    assert sorted(e.source_run_id for e in history[1:]) == ["tiny-0", "tiny-1", "tiny-2", "tiny-3"]
    for entry in history[1:]:
        i = int(entry.source_run_id[-1])
        assert entry.provenance["selection"]["files"][0]["replaced"] == [METRICS[i]]
        changed = {m for m, c in entry.files["golden_values_dev_cpu.json"].summary.items() if c.changed_steps}
        assert changed == {METRICS[i]}      # each version changed exactly its own metric
    # the same target: both versions recorded, the file is the later one
    same = store.history("same")
    assert [e.number for e in same] == [1, 2, 3]
    last = same[-1].source_run_id
    factor = 1.5 if last == "same-a" else 2.5
    assert store.read(GoldenKey("same", "dev", "cpu", 1)).metrics["lm loss"].as_dict() == shifted(LOSS, factor)
    for case in ("c6", "c7"):
        assert [e.source_run_id for e in store.history(case)] == ["seed-run", f"{case}-run"]


def test_a_staged_candidate_approved_by_four_processes_lands_once(tmp_path):
    store = make_store(tmp_path / "cases")
    seed(store, "tiny", {"lm loss": LOSS})
    approve.stage_candidate(store, write_run(tmp_path / "runs", "tiny", "r1", {"lm loss": shifted(LOSS, 1.1)}),
                            "dev", "cpu")
    results = race(tmp_path, [["approve", "--pending", "--store", str(store.root), "--reason", "double click",
                               "--approver", f"p{i}"] for i in range(4)])
    landed = [r for r in results if r.returncode == 0 and "approved tiny dev/cpu as v2" in r.stdout]
    assert len(landed) == 1, [(r.returncode, r.stdout, r.stderr) for r in results]
    for r in results:
        if r is not landed[0]:   # lost the race: refused as stale, or found nothing left to approve
            refused = r.returncode == 2 and "but v2 (approve by" in r.stderr
            too_late = r.returncode == 0 and r.stdout.strip() == "no pending candidates"
            assert refused or too_late, (r.returncode, r.stdout, r.stderr)
    assert [e.source_run_id for e in GoldenStore(store.root).history("tiny")] == ["seed-run", "r1"]
    assert GoldenStore(store.root).fsck(repair=False) == []


def test_eight_processes_approving_in_a_git_store(tmp_path):
    """The same race in a git work tree: the journal and the store's lock keep every update, and
    each file's approval record describes the approval that wrote it last."""
    repo = git_repo(tmp_path / "repo")
    store = make_store(repo / "cases", ("tiny", "same", "c6"))
    base = {"lm loss": LOSS, "num-zeros": ZEROS, "mem-allocated-bytes": ZEROS, "mem-max-allocated-bytes": ZEROS}
    for case in ("tiny", "same", "c6"):
        seed(store, case, base)
    commit_all(repo, "seed")
    runs = tmp_path / "runs"
    commands = []
    for i, metric in enumerate(METRICS):
        run = write_run(runs, "tiny", f"tiny-{i}", {m: shifted(v, 1 + (i + 1) / 100) for m, v in base.items()})
        commands.append(["approve", str(run), "--metric", metric])
    for name, factor in (("same-a", 1.5), ("same-b", 2.5)):
        shifted_run = write_run(runs, "same", name, {m: shifted(v, factor) for m, v in base.items()})
        commands.append(["approve", str(shifted_run)])
    commands.append(["approve", str(write_run(runs, "c6", "c6-run", {m: shifted(v, 3.0) for m, v in base.items()}))])
    results = race(tmp_path, [[*c, "--store", str(store.root), "--reason", "race", "--approver", f"p{i}"]
                              for i, c in enumerate(commands)])
    assert [r.returncode for r in results] == [0] * 7, [r.stderr for r in results]

    store = GoldenStore(store.root)
    assert store.backend_name == "git"
    assert [p for p in store.fsck(repair=False) if p.severity != "note"] == []
    tiny = store.read(GoldenKey("tiny", "dev", "cpu", 1)).metrics
    for i, metric in enumerate(METRICS):   # no lost update
        assert tiny[metric].as_dict() == shifted(base[metric], 1 + (i + 1) / 100), metric
    assert store.writer_of(GoldenKey("tiny", "dev", "cpu", 1)).source_run_id in {f"tiny-{i}" for i in range(4)}
    same = store.writer_of(GoldenKey("same", "dev", "cpu", 1)).source_run_id
    factor = 1.5 if same == "same-a" else 2.5
    assert store.read(GoldenKey("same", "dev", "cpu", 1)).metrics["lm loss"].as_dict() == shifted(LOSS, factor)
    assert store.writer_of(GoldenKey("c6", "dev", "cpu", 1)).source_run_id == "c6-run"
    commit_all(repo, "the race")
    assert [v.action for v in GoldenStore(store.root).history("c6")] == ["approve", "approve"]


def test_a_staged_candidate_approved_by_four_processes_lands_once_in_git(tmp_path):
    repo = git_repo(tmp_path / "repo")
    store = make_store(repo / "cases")
    seed(store, "tiny", {"lm loss": LOSS})
    commit_all(repo, "seed")
    approve.stage_candidate(store, write_run(tmp_path / "runs", "tiny", "r1", {"lm loss": shifted(LOSS, 1.1)}),
                            "dev", "cpu")
    results = race(tmp_path, [["approve", "--pending", "--store", str(store.root), "--reason", "double click",
                               "--approver", f"p{i}"] for i in range(4)])
    landed = [r for r in results if r.returncode == 0 and "approved tiny dev/cpu in the work tree" in r.stdout]
    assert len(landed) == 1, [(r.returncode, r.stdout, r.stderr) for r in results]
    for r in results:
        if r is not landed[0]:
            refused = r.returncode == 2 and ("changed since" in r.stderr or "already approved" in r.stderr)
            too_late = r.returncode == 0 and r.stdout.strip() == "no pending candidates"
            assert refused or too_late, (r.returncode, r.stdout, r.stderr)
    assert GoldenStore(store.root).writer_of(GoldenKey("tiny", "dev", "cpu", 1)).source_run_id == "r1"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["ledger", "git"])
def test_sigkill_during_approve_never_leaves_a_mixed_or_unrecorded_golden(tmp_path, backend):
    spec = importlib.util.spec_from_file_location("crash_approve", REPO / "bench" / "crash_approve.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench   # dataclasses look their module up while the file runs
    spec.loader.exec_module(bench)
    tally = bench.run_trials(kills=40, seed=7, max_delay=0.15, workdir=tmp_path, backend=backend)
    assert tally.failures == []
    assert tally.kills == 40
