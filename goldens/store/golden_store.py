"""The golden store: the plain Megatron files are the current goldens; beside them, their history.

A store is a folder of case folders, possibly nested (a Megatron checkout's
``tests/functional_tests/test_cases/<model>/<case>/`` works as it is). Versions are per case:
``CASE@v3`` is the case's goldens as of ledger entry 3, and one entry may cover several files (a
resume case's file pair). The layout and the write protocol are in ``ledger``; recovery and the
integrity check in ``recovery``; what is recorded in ``records``.
"""
from __future__ import annotations

import difflib
import os
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..case import CASE_FILE, check_name
from ..errors import StoreError
from ..formats import parse_golden_bytes, parse_golden_filename
from ..identity import default_approver
from ..model import GoldenKey, GoldenSet
from ..validate import MEGATRON_CASE_FILE, is_golden_name
from .ledger import (HISTORY_DIR, LOCK_FILE, LedgerEntry, blob_path, checked_filename, checked_ledger,
                     commit, commit_untracked, file_state, key_order, layout_problems, ledger_path, lock_path,
                     plain_golden_files, read_blob, read_bytes, require_safe_layout, validated_meta, validated_payload)
from .records import Problem, sha256_hex
from .recovery import fsck_case, recover_or_refuse
from .safety import PENDING_DIR, in_ci, make_folder, pending_problems, refuse_in_ci, shared_lock, version_number

STORE_ENV = "GOLDEN_STORE"
DEFAULT_STORE = "cases"


class VersionConflict(StoreError):
    """The ledger head moved since the caller read it (optimistic concurrency)."""


def default_store_root() -> Path:
    """``$GOLDEN_STORE``, else ``cases/`` under the current folder, else the repository's ``cases/``."""
    env = os.environ.get(STORE_ENV)
    if env:
        return Path(env)
    here = Path.cwd() / DEFAULT_STORE
    repo = Path(__file__).resolve().parents[2] / DEFAULT_STORE
    return here if here.is_dir() or not repo.is_dir() else repo


def parse_case_ref(ref: str) -> tuple[str, int | None]:
    """``CASE`` or ``CASE@vN`` (also ``CASE@N``) → (case, N or None)."""
    case, sep, version = ref.partition("@")
    if not sep:
        return check_name(case), None
    number = version_number(version)
    if number is None:
        raise StoreError(f"invalid version {version!r} in {ref!r}: use CASE@vN with N ≥ 1 (ASCII digits)")
    return check_name(case), number


# ---------------------------------------------------------------- the store

