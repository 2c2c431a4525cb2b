"""Crash safety of the golden store: SIGKILL a writer at random instants, then check the store.

A child process writes version after version of a resume case's file pair (phase 1 + ``_2nd``);
the parent kills it with SIGKILL after a random delay, then checks, before any recovery, that each
plain file is whole and holds the old or the new version, that the head is the last version the
child reported done or the one it was writing, and — after recovery (by ``fsck`` on alternate
trials, by the next writer's own recovery on the others) — that the plain files equal the head and
``fsck`` finds nothing.

Both history backends: ``--backend ledger`` (the head is the ledger's last entry) and ``--backend
git`` (the store inside a fresh git repository; the head is what the approval records describe,
the commit point the journal; every fifth trial the parent commits the work tree, so the writer
also runs on top of committed history, which must then attribute every commit to its write).

    python bench/crash_store.py [--kills 200] [--seed 0] [--max-delay 0.2] [--backend ledger|git]

Prints how many kills landed before the commit, after it (files rolled forward) or between writes.
The test suite runs a shorter version (tests/test_store_crash.py).
"""
from __future__ import annotations

import argparse
import json
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

    from goldens.core.model import GoldenKey, GoldenSet, MetricSeries

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
    from goldens.files.formats.golden import dumps_golden

    return {key.filename(): dumps_golden(golden).encode() for key, golden in content(version).items()}


def child(root: str, backend: str) -> None:
    """Write versions forever, reporting each one done; the parent kills us somewhere inside."""
    from goldens.store import GoldenStore

    store = GoldenStore(root, backend=backend)
    print("ready", flush=True)
    while True:
        if backend == "git":
            version = git_head(Path(root)) + 1
            hashes = store.file_hashes(CASE, list(content_bytes(version)))
            store.write(CASE, content(version), approver="crash-bench", reason=f"version {version}",
                        source_run_id=f"run-{version}", fingerprint="fp", expected_files=hashes, ci=False)
        else:
            head = store.current_entry(CASE)
            version = (head.number if head else 0) + 1
            store.write(CASE, content(version), approver="crash-bench", reason=f"version {version}",
                        source_run_id=f"run-{version}", fingerprint="fp", expected_version=version - 1)
        print(f"done {version}", flush=True)


def git_head(root: Path) -> int:
    """The version a git store holds: what the phase-1 file's approval record says it wrote (the
    records and the goldens agree once recovery ran; every write recovers first)."""
    record = root / CASE / ".approvals" / "dev_cpu.json"
    return int(json.loads(record.read_text())["source_run_id"].split("-")[1]) if record.exists() else 0


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=b@b", *args],
                          check=True, capture_output=True, text=True).stdout


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
    kinds = {p.kind for p in problems if p.severity != "note"}
    if "interrupted-write" in kinds:
        return "after commit, plain files rolled forward"
    if kinds & {"orphan-blob", "stale-temp-file", "torn-ledger-line"}:
        return "before commit (blobs/temp files only; old version stands)"
    return "between writes (nothing to recover)"


def check_store(root: Path, last_done: int, *, repair: bool, backend: str = "ledger") -> str:
    """The invariants after a kill; raises AssertionError naming the broken one."""
    from goldens.store import GoldenStore

    store = GoldenStore(root, backend=backend)
    if backend == "git":
        return check_git_store(store, last_done, repair=repair)
    case_dir = store.case_dir(CASE)
    head = store.current_entry(CASE)
    assert head is not None, "the ledger lost its committed entries"
    assert head.number in (last_done, last_done + 1), \
        f"ledger head v{head.number}, but the writer last reported v{last_done} done"
    new, old = content_bytes(head.number), content_bytes(head.number - 1) if head.number > 1 else {}
    for filename, data in new.items():
        plain = (case_dir / filename).read_bytes()
        assert plain in (data, old.get(filename)), f"{filename} is neither v{head.number} nor v{head.number - 1}"
    before = store.fsck(repair=False)
    assert not [p for p in before if p.severity == "error" and p.kind != "interrupted-write"], before
    outcome = _classify(before)
    if repair:
        after = store.fsck(repair=True)
        assert all(p.repaired or p.severity != "error" for p in after), after
        assert store.fsck(repair=False) == [], "fsck still finds problems after repair"
        for filename, data in new.items():
            assert (case_dir / filename).read_bytes() == data, f"{filename} != ledger head after recovery"
        assert store.read_version(CASE, head.number) == content(head.number)
    return outcome


