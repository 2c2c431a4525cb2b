"""The ledger backend: history outside git, per case content-addressed blobs and a hash-chained
ledger (``ledger`` the files and the write protocol, ``recovery`` crash recovery and the integrity
check). ``CASE@vN`` is the case as of ledger entry N."""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ..core.errors import StoreError
from ..files.formats.golden import parse_golden_filename
from ..files.validate import ERROR
from .backend import LEDGER
from .ledger import (
    HISTORY_DIR,
    LOCK_FILE,
    LedgerEntry,
    checked_ledger,
    commit,
    commit_untracked,
    file_state,
    layout_problems,
    ledger_path,
    lock_path,
    read_blob,
    read_bytes,
    require_safe_layout,
    untracked,
)
from .records import Problem, run_provenance, sha256_hex
from .recovery import fsck_case, recover, recover_or_refuse
from .safety import make_folder, shared_lock, version_number
from .versions import NothingToRestore, Version, VersionConflict


def ledger_number(ref: str) -> int:
    """``v3`` / ``3`` → 3 (a ledger store's versions; ASCII digits only, bounded)."""
    number = version_number(ref)
    if number is None:
        raise StoreError(f"invalid version {ref[:40]!r}: this store's history is a ledger, "
                         f"use CASE@vN with N ≥ 1 (ASCII digits)")
    return number


