"""Read-only checks racing writers: fsck --no-repair (what validate --store runs) never reports a
write in progress as damage.

Two writer processes approve version after version of a resume case (the phase-1 file and its
``_2nd`` partner in one write, so a reader between the two renames would see a mixed version)
while this process runs the read-only integrity check over and over. The store is healthy at
every instant a write is not half done, so every problem the check reports is a false report.
Issue 15 saw 2 in 60 before readers took the shared lock.

With ``--backend git`` the store lies in a git work tree: a write replaces the goldens and their
approval records under one journal, and a reader between those renames would see a golden its record
does not describe (reported as changed by another tool) unless it waits for the writer.

    python bench/race_readers.py [--checks 300] [--writers 2] [--backend ledger|git]

Prints the checks, the versions written meanwhile and the false reports; exit 1 on any.
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CASE = "race"
STEPS = 400


def goldens(version: int) -> dict:
    import numpy as np

    from goldens.core.model import GoldenKey, GoldenSet, MetricSeries

    steps = np.arange(1, STEPS + 1, dtype=np.int64)
    loss = 10.0 - steps / 64.0 + version * 1e-3
    resumed = np.where(steps > STEPS // 2, loss, np.nan)
    first = MetricSeries("lm loss", steps, loss, 1, STEPS, 1)
    second = MetricSeries("lm loss", steps, resumed, 1, STEPS, 1)
    return {GoldenKey(CASE, "dev", "cpu", 1): GoldenSet({"lm loss": first}),
            GoldenKey(CASE, "dev", "cpu", 2): GoldenSet({"lm loss": second})}


def writer(root: str, stop: multiprocessing.synchronize.Event, writer_id: int, written: Any) -> None:
    from goldens.store import GoldenStore

    store = GoldenStore(root)
    n = 0
    while not stop.is_set():
        n += 1
        store.write(CASE, goldens(writer_id * 100000 + n), approver=f"writer-{writer_id}", reason="race")
        with written.get_lock():
            written.value += 1


def race(checks: int, writers: int, backend: str = "ledger") -> tuple[int, Counter, list[str]]:
    import subprocess

    from goldens.store import GoldenStore

    with tempfile.TemporaryDirectory(prefix="golden-race-") as tmp:
        root = Path(tmp) / "cases"
        if backend == "git":
            subprocess.run(["git", "init", "-q", tmp], check=True)
        (root / CASE).mkdir(parents=True)
        (root / CASE / "case.yaml").write_text("description: race\n")
        GoldenStore(root).write(CASE, goldens(0), approver="setup", reason="v1")
        assert GoldenStore(root).backend_name == backend
        stop = multiprocessing.Event()
        written = multiprocessing.Value("i", 0)
        procs = [multiprocessing.Process(target=writer, args=(str(root), stop, i + 1, written))
                 for i in range(writers)]
        for proc in procs:
            proc.start()
        false_reports: Counter = Counter()
        examples: list[str] = []
        time.sleep(0.5)
        for _ in range(checks):
            for problem in GoldenStore(root).fsck(repair=False):
                false_reports[problem.kind] += 1
                if len(examples) < 5:
                    examples.append(f"{problem.kind}: {problem.message}")
        stop.set()
        for proc in procs:
            proc.join(60)
        versions = written.value
        assert GoldenStore(root).fsck(repair=False) == [], "the store is damaged after the race"
    return versions, false_reports, examples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=300)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--backend", choices=("ledger", "git"), default="ledger")
    args = parser.parse_args()
    started = time.perf_counter()
    versions, false_reports, examples = race(args.checks, args.writers, args.backend)
    total = sum(false_reports.values())
    print(f"{args.backend}: {args.checks} read-only checks while {args.writers} writers wrote {versions} versions "
          f"({time.perf_counter() - started:.1f} s): {total} false reports"
          + (f" ({', '.join(f'{k} {n}' for k, n in false_reports.items())})" if total else ""))
    for example in examples:
        print("  " + example)
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