def check_git_store(store, last_done: int, *, repair: bool) -> str:
    """The same invariants in a git store: each file whole and the version the writer finished or the
    one after it (never anything else); after recovery both files and both records at one version,
    the records describing the files' bytes, and fsck clean."""
    from goldens.store.safety import read_regular

    case_dir = store.case_dir(CASE)
    allowed = {last_done, last_done + 1}
    for filename in content_bytes(1):
        plain = read_regular(case_dir / filename)
        held = [v for v in allowed if v >= 1 and content_bytes(v)[filename] == plain]
        assert held, f"{filename} is neither v{last_done} nor v{last_done + 1} before recovery"
    before = store.fsck(repair=False)
    assert not [p for p in before if p.severity == "error"], before
    outcome = _classify(before)
    if repair:
        store.fsck(repair=True)
    else:  # the next writer recovers first: take the lock and recover the way it does
        with store.backend.locked():
            store.backend.recover(repair=True)
    assert [p for p in store.fsck(repair=False) if p.severity != "note"] == [], "fsck finds problems after recovery"
    head = git_head(store.root)
    assert head in allowed, f"the records say v{head}, but the writer last reported v{last_done} done"
    for filename, data in content_bytes(head).items():
        assert read_regular(case_dir / filename) == data, f"{filename} != v{head} after recovery (a mixed version)"
        writer = store.writer_of(store.keys(CASE)[0 if "_2nd" not in filename else 1])
        assert writer is not None and writer.reason == f"version {head}", f"{filename}: its record is not v{head}'s"
    return outcome


def head_version(root: Path, backend: str) -> int:
    from goldens.store import GoldenStore

    return git_head(root) if backend == "git" else GoldenStore(root, backend=backend).current_entry(CASE).number


def run_trials(kills: int, *, seed: int = 0, max_delay: float = 0.2, root: Path | None = None,
               progress: bool = False, backend: str = "ledger") -> CrashStats:
    from goldens.store import GoldenStore

    rng = random.Random(seed)
    stats = CrashStats()
    with tempfile.TemporaryDirectory(prefix="golden-crash-") as tmp:
        repo = Path(root or tmp)
        root = repo / "cases" if backend == "git" else repo
        (root / CASE).mkdir(parents=True)
        (root / CASE / "case.yaml").write_text("name: crash_case\n")
        if backend == "git":
            git(repo, "init", "-q")
        GoldenStore(root, backend=backend).write(CASE, content(1), approver="crash-bench", reason="version 1",
                                                 source_run_id="run-1", ci=False)
        commits = 0
        for trial in range(kills):
            if backend == "git" and trial % 5 == 0:
                git(repo, "add", "-A")
                git(repo, "commit", "-q", "--allow-empty", "-m", f"trial {trial}")
                commits += 1
            # committed before this writer starts (a killed writer may have committed without reporting it)
            head_before = head_version(root, backend)
            proc = subprocess.Popen([sys.executable, __file__, "--child", str(root), "--backend", backend],
                                    stdout=subprocess.PIPE, text=True, cwd=REPO)
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
            stats.outcomes[check_store(root, last_done, repair=trial % 2 == 0, backend=backend)] += 1
            stats.kills += 1
            if progress and (trial + 1) % 25 == 0:
                print(f"  {trial + 1} kills …", flush=True)
        final = check_store(root, head_version(root, backend), repair=True, backend=backend)
        assert final in {"between writes (nothing to recover)", "after commit, plain files rolled forward",
                         "before commit (blobs/temp files only; old version stands)"}
        stats.versions_written = head_version(root, backend)
        if backend == "git":
            check_git_history(GoldenStore(root, backend=backend), commits)
    return stats


def check_git_history(store, commits: int) -> None:
    """Every commit the parent made is a version of the case, attributed to the write it holds."""
    versions = [v for v in store.history(CASE) if v.commit]
    assert versions, "the committed versions do not show in the history"
    for version in versions:
        assert version.attributed and version.reason.startswith("version "), \
            f"commit {version.label} is not attributed to its write ({version.action})"
        assert len(version.files) == 2, f"commit {version.label} holds half a version: {sorted(version.files)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-delay", type=float, default=0.2, help="seconds; kill after uniform(0, this)")
    parser.add_argument("--backend", choices=("ledger", "git"), default="ledger")
    parser.add_argument("--child", metavar="ROOT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.backend)
        return
    started = time.perf_counter()
    stats = run_trials(args.kills, seed=args.seed, max_delay=args.max_delay, progress=True, backend=args.backend)
    print(f"backend: {args.backend}")
    print("\n".join(stats.lines()))
    print(f"all invariants held after every kill ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
