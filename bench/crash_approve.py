"""Crash safety of approval: SIGKILL an approver at random instants, then check the store.

A forked child loops through the whole approval path — stage a resume run as the pending
candidate, ``approve.apply`` it (guardrails, plan, store write of the file pair, discard the
candidate), and every third action ``approve.rollback`` — until the parent kills it with
SIGKILL after a random delay. Forking a parent that has already imported everything puts the
kills inside the work instead of inside interpreter start-up.

After each kill the parent checks, before any recovery, that every plain golden file is whole
and holds bytes some committed ledger entry recorded, and that a leftover candidate file is
whole; then it recovers (``fsck`` on even trials, the next approval's own recovery on odd
ones) and checks that the plain files equal the ledger head, that the phase-1 and ``_2nd``
files come from the same run as the head entry says, that ``fsck`` finds nothing, and that a
candidate left staged by a kill after the commit is reported by prune and refused on approval.

Both history backends: ``--backend ledger`` (the committed versions are the ledger's entries) and
``--backend git`` (the store inside a fresh git repository, the commit point its journal; the
"committed" contents are runs A and B, and the records must describe the files; every seventh
trial the parent commits the work tree, and the rollback goes back to the commit holding A).

    python bench/crash_approve.py [--kills 200] [--seed 0] [--max-delay 0.25] [--backend ledger|git]

Prints where the child was at each kill (staging, planning, inside ``store.write``, after
it) and what the store showed (before the commit, after it with files not all replaced,
between writes).
tests/test_approve_concurrency.py runs a shorter version.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import mmap
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # no BLAS threads across fork()
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from goldens import approve  # noqa: E402  (after the path set-up above)
from goldens.core.model import Artifact, MetricSeries, Phase  # noqa: E402
from goldens.files.formats.artifact import dumps_artifact  # noqa: E402
from goldens.store import GoldenStore  # noqa: E402

CASE = "crash_case"
STEPS = 40
FILES = ("golden_values_dev_cpu.json", "golden_values_dev_cpu_2nd.json")


def _artifact(kind: str, run_id: str) -> Artifact:
    """Run kind "A" or "B": a resume run (phase 2 resumed at STEPS/2) with distinct values."""
    import numpy as np

    factor = {"A": 1.0, "B": 1.03}[kind]
    steps = np.arange(1, STEPS + 1, dtype=np.int64)
    loss = (10.0 - steps / 16.0) * factor
    zeros = np.full(STEPS, 1000.0) * factor
    half = steps > STEPS // 2
    phase1 = {"lm loss": MetricSeries("lm loss", steps, loss, 1, STEPS, 1),
              "num-zeros": MetricSeries("num-zeros", steps, zeros, 1, STEPS, 1)}
    phase2 = {"lm loss": MetricSeries("lm loss", steps[half], loss[half], STEPS // 2 + 1, STEPS, 1)}
    return Artifact(case=CASE, run_id=run_id, status="complete",
                    provenance={"fingerprint": f"fp-{kind}", "env": "dev", "platform": "cpu"},
                    phases={1: Phase(1, phase1, 1, STEPS), 2: Phase(2, phase2, STEPS // 2 + 1, STEPS, STEPS // 2)})


def write_run(runs: Path, kind: str, run_id: str) -> Path:
    path = runs / run_id / "artifact.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps_artifact(_artifact(kind, run_id)))
    return path


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=b@b", *args],
                          check=True, capture_output=True, text=True).stdout


def setup(root: Path, backend: str) -> dict[str, dict[str, bytes]]:
    """A store whose case holds v1 = A, v2 = B (in git: commits tagged setup-A, setup-B); returns
    the exact file bytes of each kind."""
    cases, runs = root / "cases", root / "runs"
    (cases / CASE).mkdir(parents=True)
    (cases / CASE / "case.yaml").write_text("description: crash test\n")
    if backend == "git":
        (root / ".gitignore").write_text("runs/\n")
        git(root, "init", "-q")
    store = GoldenStore(cases, backend=backend)
    expected = {}
    for kind in ("A", "B"):
        run = write_run(runs, kind, f"{kind}-setup")
        approve.apply(approve.Operation.ACCEPT, store, approve.candidates_for_run(store, run),
                      reason="setup", approver="bench", ci=False)
        expected[kind] = {name: (cases / CASE / name).read_bytes() for name in FILES}
        if backend == "git":
            git(root, "add", "-A")
            git(root, "commit", "-q", "-m", f"setup {kind}")
            git(root, "tag", f"setup-{kind}")
    return expected


def first_version(backend: str) -> str:
    """The version that holds run A: v1 in a ledger, the commit tagged setup-A in git."""
    return "setup-A" if backend == "git" else "v1"


PHASES = ("writing the run, staging the candidate", "approve: guardrails and plan",
          "inside store.write", "approve: after the write (discarding the candidate)", "rollback: plan")
STAGING, PLANNING, WRITING, AFTER_WRITE, ROLLBACK = range(len(PHASES))


class MarkedStore(GoldenStore):
    """The store, telling the parent (through a shared byte) when a write is in progress."""

    def __init__(self, root: Path, marker: mmap.mmap, backend: str):
        super().__init__(root, backend=backend)
        self.marker = marker

    def write(self, *args, **kwargs):
        self.marker[0] = WRITING
        entry = super().write(*args, **kwargs)
        self.marker[0] = AFTER_WRITE
        return entry

    def restore(self, *args, **kwargs):  # rollback's write
        self.marker[0] = WRITING
        entry = super().restore(*args, **kwargs)
        self.marker[0] = AFTER_WRITE
        return entry


def child(root: Path, trial: int, marker: mmap.mmap, backend: str) -> None:
    """Approve and roll back forever; the parent kills us somewhere inside."""
    store = MarkedStore(root / "cases", marker, backend)
    for n in range(10**9):
        if n % 3 == 2:
            marker[0] = ROLLBACK
            with contextlib.suppress(approve.ApprovalRefused):  # already holds v1's content
                approve.rollback(store, CASE, first_version(backend), reason="back to A", approver="bench", ci=False)
            continue
        kind = "AB"[n % 3]
        marker[0] = STAGING
        run = write_run(root / "runs", kind, f"{kind}-{trial}-{n}")
        approve.stage_candidate(store, run, "dev", "cpu", ci=False)
        marker[0] = PLANNING
        approve.apply(approve.Operation.ACCEPT, store, approve.list_pending(store), reason="crash bench",
                      approver="bench", ci=False)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def committed_entries(case_dir: Path) -> list[dict]:
    data = (case_dir / ".golden" / "ledger.jsonl").read_bytes()
    return [json.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines()]


@dataclass
class Tally:
    kills: int = 0
    windows: Counter = field(default_factory=Counter)
    phases: Counter = field(default_factory=Counter)
    left_staged: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def check_before_recovery(case_dir: Path, store_root: Path, expected: dict[str, dict[str, bytes]],
                          backend: str) -> list[str]:
    """What any reader sees right after the kill: whole files, each a committed version's bytes (in
    git: run A's or run B's, the only contents ever approved)."""
    problems = []
    if backend == "git":
        committed = {sha(data) for files in expected.values() for data in files.values()}
    else:
        committed = {r["hash"] for e in committed_entries(case_dir) for r in e["files"].values() if r["hash"]}
    for name in FILES:
        data = (case_dir / name).read_bytes()
        if sha(data) not in committed:
            problems.append(f"{name} holds bytes no committed version recorded ({len(data)} bytes)")
        json.loads(data)  # whole JSON, or this raises
    for path in (store_root / approve.PENDING_DIR).rglob("*.json"):
        approve.read_candidate(path)  # a whole candidate, or this raises
    return problems


def history_bytes(case_dir: Path, backend: str) -> bytes:
    """What a write changes besides the goldens: the ledger, or the approval records."""
    if backend == "git":
        return b"".join(p.read_bytes() for p in sorted((case_dir / ".approvals").glob("*.json")))
    return (case_dir / ".golden" / "ledger.jsonl").read_bytes()


def check_after_recovery(root: Path, expected: dict[str, dict[str, bytes]], tally: Tally, backend: str) -> list[str]:
    store = GoldenStore(root / "cases", backend=backend)
    case_dir = store.case_dir(CASE)
    problems = [f"fsck: {p.kind}: {p.message}" for p in store.fsck(repair=False) if p.severity != "note"]
    plain = {name: (case_dir / name).read_bytes() for name in FILES}
    if backend == "git":
        writers = [store.writer_of(key) for key in store.keys(CASE)]
        if any(w is None for w in writers) or len(writers) != 2:
            problems.append("a golden file is not described by its approval record")
            return problems
        head = writers[0]
        if writers[1].source_run_id != head.source_run_id:
            problems.append("the two records name different runs")
    else:
        head = store.current_entry(CASE)
        for name in FILES:
            if head.files.get(name) is not None and sha(plain[name]) != _state_hash(store, name):
                problems.append(f"{name} differs from the head {head.label}")
    kinds = [k for k, files in expected.items() if files == plain]
    if len(kinds) != 1:
        problems.append("the phase-1 and _2nd files come from different runs (a mixed version)")
    elif not (head.source_run_id or "").startswith(kinds[0]):
        problems.append(f"files hold run kind {kinds[0]} but the head {head.label} names {head.source_run_id}")
    for candidate in approve.list_pending(store):
        landed = approve.approved_since(store, candidate)
        if landed is None:
            tally.left_staged["not yet approved"] += 1
            continue
        tally.left_staged["approved, candidate left staged"] += 1
        report = approve.prune_check(store)
        if not any("already approved" in why for _, why in report.stale_candidates):
            problems.append("prune does not report a candidate whose run was already approved")
        before = history_bytes(case_dir, backend)
        try:
            approve.apply(approve.Operation.ACCEPT, store, [candidate], reason="again", approver="bench", ci=False)
            problems.append(f"re-approving already-approved run {candidate.run_id} was not refused")
        except approve.ApprovalRefused:
            pass
        if history_bytes(case_dir, backend) != before:
            problems.append("a refused re-approval wrote to the history")
        approve.apply(approve.Operation.REJECT, store, [candidate])
    return problems


def _state_hash(store: GoldenStore, name: str) -> str | None:
    state: dict[str, str | None] = {}
    for entry in store.history(CASE):
        for filename, record in entry.files.items():
            state[filename] = record.hash
    return state.get(name)


def classify(store: GoldenStore) -> str:
    kinds = {p.kind for p in store.fsck(repair=False) if p.severity != "note"}
    if "torn-ledger-line" in kinds:
        return "ledger line torn (before the commit)"
    if "interrupted-write" in kinds:
        return "after the commit, files not all replaced"
    if kinds & {"orphan-blob", "stale-temp-file"}:
        return "before the commit (blobs or temp files only)"
    return "between writes"


def run_trials(kills: int, seed: int, max_delay: float, workdir: Path, backend: str = "ledger") -> Tally:
    rng = random.Random(seed)
    root = workdir / "crash_approve"
    if root.exists():
        shutil.rmtree(root)
    expected = setup(root, backend)
    tally = Tally()
    marker = mmap.mmap(-1, 1)
    for trial in range(kills):
        if backend == "git" and trial % 7 == 6:
            git(root, "add", "-A")
            git(root, "commit", "-q", "--allow-empty", "-m", f"trial {trial}")
        marker[0] = STAGING
        pid = os.fork()
        if pid == 0:  # the child: never returns normally
            try:
                child(root, trial, marker, backend)
            finally:
                os._exit(3)
        time.sleep(rng.uniform(0.0, max_delay))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
            tally.failures.append(f"trial {trial}: the child ended by itself (status {status})")
            continue
        tally.kills += 1
        tally.phases[PHASES[marker[0]]] += 1
        case_dir = root / "cases" / CASE
        problems = check_before_recovery(case_dir, root / "cases", expected, backend)
        store = GoldenStore(root / "cases", backend=backend)
        tally.windows[classify(store)] += 1
        if trial % 2 == 0:
            store.fsck(repair=True)
        else:  # the next approval recovers by itself
            run = write_run(root / "runs", "A", f"A-recover-{trial}")
            approve.apply(approve.Operation.ACCEPT, store, approve.candidates_for_run(store, run),
                          reason="recover", approver="bench", ci=False)
        problems += check_after_recovery(root, expected, tally, backend)
        tally.failures += [f"trial {trial}: {p}" for p in problems]
        _drop_unreferenced_runs(root, backend)
    if backend == "git":
        tally.failures += check_git_history(GoldenStore(root / "cases", backend=backend))
    return tally


def check_git_history(store: GoldenStore) -> list[str]:
    """Every version the history shows of the file pair is whole and attributed to a run A or B."""
    problems = []
    for version in store.history(CASE):
        if not version.attributed:
            problems.append(f"history: {version.label} is unattributed")
        elif not (version.source_run_id or "").startswith(("A", "B")):
            problems.append(f"history: {version.label} names run {version.source_run_id}")
    return problems


def _drop_unreferenced_runs(root: Path, backend: str) -> None:
    keep = {Path(c.artifact).parent.name for c in approve.list_pending(GoldenStore(root / "cases", backend=backend))}
    for run_dir in (root / "runs").iterdir():
        if run_dir.name not in keep and not run_dir.name.endswith("-setup"):
            shutil.rmtree(run_dir)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-delay", type=float, default=0.25, help="seconds; kill after U(0, this)")
    parser.add_argument("--backend", choices=("ledger", "git"), default="ledger")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tally = run_trials(args.kills, args.seed, args.max_delay, Path(tmp), args.backend)
        versions = len(GoldenStore(Path(tmp) / "crash_approve" / "cases", backend=args.backend).history(CASE))
    print(f"backend {args.backend}: {tally.kills} SIGKILLs during approve/rollback in "
          f"{time.perf_counter() - started:.1f} s; {versions} versions in the history")
    print("where the child was:")
    for phase, count in tally.phases.most_common():
        print(f"  {count:4d}  {phase}")
    print("what the store shows before recovery:")
    for window, count in tally.windows.most_common():
        print(f"  {count:4d}  {window}")
    for what, count in tally.left_staged.most_common():
        print(f"  {count:4d}  candidate staged at the kill: {what}")
    print(f"{len(tally.failures)} failures")
    for failure in tally.failures[:20]:
        print("  " + failure)
    return 1 if tally.failures else 0


if __name__ == "__main__":
    sys.exit(main())
