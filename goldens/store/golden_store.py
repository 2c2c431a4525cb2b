"""The golden store: the plain Megatron files are the current goldens; their history is kept by a backend.

A store is a folder of case folders, possibly nested (a Megatron checkout's
``tests/functional_tests/test_cases/<model>/<case>/`` works as it is); a case is its folder's path
(``tree``). ``GoldenStore`` is the front door: discovery, reads, and every write — validated,
rendered in the tree's write dialect (``dialect``), then handed to the history backend:

- ``git`` (``git_history``): in a git work tree, git is the history; each golden's approval
  record is committed beside it. Versions are commits (``CASE@<commit>``).
- ``ledger`` (``LedgerHistory`` below, over ``ledger`` / ``recovery`` / ``records``): outside git,
  content-addressed blobs and a hash-chained ledger per case. Versions are ``CASE@vN``.

The backend is chosen automatically — git when the store lies in a git work tree (and is not
ignored there) and holds no ledger history yet (``golden migrate`` moves one into git) — or
explicitly (``$GOLDEN_BACKEND``); ``golden fsck`` says which and why.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import GoldenError, StoreError
from ..core.model import GoldenKey, GoldenSet
from ..files.case import check_case_path
from ..files.formats.golden import parse_golden_bytes, parse_golden_filename
from ..files.gitrepo import GitRepo
from ..files.validate import ERROR, check_golden_set, declared_metrics
from .dialect import DIALECT_ENV, MEGATRON, check_dialect, detect_dialect, render_megatron
from .git_history import CaseWrite, GitHistory
from .identity import default_approver
from .ledger import (
    HISTORY_DIR,
    IMPORTED,
    LOCK_FILE,
    LedgerEntry,
    checked_filename,
    checked_ledger,
    commit,
    commit_untracked,
    file_state,
    key_order,
    layout_problems,
    ledger_path,
    lock_path,
    plain_golden_files,
    read_blob,
    read_bytes,
    require_safe_layout,
    untracked,
    validated_meta,
    validated_payload,
)
from .records import Problem, now_iso, sha256_hex
from .recovery import fsck_case, recover, recover_or_refuse
from .safety import (
    PENDING_DIR,
    in_ci,
    make_folder,
    pending_problems,
    read_regular,
    refuse_in_ci,
    shared_lock,
    version_number,
)
from .tree import CaseTree
from .versions import Version, VersionConflict

if TYPE_CHECKING:
    from ..core.megatron import Detection

STORE_ENV = "GOLDEN_STORE"
BACKEND_ENV = "GOLDEN_BACKEND"
DEFAULT_STORE = "cases"
LEDGER, GIT = "ledger", "git"


class NothingToRestore(StoreError):
    """A rollback whose target the golden files already hold (or a version that does not exist)."""


def default_store_root() -> Path:
    """``$GOLDEN_STORE``, else ``cases/`` under the current folder, else the repository's ``cases/``."""
    env = os.environ.get(STORE_ENV)
    if env:
        return Path(env)
    here = Path.cwd() / DEFAULT_STORE
    repo = Path(__file__).resolve().parents[2] / DEFAULT_STORE
    return here if here.is_dir() or not repo.is_dir() else repo


def parse_case_ref(ref: str) -> tuple[str, str | None]:
    """``CASE`` or ``CASE@REF`` → (case, REF or None). REF is ``vN`` in a ledger store, a git revision
    (``a1b2c3d``, ``HEAD~1``) in a git store; the backend interprets it."""
    case, sep, version = ref.partition("@")
    check_case_path(case)
    if not sep:
        return case, None
    if not version or len(version) > 200 or not version.isprintable() or version.startswith("-"):
        raise StoreError(f"invalid version {version!r} in {ref!r}: use CASE@vN (ledger) or CASE@<commit> (git)")
    return case, version


def ledger_number(ref: str) -> int:
    """``v3`` / ``3`` → 3 (a ledger store's versions; ASCII digits only, bounded)."""
    number = version_number(ref)
    if number is None:
        raise StoreError(f"invalid version {ref[:40]!r}: this store's history is a ledger, "
                         f"use CASE@vN with N ≥ 1 (ASCII digits)")
    return number


