"""Approvals racing each other, and approvers killed mid-write (a short bench/crash_approve.py)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from goldens import approve
from goldens.model import GoldenKey
from goldens.store import GoldenStore
from tests.builders import LOSS, ZEROS, make_store, seed, shifted, write_run

REPO = Path(__file__).resolve().parents[1]
METRICS = ("lm loss", "num-zeros", "mem-allocated-bytes", "mem-max-allocated-bytes")


@pytest.fixture(autouse=True)
def not_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)


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
    assert [e.version for e in history] == [1, 2, 3, 4, 5]
    assert sorted(e.source_run_id for e in history[1:]) == ["tiny-0", "tiny-1", "tiny-2", "tiny-3"]
    for entry in history[1:]:
        i = int(entry.source_run_id[-1])
        assert entry.provenance["selection"]["files"][0]["replaced"] == [METRICS[i]]
        changed = {m for m, c in entry.files["golden_values_dev_cpu.json"].summary.items() if c.changed_steps}
        assert changed == {METRICS[i]}      # each version changed exactly its own metric
    # the same target: both versions recorded, the file is the later one
    same = store.history("same")
    assert [e.version for e in same] == [1, 2, 3]
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


@pytest.mark.slow
def test_sigkill_during_approve_never_leaves_a_mixed_or_unrecorded_golden(tmp_path):
    spec = importlib.util.spec_from_file_location("crash_approve", REPO / "bench" / "crash_approve.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench   # dataclasses look their module up while the file runs
    spec.loader.exec_module(bench)
    tally = bench.run_trials(kills=40, seed=7, max_delay=0.15, workdir=tmp_path)
    assert tally.failures == []
    assert tally.kills == 40