class LedgerHistory:
    """History, writes and the integrity check of a store outside git, one ledger per case."""

    name = LEDGER

    def __init__(self, root: Path, *, lock_timeout: float = 30.0):
        self.root = root
        self.lock_timeout = lock_timeout

    def entries(self, case: str, case_dir: Path) -> list[LedgerEntry]:
        return list(checked_ledger(case, case_dir).entries)

    def history(self, case: str, case_dir: Path) -> list[Version]:
        return [Version.from_entry(e) for e in self.entries(case, case_dir)]

    def version_bytes(self, case: str, case_dir: Path, ref: str) -> dict[str, bytes]:
        """The case's golden files as of ledger entry ``ref`` (exact bytes, from the blobs)."""
        version = ledger_number(ref)
        entries = self.entries(case, case_dir)
        if not 1 <= version <= len(entries):
            raise NothingToRestore(f"{case} has no version v{version} "
                                   f"({'versions v1 … v' + str(len(entries)) if entries else 'no history yet'})")
        out: dict[str, bytes] = {}
        for filename, digest in file_state(entries[:version]).items():
            if digest is None or parse_golden_filename(filename) is None:
                continue
            data = read_blob(case_dir, digest)
            if data is None or sha256_hex(data) != digest:
                raise StoreError(f"{case}@v{version}: blob {digest} is {'missing' if data is None else 'corrupt'}; "
                                 f"run golden fsck")
            out[filename] = data
        return out

    def writer_of(self, case: str, case_dir: Path, filename: str, ref: str | None = None) -> Version | None:
        """The entry (up to version ``ref``) whose write made this file what it is; None when no entry
        wrote it or the last one to touch it removed it."""
        entries = self.entries(case, case_dir)
        for entry in reversed(entries if ref is None else entries[:ledger_number(ref)]):
            record = entry.files.get(filename)
            if record is not None:
                return Version.from_entry(entry) if record.hash is not None else None
        return None

    # ------------------------------------------------------------ writing

    def record(self, case: str, case_dir: Path, payload: dict[str, bytes | None], meta: dict[str, Any], *,
               files: list[str], expected_version: int | None = None,
               expected_files: Mapping[str, str | None] | None = None) -> Version:
        """One approval as a new ledger entry (``expected_version``: the head it was planned on, 0 = no
        history). A payload the Megatron dialect left empty (no file changes) still records the
        approval: of the files as they are."""
        if not payload:
            payload = {name: read_bytes(case_dir / name) for name in files}
        return self._write(case, case_dir, payload, meta, expected_version=expected_version)

    def rollback(self, case: str, case_dir: Path, ref: str, payload: dict[str, bytes | None],
                 current: Mapping[str, bytes | None], *, approver: str, reason: str) -> Version:
        """A new entry holding ``payload``, with the run and fingerprint of entry ``ref``."""
        number = ledger_number(ref)
        entries = self.entries(case, case_dir)
        source = entries[number - 1]
        meta = {"approver": approver, "reason": reason, "action": "rollback", "source_run_id": source.source_run_id,
                "fingerprint": source.fingerprint,
                "provenance": dict(run_provenance(source.provenance), rollback_to=number)}
        return self._write(case, case_dir, payload, meta, expected_version=entries[-1].version)

    def _write(self, case: str, case_dir: Path, payload: dict[str, bytes | None], meta: dict[str, Any], *,
               expected_version: int | None = None) -> Version:
        """Record a new version and make it current. Plain golden files found changed outside the
        store are first recorded as an "imported" version, so nothing is lost. ``expected_version``
        (0 = no history yet) raises ``VersionConflict`` if the head moved."""
        if expected_version is not None and (not isinstance(expected_version, int) or isinstance(expected_version, bool)
                                             or expected_version < 0):
            raise StoreError(f"expected_version must be a version number ≥ 0, got {expected_version!r}")
        if expected_version not in (None, 0) and not ledger_path(case_dir).exists():
            raise VersionConflict(f"{case}: expected v{expected_version} but the case has no history yet")
        with self.locked(case, case_dir):
            ledger = recover_or_refuse(case, case_dir)  # whole, its chain verified
            head = ledger.entries[-1].version if ledger.entries else 0
            if expected_version is not None and head != expected_version:
                raise VersionConflict(f"{case}: expected v{expected_version} but the ledger head is v{head} "
                                      f"(someone wrote in between)")
            entries = list(ledger.entries)
            imported = commit_untracked(case_dir, entries, approver=meta["approver"],
                                        reason=f"recorded golden files changed outside the store before "
                                               f"{meta['action']}")
            if imported is not None:
                entries.append(imported)
            return Version.from_entry(commit(case_dir, entries, payload, **meta))

    def nothing_to_adopt(self, case: str, case_dir: Path) -> str | None:
        """None when the plain files differ from the ledger head; StoreError when the history is not
        sound (read only)."""
        unrepaired = [p for p in recover(case, case_dir, repair=False) if p.severity == ERROR and not p.repaired]
        if unrepaired:
            raise StoreError(f"{case}: {unrepaired[0].message}; nothing written, run golden fsck")
        if untracked(case_dir, list(checked_ledger(case, case_dir).entries)):
            return None
        return "nothing to adopt, the golden files match their ledger head"

    def adopt(self, cases: list[tuple[str, Path]], *, approver: str, reason: str) -> list[tuple[str, Version]]:
        """Each case's plain golden files as they are (exact bytes), a new entry where they differ from
        the head (each case under its own lock)."""
        adopted = []
        for case, case_dir in cases:
            with self.locked(case, case_dir):
                entries = list(recover_or_refuse(case, case_dir).entries)
                entry = commit_untracked(case_dir, entries, approver=approver, reason=reason)
            if entry is not None:
                adopted.append((case, Version.from_entry(entry)))
        return adopted

    @contextmanager
    def locked(self, case: str, case_dir: Path) -> Iterator[None]:
        require_safe_layout(case, case_dir)  # nothing, the lock included, is made through a symlink
        history = case_dir / HISTORY_DIR
        make_folder(history)
        lock = FileLock(str(history / LOCK_FILE), timeout=self.lock_timeout)
        try:
            lock.acquire()
        except Timeout:
            raise StoreError(f"{case}: another writer holds the lock {history / LOCK_FILE} "
                             f"(waited {self.lock_timeout:g} s)") from None
        try:
            yield
        finally:
            lock.release()

    # ------------------------------------------------------------ integrity

    def fsck(self, cases: list[tuple[str, Path]], *, repair: bool) -> list[Problem]:
        """Every case's ledger lines and chain, blobs, plain files against the head; with ``repair``
        (under each case's lock, never through an unsafe path) what a crash leaves is repaired."""
        problems: list[Problem] = []
        for case, case_dir in cases:
            if not os.path.lexists(case_dir / HISTORY_DIR):
                continue
            safe = not layout_problems(case_dir)
            if repair and safe:
                with self.locked(case, case_dir):
                    problems += fsck_case(case, case_dir, repair=True)
            else:  # a shared lock: a write in progress is waited for, never reported as damage
                with shared_lock(lock_path(case_dir), self.lock_timeout) if safe else nullcontext():
                    problems += fsck_case(case, case_dir, repair=False)
        return problems