def run_provenance(provenance: dict[str, Any] | None) -> dict[str, Any]:
    """A version's run provenance (fingerprint fields, model args) without what that approval picked."""
    return {k: v for k, v in (provenance or {}).items() if k not in ("selection", "rollback_to")}


# ---------------------------------------------------------------- the ledger backend

class LedgerHistory:
    """History outside git: per case, content-addressed blobs and a hash-chained ledger
    (``ledger``, ``recovery``); ``CASE@vN`` is the case as of ledger entry N."""

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

    def write(self, case: str, case_dir: Path, payload: dict[str, bytes | None], meta: dict[str, Any], *,
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
                                         reason=f"recorded golden files changed outside the store before {meta['action']}")
            if imported is not None:
                entries.append(imported)
            return Version.from_entry(commit(case_dir, entries, payload, **meta))

    def adopt(self, case: str, case_dir: Path, *, approver: str, reason: str) -> Version | None:
        """Record the plain golden files as they are (exact bytes); None when they match the head."""
        with self.locked(case, case_dir):
            entries = list(recover_or_refuse(case, case_dir).entries)
            entry = commit_untracked(case_dir, entries, approver=approver, reason=reason)
        return None if entry is None else Version.from_entry(entry)

    def preflight_adopt(self, case: str, case_dir: Path) -> bool:
        """Whether adopting would record anything; StoreError when the history is not sound (read only)."""
        unrepaired = [p for p in recover(case, case_dir, repair=False) if p.severity == ERROR and not p.repaired]
        if unrepaired:
            raise StoreError(f"{case}: {unrepaired[0].message}; nothing written, run golden fsck")
        return bool(untracked(case_dir, list(checked_ledger(case, case_dir).entries)))

    @contextmanager
    def locked(self, case: str, case_dir: Path) -> Iterator[None]:
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


# ---------------------------------------------------------------- the store

@dataclass(frozen=True)
class AdoptReport:
    """What ``adopt_all`` recorded, and the cases it left as they were (with why)."""

    adopted: tuple[tuple[str, Version], ...]
    skipped: tuple[tuple[str, str], ...]