class GoldenStore:
    """Cases, their current goldens (plain files) and their versioned history."""

    def __init__(self, root: str | Path | None = None, *, lock_timeout: float = 30.0):
        self.root = Path(root) if root is not None else default_store_root()
        self.lock_timeout = lock_timeout
        self._index: dict[str, Path] | None = None

    # ------------------------------------------------------------ discovery

    def _case_index(self) -> dict[str, Path]:
        if self._index is None:
            if not self.root.is_dir():
                raise StoreError(f"no golden store at {self.root} (set --store or ${STORE_ENV})")
            index: dict[str, Path] = {}
            for top, dirs, files in os.walk(self.root):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
                here = Path(top)
                if here == self.root or not _is_case_folder(files):
                    continue
                dirs[:] = []  # a case folder holds no cases
                if here.name in index:
                    raise StoreError(f"two cases named {here.name!r}: {index[here.name]} and {here}; "
                                     f"case names must be unique in a store")
                index[here.name] = here
            self._index = index
        return self._index

    def cases(self) -> list[str]:
        """Addressable case names (a folder whose name ``check_name`` refuses is reported by fsck)."""
        return sorted(name for name in self._case_index() if _addressable(name))

    def case_dir(self, case: str) -> Path:
        check_name(case)
        index = self._case_index()
        if case not in index:
            close = difflib.get_close_matches(case, list(index), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise StoreError(f"unknown case {case!r} in store {self.root} ({len(index)} cases){hint}")
        return index[case]

    def keys(self, case: str) -> list[GoldenKey]:
        """The current golden files of a case (plain files whose names the store can address)."""
        keys = [GoldenKey(case, *parse_golden_filename(p.name)) for p in plain_golden_files(self.case_dir(case))]
        return sorted(keys, key=key_order)

    def read(self, key: GoldenKey) -> GoldenSet:
        """The current golden: the plain Megatron file."""
        path = self.case_dir(key.case) / checked_filename(key)
        data = read_bytes(path)
        if data is None:
            have = ", ".join(k.filename() for k in self.keys(key.case)) or "none"
            raise StoreError(f"case {key.case!r} has no {key.filename()} (has: {have})")
        golden = parse_golden_bytes(data, path)
        return GoldenSet(golden.metrics, golden.scalars, key=key, source=str(path))

    # ------------------------------------------------------------ history (read-only)

    def history(self, case: str) -> list[LedgerEntry]:
        return list(checked_ledger(case, self.case_dir(case)).entries)

    def current_entry(self, case: str) -> LedgerEntry | None:
        entries = self.history(case)
        return entries[-1] if entries else None

    def read_version(self, case: str, version: int) -> dict[GoldenKey, GoldenSet]:
        """The case's goldens as of ledger entry ``version``, from the content-addressed blobs."""
        case_dir = self.case_dir(case)
        entries = self.history(case)
        if not 1 <= version <= len(entries):
            raise StoreError(f"{case} has no version v{version} "
                             f"({'versions v1 … v' + str(len(entries)) if entries else 'no history yet'})")
        out: dict[GoldenKey, GoldenSet] = {}
        for filename, digest in file_state(entries[:version]).items():
            parsed = parse_golden_filename(filename)
            if digest is None or parsed is None:
                continue
            key = GoldenKey(case, *parsed)
            blob = blob_path(case_dir, digest)
            data = read_blob(case_dir, digest)
            if data is None or sha256_hex(data) != digest:
                raise StoreError(f"{case}@v{version}: blob {blob.name} is {'missing' if data is None else 'corrupt'}; "
                                 f"run golden fsck")
            golden = parse_golden_bytes(data, f"{case}@v{version}/{filename}")
            out[key] = GoldenSet(golden.metrics, golden.scalars, key=key, source=str(blob))
        return {key: out[key] for key in sorted(out, key=key_order)}

    def writer_of(self, key: GoldenKey, *, upto: int | None = None) -> LedgerEntry | None:
        """The ledger entry (up to version ``upto``) whose write made this file what it is; None
        when no entry wrote it or the last one to touch it removed it."""
        filename = checked_filename(key)
        entries = self.history(key.case)
        for entry in reversed(entries if upto is None else entries[:upto]):
            record = entry.files.get(filename)
            if record is not None:
                return entry if record.hash is not None else None
        return None

    def fingerprint_of(self, key: GoldenKey) -> str | None:
        """The fingerprint recorded with the version that last wrote this file (None if none did)."""
        entry = self.writer_of(key)
        return entry.fingerprint if entry is not None else None

    # ------------------------------------------------------------ writing

    def write(self, case: str, goldens: Mapping[GoldenKey, GoldenSet | None], *, approver: str, reason: str,
              source_run_id: str | None = None, fingerprint: str | None = None,
              provenance: dict[str, Any] | None = None, expected_version: int | None = None,
              action: str = "approve") -> LedgerEntry:
        """Record a new version of ``case`` and make it current; a value of ``None`` removes that file.

        Everything is validated before anything is written. Plain golden files found changed
        outside the store are first recorded as an "imported" version, so nothing is lost.
        ``expected_version`` (0 = no history yet) raises ``VersionConflict`` if the head moved.
        """
        case_dir = self.case_dir(case)
        payload = validated_payload(case, case_dir, goldens)
        meta = validated_meta(approver=approver, reason=reason, action=action, source_run_id=source_run_id,
                               fingerprint=fingerprint, provenance=provenance)
        if expected_version is not None and (not isinstance(expected_version, int) or isinstance(expected_version, bool)
                                             or expected_version < 0):
            raise StoreError(f"expected_version must be a version number ≥ 0, got {expected_version!r}")
        if expected_version not in (None, 0) and not ledger_path(case_dir).exists():
            raise VersionConflict(f"{case}: expected v{expected_version} but the case has no history yet")
        with self._locked(case, case_dir):
            ledger = recover_or_refuse(case, case_dir)
            head = ledger.entries[-1].version if ledger.entries else 0
            if expected_version is not None and head != expected_version:
                raise VersionConflict(f"{case}: expected v{expected_version} but the ledger head is v{head} "
                                      f"(someone wrote in between)")
            entries = list(ledger.entries)
            imported = commit_untracked(case_dir, entries, approver=meta["approver"],
                                         reason=f"recorded golden files changed outside the store before {action}")
            if imported is not None:
                entries.append(imported)
            return commit(case_dir, entries, payload, **meta)

    def adopt(self, case: str, *, approver: str | None = None, reason: str = "imported existing golden files",
              ci: bool | None = None, allow_ci: bool = False) -> LedgerEntry:
        """Record the plain golden files as they are (exact bytes) without changing them.

        Version 1 ("imported") for a case without history; later, a new version for files changed
        outside the store. ``StoreError`` when there is nothing to record, and in CI (``CI`` set).
        """
        refuse_in_ci("adopt", ci, allow_ci)
        case_dir = self.case_dir(case)
        approver = approver or default_approver(self.root)
        if not plain_golden_files(case_dir):
            raise StoreError(f"{case}: no golden_values_<env>_<platform>.json file to adopt in {case_dir}")
        with self._locked(case, case_dir):
            entries = list(recover_or_refuse(case, case_dir).entries)
            entry = commit_untracked(case_dir, entries, approver=approver, reason=reason)
        if entry is None:
            raise StoreError(f"{case}: nothing to adopt, the golden files match v{entries[-1].version}")
        return entry

    @contextmanager
    def _locked(self, case: str, case_dir: Path) -> Iterator[None]:
        from filelock import FileLock, Timeout

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

    def fsck(self, repair: bool = True, cases: list[str] | None = None) -> list[Problem]:
        """Check every case's history: store paths, ledger lines and chain, blobs, plain files
        against the head (and, for the whole store, the staged candidates' folder).

        With ``repair`` (under each case's lock; never in CI, never through an unsafe path): drop a
        torn trailing ledger line, finish an interrupted write, delete what an interrupted write
        provably left, quarantine what nothing accounts for. What cannot be repaired is reported
        (``repaired=False``). Without it, the check holds a shared lock: a write in progress is
        waited for, never reported.
        """
        repair = repair and not in_ci()
        problems: list[Problem] = []
        if cases is None:
            problems += self._unaddressable_folders()
            problems += [Problem(PENDING_DIR, "unsafe-path", f"{path.relative_to(self.root)} {why}", path=str(path))
                         for path, why in pending_problems(self.root)]
        for case in (self.cases() if cases is None else cases):
            case_dir = self.case_dir(case)
            if not os.path.lexists(case_dir / HISTORY_DIR):
                continue
            safe = not layout_problems(case_dir)
            if repair and safe:
                with self._locked(case, case_dir):
                    problems += fsck_case(case, case_dir, repair=True)
            else:
                with shared_lock(lock_path(case_dir), self.lock_timeout) if safe else nullcontext():
                    problems += fsck_case(case, case_dir, repair=False)
        return problems

    def _unaddressable_folders(self) -> list[Problem]:
        return [Problem(name, "bad-case-name", f"case folder {path} cannot be addressed: its name is not a valid "
                                               f"case name (letters, digits, '_', '-', '.')",
                        severity="warning", path=str(path))
                for name, path in sorted(self._case_index().items()) if not _addressable(name)]



def _addressable(name: str) -> bool:
    try:
        check_name(name)
    except StoreError:
        return False
    return True


def _is_case_folder(files: list[str]) -> bool:
    return any(f in (CASE_FILE, MEGATRON_CASE_FILE) or is_golden_name(f) for f in files)

