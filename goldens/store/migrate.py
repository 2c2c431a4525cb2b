"""Move a store's ledger history into git: approval records beside the goldens, the ledger gone.

For each case with a ledger, the entry that wrote each golden file's current bytes becomes that
file's approval record — approver, reason, time, run, fingerprint, provenance, summary and hashes
as the ledger recorded them — written through the git backend (one journal: all or nothing).
Then the ledger, its blobs and its lock are removed. Older versions keep their provenance too:
the git history holds the ledger as it was committed, and the git backend attributes a commit
that changed a golden from the ledger committed with it. A golden changed outside the store
since its last entry gets no record (it is unattributed, as git history will show).

Every case is checked before anything is written (``fsck`` clean, no torn or unreadable ledger);
running it again after a crash finishes the job. The user then commits the result.
"""
from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import StoreError
from ..files.gitrepo import GitRepo
from ..files.validate import ERROR
from .git_history import CaseWrite, GitHistory
from .golden_store import GoldenStore
from .ledger import HISTORY_DIR, LEDGER_FILE, LOCK_FILE, OBJECTS_DIR, ledger_path, plain_golden_files, read_ledger
from .records import sha256_hex
from .recovery import fsck_case
from .safety import refuse_in_ci


@dataclass(frozen=True)
class Migrated:
    """One case: the files that got a record (with the ledger version they come from), those that got none."""

    case: str
    recorded: tuple[tuple[str, int], ...]
    unattributed: tuple[str, ...]
    removed: tuple[str, ...]   # what of the ledger folder was deleted


def migrate_to_git(store: GoldenStore, *, ci: bool | None = None, allow_ci: bool = False) -> list[Migrated]:
    """Move every case's ledger into approval records; the store must lie in a git work tree.
    Never in CI (``CI`` set): CI never writes to the golden store."""
    refuse_in_ci("migrate", ci, allow_ci)
    repo = GitRepo.find(store.root)
    if repo is None:
        raise StoreError(f"{store.root} is not tracked in a git work tree: the ledger stays its history")
    git = GitHistory(store.root, repo, lock_timeout=store.lock_timeout)
    cases = [(c, store.case_dir(c)) for c in store.cases() if ledger_path(store.case_dir(c)).exists()]
    if not cases:
        raise StoreError(f"no case in {store.root} holds a ledger history: nothing to migrate")
    writes, plans = [], []
    for case, case_dir in cases:
        errors = [p for p in fsck_case(case, case_dir, repair=False) if p.severity == ERROR or p.kind in (
            "torn-ledger-line", "interrupted-write")]
        if errors:
            raise StoreError(f"{case}: {errors[0].message}; run golden fsck first (nothing migrated)")
        entries = read_ledger(case_dir).entries
        records: dict[str, dict[str, Any]] = {}
        recorded: list[tuple[str, int]] = []
        unattributed: list[str] = []
        for path in plain_golden_files(case_dir):
            digest = sha256_hex(path.read_bytes())
            entry = next((e for e in reversed(entries) if path.name in e.files
                          and e.files[path.name].hash == digest), None)
            if entry is None:
                unattributed.append(path.name)
                continue
            file = entry.files[path.name]
            records[path.name] = {"approver": entry.approver, "reason": entry.reason, "action": entry.action,
                                  "time": entry.time, "source_run_id": entry.source_run_id,
                                  "fingerprint": entry.fingerprint, "provenance": entry.provenance,
                                  "previous_hash": file.previous_hash, "summary": file.summary}
            recorded.append((path.name, entry.version))
        writes.append(CaseWrite(case, case_dir, {}, records))
        plans.append((case, case_dir, tuple(recorded), tuple(unattributed)))
    git.apply([w for w in writes if w.records])
    return [Migrated(case, recorded_files, unattributed_files, _remove_ledger(case_dir))
            for case, case_dir, recorded_files, unattributed_files in plans]


def _remove_ledger(case_dir: Path) -> tuple[str, ...]:
    """Delete the ledger folder's own files (ledger, blobs, lock, temp files); anything else stays."""
    history = case_dir / HISTORY_DIR
    removed = []
    objects = history / OBJECTS_DIR
    if objects.is_dir() and not objects.is_symlink():
        removed += [f"{HISTORY_DIR}/{OBJECTS_DIR}/{p.name}" for p in sorted(objects.iterdir())]
        shutil.rmtree(objects)
    for name in (LEDGER_FILE, LOCK_FILE):
        if (history / name).is_file():
            (history / name).unlink()
            removed.append(f"{HISTORY_DIR}/{name}")
    for tmp in sorted(history.glob(".*.tmp")) if history.is_dir() else ():
        tmp.unlink()
        removed.append(f"{HISTORY_DIR}/{tmp.name}")
    with contextlib.suppress(OSError):  # something that is not the ledger's stays, and the folder with it
        history.rmdir()
    return tuple(removed)
