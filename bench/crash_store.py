"""Crash safety of the golden store: SIGKILL a writer at random instants, then check the store.

A child process writes version after version of a resume case's file pair (phase 1 + ``_2nd``);
the parent kills it with SIGKILL after a random delay, then checks, before any recovery, that each
plain file is whole and holds the old or the new version, that the ledger head is the last version
the child reported done or the one it was writing, and — after recovery (by ``fsck`` on
alternate trials, by the next writer's own recovery on the others) — that the plain files equal
the ledger head and ``fsck`` finds nothing.

    python bench/crash_store.py [--kills 200] [--seed 0] [--max-delay 0.2]

Prints how many kills landed before the commit, after it (files rolled forward) or between writes.
The test suite runs a shorter version (tests/test_store_crash.py).
"""
from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CASE = "crash_case"
STEPS = 200


def content(version: int) -> dict:
    """The goldens of version ``version``: a phase-1 file and a ``_2nd`` file (leading NaN run)."""
    import numpy as np

    from goldens.model import GoldenKey, GoldenSet, MetricSeries

    steps = np.arange(1, STEPS + 1, dtype=np.int64)
    loss = 10.0 - steps / 64.0 + version * 1e-3
    zeros = np.full(STEPS, 1000.0 + version)
    resumed = loss.copy()
    resumed[: STEPS // 2] = np.nan
    phase1 = GoldenSet({"lm loss": MetricSeries("lm loss", steps, loss, 1, STEPS, 1),
                        "num-zeros": MetricSeries("num-zeros", steps, zeros, 1, STEPS, 1)})
    phase2 = GoldenSet({"lm loss": MetricSeries("lm loss", steps, resumed, 1, STEPS, 1)})
    return {GoldenKey(CASE, "dev", "cpu", 1): phase1, GoldenKey(CASE, "dev", "cpu", 2): phase2}


def content_bytes(version: int) -> dict[str, bytes]:
    from goldens.formats import dumps_golden

    return {key.filename(): dumps_golden(golden).encode() for key, golden in content(version).items()}


def child(root: str) -> None:
    """Write versions forever, reporting each one done; the parent kills us somewhere inside."""
    from goldens.store import GoldenStore

    store = GoldenStore(root)
    print("ready", flush=True)
    while True:
        head = store.current_entry(CASE)
        version = (head.version if head else 0) + 1
        entry = store.write(CASE, content(version), approver="crash-bench", reason=f"version {version}",
                            source_run_id=f"run-{version}", fingerprint="fp", expected_version=version - 1)
        print(f"done {entry.version}", flush=True)


@dataclass
class CrashStats:
    kills: int = 0
    outcomes: Counter = field(default_factory=Counter)
    versions_written: int = 0

    def lines(self) -> list[str]:
        out = [f"kills: {self.kills}", f"versions committed in all: {self.versions_written}"]
        out += [f"  {name}: {count}" for name, count in sorted(self.outcomes.items())]
        return out


def _classify(problems: list) -> str:
    kinds = {p.kind for p in problems}
    if "interrupted-write" in kinds:
        return "after commit, plain files rolled forward"
    if kinds & {"orphan-blob", "stale-temp-file", "torn-ledger-line"}:
        return "before commit (blobs/temp files only; old version stands)"
    return "between writes (nothing to recover)"


def check_store(root: Path, last_done: int, *, repair: bool) -> str:
    """The invariants after a kill; raises AssertionError naming the broken one."""
    from goldens.store import GoldenStore

    store = GoldenStore(root)
    case_dir = store.case_dir(CASE)
    head = store.current_entry(CASE)
    assert head is not None, "the ledger lost its committed entries"
    assert head.version in (last_done, last_done + 1), \
        f"ledger head v{head.version}, but the writer last reported v{last_done} done"
    new, old = content_bytes(head.version), content_bytes(head.version - 1) if head.version > 1 else {}
    for filename, data in new.items():
        plain = (case_dir / filename).read_bytes()
        assert plain in (data, old.get(filename)), f"{filename} is neither v{head.version} nor v{head.version - 1}"
    before = store.fsck(repair=False)
    assert not [p for p in before if p.severity == "error" and p.kind != "interrupted-write"], before
    outcome = _classify(before)
    if repair:
        after = store.fsck(repair=True)
        assert all(p.repaired or p.severity != "error" for p in after), after
        assert store.fsck(repair=False) == [], "fsck still finds problems after repair"
        for filename, data in new.items():
            assert (case_dir / filename).read_bytes() == data, f"{filename} != ledger head after recovery"
        assert store.read_version(CASE, head.version) == content(head.version)
    return outcome


def run_trials(kills: int, *, seed: int = 0, max_delay: float = 0.2, root: Path | None = None,
               progress: bool = False) -> CrashStats:
    from goldens.store import GoldenStore

    rng = random.Random(seed)
    stats = CrashStats()
    with tempfile.TemporaryDirectory(prefix="golden-crash-") as tmp:
        root = Path(root or tmp)
        (root / CASE).mkdir(parents=True)
        (root / CASE / "case.yaml").write_text("name: crash_case\n")
        GoldenStore(root).write(CASE, content(1), approver="crash-bench", reason="version 1")
        for trial in range(kills):
            # committed before this writer starts (a killed writer may have committed without reporting it)
            head_before = GoldenStore(root).current_entry(CASE).version
            proc = subprocess.Popen([sys.executable, __file__, "--child", str(root)], stdout=subprocess.PIPE,
                                    text=True, cwd=REPO)
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                proc.kill()
                raise RuntimeError(f"writer did not start: {proc.communicate()}")
            time.sleep(rng.uniform(0.0, max_delay))
            proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate()
            done = [int(line.split()[1]) for line in out.splitlines() if line.startswith("done ")]
            if proc.returncode != -signal.SIGKILL:
                raise RuntimeError(f"writer exited with {proc.returncode} before the kill")
            last_done = max(done, default=head_before)
            # odd trials leave recovery to the next writer, which must recover before writing
            stats.outcomes[check_store(root, last_done, repair=trial % 2 == 0)] += 1
            stats.kills += 1
            if progress and (trial + 1) % 25 == 0:
                print(f"  {trial + 1} kills …", flush=True)
        final = check_store(root, GoldenStore(root).current_entry(CASE).version, repair=True)
        assert final in {"between writes (nothing to recover)", "after commit, plain files rolled forward",
                         "before commit (blobs/temp files only; old version stands)"}
        stats.versions_written = GoldenStore(root).current_entry(CASE).version
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-delay", type=float, default=0.2, help="seconds; kill after uniform(0, this)")
    parser.add_argument("--child", metavar="ROOT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    started = time.perf_counter()
    stats = run_trials(args.kills, seed=args.seed, max_delay=args.max_delay, progress=True)
    print("\n".join(stats.lines()))
    print(f"all invariants held after every kill ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