class GoldenStore:
    """Cases, their current goldens (plain files) and their versioned history."""

    def __init__(self, root: str | Path | None = None, *, lock_timeout: float = 30.0,
                 backend: str | None = None, dialect: str | None = None, generation: str | None = None):
        self.root = Path(root) if root is not None else default_store_root()
        self.lock_timeout = lock_timeout
        self._backend_choice = backend
        self._dialect_choice = dialect
        self._tree: CaseTree | None = None
        self._backend: Any = None
        self.backend_why = ""
        self._dialect: tuple[str, str] | None = None
        self._generation_choice = generation
        self._generation: Any = None

    # ------------------------------------------------------------ the tree, the backend, the dialect

    @property
    def tree(self) -> CaseTree:
        if self._tree is None:
            self._tree = CaseTree(self.root)
        return self._tree

    @property
    def backend(self) -> LedgerHistory | Any:
        """The history backend (``LedgerHistory`` or ``GitHistory``), chosen once."""
        if self._backend is None:
            choice = self._backend_choice or os.environ.get(BACKEND_ENV) or None
            tree = self.tree
            repo = GitRepo.find(self.root) if choice != LEDGER else None
            if choice not in (None, LEDGER, GIT):
                raise StoreError(f"unknown store backend {choice!r}: use {LEDGER} or {GIT}")
            if choice == GIT and repo is None:
                raise StoreError(f"the git backend needs a git work tree that tracks {self.root}")
            ledgers = sum(ledger_path(c.folder).exists() for c in tree.cases.values())
            if choice is not None:
                self.backend_why = f"chosen explicitly (${BACKEND_ENV} or the caller)"
            elif repo is None:
                self.backend_why = "not inside a git work tree"
            elif ledgers:
                self.backend_why = (f"inside a git work tree, but {ledgers} cases hold a ledger history: "
                                    f"`golden migrate` moves it into git")
            else:
                self.backend_why = f"inside the git work tree {repo.top}"
            if (choice or (GIT if repo is not None and not ledgers else LEDGER)) == GIT:
                self._backend = GitHistory(self.root, repo, lock_timeout=self.lock_timeout)
            else:
                self._backend = LedgerHistory(self.root, lock_timeout=self.lock_timeout)
        return self._backend

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def dialect(self) -> str:
        """How goldens are written into this tree (``full`` or ``megatron``)."""
        return self._dialect_info()[0]

    def _dialect_info(self) -> tuple[str, str]:
        if self._dialect is None:
            choice = self._dialect_choice or os.environ.get(DIALECT_ENV) or None
            if choice is not None:
                self._dialect = (check_dialect(choice), "set explicitly (--dialect or $GOLDEN_DIALECT)")
            else:
                self._dialect = detect_dialect([c.definition for c in self.tree.cases.values()])
        return self._dialect

    @property
    def megatron_generation(self) -> Detection:
        """Which generation of Megatron's conventions this tree follows, and why (``goldens.megatron``):
        the megatron preset judges and the Megatron dialect writes by its row."""
        if self._generation is None:
            from ..megatron import detect_generation

            self._generation = detect_generation(self.root, self._generation_choice)
        return self._generation

    def describe(self) -> dict[str, str]:
        """Which backend, dialect and Megatron generation the store uses, and why (fsck, validate and
        approve show it)."""
        backend = self.backend_name
        dialect, why = self._dialect_info()
        info = {"root": str(self.root), "backend": backend, "backend_why": self.backend_why,
                "dialect": dialect, "dialect_why": why}
        if dialect == MEGATRON:
            detection = self.megatron_generation
            info.update(generation=detection.generation.name, generation_why=detection.why,
                        generation_warning=detection.warning or "")
        return info

    # ------------------------------------------------------------ discovery

    def cases(self) -> list[str]:
        """Every case, by its path under the store."""
        return self.tree.paths()

    def resolve(self, case: str) -> str:
        """A case path, or a bare name that names one case, → the case's path."""
        return self.tree.resolve(case)

    def case_dir(self, case: str) -> Path:
        return self.tree.cases[self.resolve(case)].folder

    def case_for_folder(self, folder: Path) -> str | None:
        return self.tree.case_for_folder(folder)

    def findings(self) -> list[Problem]:
        """Duplicates, orphan folders, cases without goldens, legacy names, unusable folder names."""
        return self.tree.findings()

    def keys(self, case: str) -> list[GoldenKey]:
        """The current golden files of a case (plain files whose names the store can address)."""
        case = self.resolve(case)
        keys = [GoldenKey(case, *parse_golden_filename(p.name)) for p in plain_golden_files(self.case_dir(case))]
        return sorted(keys, key=key_order)

    def read(self, key: GoldenKey) -> GoldenSet:
        """The current golden: the plain Megatron file."""
        case = self.resolve(key.case)
        path = self.case_dir(case) / checked_filename(key)
        data = read_bytes(path)
        if data is None:
            have = ", ".join(k.filename() for k in self.keys(case)) or "none"
            raise StoreError(f"case {case!r} has no {key.filename()} (has: {have})")
        golden = parse_golden_bytes(data, path)
        key = GoldenKey(case, key.env, key.platform, key.phase)
        return GoldenSet(golden.metrics, golden.scalars, key=key, source=str(path))

    def goldens(self, case: str, ref: str | None = None) -> dict[GoldenKey, GoldenSet | GoldenError]:
        """Every golden file of a case (current, or at ``ref``), each parsed or the error that says why
        not: one unreadable file (``{}``, empty) never hides the others."""
        case = self.resolve(case)
        out: dict[GoldenKey, GoldenSet | GoldenError] = {}
        if ref is None:
            for key in self.keys(case):
                try:
                    out[key] = self.read(key)
                except GoldenError as exc:
                    out[key] = exc
            return out
        for filename, data in self.version_bytes(case, ref).items():
            key = GoldenKey(case, *parse_golden_filename(filename))
            try:
                golden = parse_golden_bytes(data, f"{case}@{ref}/{filename}")
                out[key] = GoldenSet(golden.metrics, golden.scalars, key=key, source=f"{case}@{ref}/{filename}")
            except GoldenError as exc:
                out[key] = exc
        return {k: out[k] for k in sorted(out, key=key_order)}

    # ------------------------------------------------------------ history (read-only)

    def history(self, case: str) -> list[Version]:
        case = self.resolve(case)
        return self.backend.history(case, self.case_dir(case))

    def current_entry(self, case: str) -> Version | None:
        versions = self.history(case)
        return versions[-1] if versions else None

    def version_bytes(self, case: str, ref: str) -> dict[str, bytes]:
        case = self.resolve(case)
        return self.backend.version_bytes(case, self.case_dir(case), str(ref))

    def read_version(self, case: str, ref: str | int, keys: list[GoldenKey] | None = None) -> dict[GoldenKey, GoldenSet]:
        """The case's goldens as of ``ref`` (``vN`` in a ledger store, a revision in git); with ``keys``
        only those are parsed, so an unreadable neighbour does not matter."""
        case = self.resolve(case)
        ref = f"v{ref}" if isinstance(ref, int) else ref
        wanted = None if keys is None else {k.filename() for k in keys}
        out = {}
        for filename, data in self.version_bytes(case, ref).items():
            if wanted is not None and filename not in wanted:
                continue
            key = GoldenKey(case, *parse_golden_filename(filename))
            golden = parse_golden_bytes(data, f"{case}@{ref}/{filename}")
            out[key] = GoldenSet(golden.metrics, golden.scalars, key=key, source=f"{case}@{ref}/{filename}")
        return {key: out[key] for key in sorted(out, key=key_order)}

    def writer_of(self, key: GoldenKey, *, upto: str | int | None = None) -> Version | None:
        """The version whose write made this file what it is (now, or as of ``upto``)."""
        case = self.resolve(key.case)
        ref = f"v{upto}" if isinstance(upto, int) else upto
        return self.backend.writer_of(case, self.case_dir(case), checked_filename(key), ref)

    def fingerprint_of(self, key: GoldenKey) -> str | None:
        """The fingerprint recorded with the version that last wrote this file (None if none did)."""
        version = self.writer_of(key)
        return version.fingerprint if version is not None else None

    def file_hashes(self, case: str, filenames: list[str]) -> dict[str, str | None]:
        """sha256 of each named golden file as it is now (None: absent): what a candidate is staged against."""
        case_dir = self.case_dir(case)
        out = {}
        for name in filenames:
            data = read_regular(case_dir / name)
            out[name] = None if data is None else sha256_hex(data)
        return out

    # ------------------------------------------------------------ writing

    def _own_keys(self, case: str, goldens: Mapping[GoldenKey, GoldenSet | None]) -> dict[GoldenKey, GoldenSet | None]:
        if not isinstance(goldens, Mapping) or not goldens:
            raise StoreError(f"{case}: nothing to write (no goldens given)")
        out = {}
        for key, golden in goldens.items():
            if not isinstance(key, GoldenKey):
                raise StoreError(f"{case}: golden keys must be GoldenKey, got {type(key).__name__}")
            try:
                same = self.resolve(key.case) == case
            except StoreError:
                same = False
            if not same:
                raise StoreError(f"refusing to write a golden of case {key.case!r} into case {case!r}")
            out[GoldenKey(case, key.env, key.platform, key.phase)] = golden
        return out

    def _rendered(self, case: str, case_dir: Path, goldens: dict[GoldenKey, GoldenSet | None]) -> dict[str, bytes | None]:
        """filename → the bytes to write (None: remove), every check done first. In the Megatron
        dialect a file whose content would not change is left out."""
        payload = validated_payload(case, case_dir, goldens)  # refuses what no golden may hold
        if self.dialect != MEGATRON:
            return payload
        known = declared_metrics(case_dir)
        out: dict[str, bytes | None] = {}
        for key, golden in goldens.items():
            filename = key.filename()
            if golden is None:
                out[filename] = None
                continue
            data = render_megatron(golden, read_regular(case_dir / filename), self.megatron_generation.generation)
            if data is None:
                continue
            errors = [f for f in check_golden_set(parse_golden_bytes(data, filename), known_metrics=known)
                      if f.severity == ERROR]
            if errors:
                raise StoreError(f"refusing to write {case}/{filename} as Megatron writes it: {errors[0].message}")
            out[filename] = data
        return out

    def write(self, case: str, goldens: Mapping[GoldenKey, GoldenSet | None], *, approver: str, reason: str,
              source_run_id: str | None = None, fingerprint: str | None = None,
              provenance: dict[str, Any] | None = None, expected_version: int | None = None,
              expected_files: Mapping[str, str | None] | None = None, action: str = "approve",
              ci: bool | None = None, allow_ci: bool = False) -> Version:
        """Write a new version of ``case`` and make it current; a value of ``None`` removes that file.

        Everything is validated and rendered (in the store's dialect) before anything is written.
        Optimistic concurrency, each backend its own: ``expected_version`` (ledger: the head it was
        planned on, 0 = no history) and ``expected_files`` (git: file → sha256 it was planned on)
        raise ``VersionConflict`` when someone wrote in between.
        """
        case = self.resolve(case)
        case_dir = self.case_dir(case)
        goldens = self._own_keys(case, goldens)
        payload = self._rendered(case, case_dir, goldens)
        meta = validated_meta(approver=approver, reason=reason, action=action, source_run_id=source_run_id,
                              fingerprint=fingerprint, provenance=provenance)
        refuse_in_ci(action, ci, allow_ci)
        if self.backend_name == LEDGER:
            if not payload:  # the Megatron dialect left every file as it is: record the approval anyway
                payload = {k.filename(): read_bytes(case_dir / k.filename()) for k in goldens}
            return self.backend.write(case, case_dir, payload, meta, expected_version=expected_version)
        stamped = dict(meta, time=now_iso())  # one approval: one time for all its files
        records = {k.filename(): stamped for k in goldens}
        (done,) = self.backend.apply([CaseWrite(case, case_dir, payload, records,
                                                None if expected_files is None else dict(expected_files))])
        return done.versions[0]

    def restore(self, case: str, ref: str, *, approver: str, reason: str, ci: bool | None = None,
                allow_ci: bool = False) -> Version:
        """Make the case's golden files hold exactly the bytes they held at ``ref`` (history is never
        rewritten: this is a new version, action "rollback"). Files already holding those bytes are
        not touched; files ``ref`` did not have are removed."""
        refuse_in_ci("rollback", ci, allow_ci)
        case = self.resolve(case)
        case_dir = self.case_dir(case)
        target = self.version_bytes(case, ref)
        current = {p.name: read_bytes(p) for p in plain_golden_files(case_dir)}
        payload: dict[str, bytes | None] = {n: d for n, d in target.items() if current.get(n) != d}
        payload.update({n: None for n in current if n not in target})
        if not payload:
            raise NothingToRestore(f"{case}: the golden files already hold the content of {ref}")
        known = declared_metrics(case_dir)
        for filename, data in payload.items():
            if data is None:
                continue
            errors = [f for f in check_golden_set(parse_golden_bytes(data, f"{case}@{ref}/{filename}"),
                                                  known_metrics=known) if f.severity == ERROR]
            if errors:
                raise StoreError(f"{case}@{ref}/{filename} cannot be restored: {errors[0].message}")
        approver, reason = (validated_meta(approver=approver, reason=reason, action="rollback", source_run_id=None,
                                           fingerprint=None, provenance=None)[k] for k in ("approver", "reason"))
        if self.backend_name == LEDGER:
            number = ledger_number(ref)
            entries = self.backend.entries(case, case_dir)
            source = entries[number - 1]
            meta = dict(approver=approver, reason=reason, action="rollback", source_run_id=source.source_run_id,
                        fingerprint=source.fingerprint,
                        provenance=dict(run_provenance(source.provenance), rollback_to=number))
            return self.backend.write(case, case_dir, payload, meta, expected_version=entries[-1].version)
        commit_of = self.backend.resolve(ref)
        records, time = {}, now_iso()
        for filename in payload:
            writer = self.backend.writer_of(case, case_dir, filename, ref) if payload[filename] is not None else None
            records[filename] = dict(
                approver=approver, reason=reason, action="rollback", time=time,
                source_run_id=writer.source_run_id if writer else None,
                fingerprint=writer.fingerprint if writer else None,
                provenance=dict(run_provenance(writer.provenance if writer else None), rollback_to=commit_of))
        expected = {n: (None if n not in current else sha256_hex(current[n])) for n in payload}
        (done,) = self.backend.apply([CaseWrite(case, case_dir, payload, records, expected)])
        return done.versions[0]

    def adopt(self, case: str, *, approver: str | None = None, reason: str = "imported existing golden files",
              ci: bool | None = None, allow_ci: bool = False) -> Version:
        """Record the plain golden files as they are (exact bytes) without changing them.

        Ledger: version 1 ("imported") for a case without history; later, a new version for files
        changed outside the store. Git: an approval record ("imported") for each golden file no
        record describes. ``StoreError`` when there is nothing to record, and in CI (``CI`` set).
        """
        report = self.adopt_all([case], approver=approver, reason=reason, skip_empty=False, ci=ci, allow_ci=allow_ci)
        return report.adopted[0][1]

    def adopt_all(self, cases: list[str] | None = None, *, approver: str | None = None,
                  reason: str = "imported existing golden files", skip_empty: bool = True,
                  ci: bool | None = None, allow_ci: bool = False) -> AdoptReport:
        """Adopt many cases, all or nothing: every case is checked before anything is written, and a
        case that cannot be adopted refuses the whole call. With ``skip_empty`` (``adopt --all``) a
        case without golden files, or with nothing new to record, is skipped and reported instead."""
        refuse_in_ci("adopt", ci, allow_ci)
        approver = approver or default_approver(self.root)
        targets = [self.resolve(c) for c in (self.cases() if cases is None else cases)]
        skipped: list[tuple[str, str]] = []
        todo: list[str] = []
        git = self.backend_name == GIT
        for case in targets:
            case_dir = self.case_dir(case)
            if not plain_golden_files(case_dir):
                why = f"no golden_values_<env>_<platform>.json file to adopt in {case_dir}"
                if not skip_empty:
                    raise StoreError(f"{case}: {why}")
                skipped.append((case, why))
                continue
            if (self._unrecorded(case, case_dir) if git else self.backend.preflight_adopt(case, case_dir)):
                todo.append(case)
                continue
            why = "nothing to adopt, the golden files match their " + ("approval records" if git else "ledger head")
            if not skip_empty:
                raise StoreError(f"{case}: {why}")
            skipped.append((case, why))
        if not git:
            adopted = []
            for case in todo:
                version = self.backend.adopt(case, self.case_dir(case), approver=approver, reason=reason)
                if version is not None:
                    adopted.append((case, version))
            return AdoptReport(tuple(adopted), tuple(skipped))
        meta = dict(approver=approver, reason=reason, action=IMPORTED, time=now_iso(), source_run_id=None,
                    fingerprint=None, provenance=None, summary=None)
        writes = [CaseWrite(case, self.case_dir(case), {}, dict.fromkeys(self._unrecorded(case, self.case_dir(case)), meta))
                  for case in todo]
        self.backend.apply(writes)
        return AdoptReport(tuple((w.case, w.versions[0]) for w in writes), tuple(skipped))

    def _unrecorded(self, case: str, case_dir: Path) -> list[str]:
        """Golden files (git store) that no approval record describes as they are."""
        out = []
        for path in plain_golden_files(case_dir):
            record = self.backend.worktree_record(case_dir, path.name)
            if record is None or record.hash != sha256_hex(read_bytes(path) or b""):
                out.append(path.name)
        return out

    # ------------------------------------------------------------ integrity

    def fsck(self, repair: bool = True, cases: list[str] | None = None) -> list[Problem]:
        """Check every case's history (ledger: lines, chain, blobs, plain files against the head; git:
        the journal, temp files, approval records against their goldens).

        With ``repair`` (under the lock; never in CI, never through a symlink) what a crash leaves is
        repaired; what cannot be is reported (``repaired=False``), and what nothing accounts for is
        quarantined, never deleted. A whole-store check also reports case folders no case path can
        name and anything unsafe in the staged candidates' folder.
        """
        repair = repair and not in_ci()  # CI never writes: fsck reports what it would repair
        problems: list[Problem] = []
        if cases is None:
            problems += [p for p in self.findings() if p.kind == "bad-case-name"]
            problems += [Problem(PENDING_DIR, "unsafe-path", f"{path.relative_to(self.root)} {why}", path=str(path))
                         for path, why in pending_problems(self.root)]
        targets = self.cases() if cases is None else [self.resolve(c) for c in cases]
        return problems + self.backend.fsck([(c, self.case_dir(c)) for c in targets], repair=repair)
