"""The golden store: the plain Megatron files are the current goldens; their history is kept by a backend.

A store is a folder of case folders, possibly nested (a Megatron checkout's
``tests/functional_tests/test_cases/<model>/<case>/`` works as it is); a case is its folder's path
(``tree``). ``GoldenStore`` is the front door: discovery, reads, and every write — validated,
rendered in the tree's write dialect (``dialect``), then handed to the history backend:

- ``git`` (``git_history``): in a git work tree, git is the history; each golden's approval
  record is committed beside it. Versions are commits (``CASE@<commit>``).
- ``ledger`` (``ledger_history``, over ``ledger`` / ``recovery`` / ``records``): outside git,
  content-addressed blobs and a hash-chained ledger per case. Versions are ``CASE@vN``.

Both keep ``backend.HistoryBackend``: the front door never asks which one it holds.

The backend is chosen automatically — git when the store lies in a git work tree (and is not
ignored there) and holds no ledger history yet (``golden migrate`` moves one into git) — or
explicitly (``$GOLDEN_BACKEND``); ``golden fsck`` says which and why.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import GoldenError, StoreError
from ..core.megatron import Detection
from ..core.model import GoldenKey, GoldenSet
from ..files.case import check_case_path
from ..files.formats.golden import parse_golden_bytes, parse_golden_filename
from ..files.gitrepo import GitRepo
from ..files.validate import ERROR, check_golden_set, declared_metrics
from ..megatron import detect_generation
from .backend import GIT, LEDGER, HistoryBackend
from .dialect import DIALECT_ENV, MEGATRON, check_dialect, detect_dialect, render_megatron
from .git_history import GitHistory
from .identity import default_approver
from .ledger import (
    checked_filename,
    key_order,
    ledger_path,
    plain_golden_files,
    read_bytes,
    validated_meta,
    validated_payload,
)
from .ledger_history import LedgerHistory
from .records import Problem, sha256_hex
from .safety import PENDING_DIR, in_ci, pending_problems, read_regular, refuse_in_ci
from .tree import CaseTree
from .versions import NothingToRestore, Version

STORE_ENV = "GOLDEN_STORE"
BACKEND_ENV = "GOLDEN_BACKEND"
DEFAULT_STORE = "cases"


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


def golden_key(case: str, filename: str) -> GoldenKey:
    """The key of a golden file the store listed (listing keeps only golden file names)."""
    parsed = parse_golden_filename(filename)
    if parsed is None:
        raise StoreError(f"{case}: {filename!r} is not a golden_values_<env>_<platform>[_2nd].json file")
    return GoldenKey(case, *parsed)


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
        self._backend: HistoryBackend | None = None
        self.backend_why = ""
        self._dialect: tuple[str, str] | None = None
        self._generation_choice = generation
        self._generation: Detection | None = None

    # ------------------------------------------------------------ the tree, the backend, the dialect

    @property
    def tree(self) -> CaseTree:
        if self._tree is None:
            self._tree = CaseTree(self.root)
        return self._tree

    @property
    def backend(self) -> HistoryBackend:
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
            if repo is not None and (choice or (LEDGER if ledgers else GIT)) == GIT:
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
        keys = [golden_key(case, p.name) for p in plain_golden_files(self.case_dir(case))]
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
            key = golden_key(case, filename)
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

    def read_version(self, case: str, ref: str | int,
                     keys: list[GoldenKey] | None = None) -> dict[GoldenKey, GoldenSet]:
        """The case's goldens as of ``ref`` (``vN`` in a ledger store, a revision in git); with ``keys``
        only those are parsed, so an unreadable neighbour does not matter."""
        case = self.resolve(case)
        ref = f"v{ref}" if isinstance(ref, int) else ref
        wanted = None if keys is None else {k.filename() for k in keys}
        out = {}
        for filename, data in self.version_bytes(case, ref).items():
            if wanted is not None and filename not in wanted:
                continue
            key = golden_key(case, filename)
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

    def _rendered(self, case: str, case_dir: Path,
                  goldens: dict[GoldenKey, GoldenSet | None]) -> dict[str, bytes | None]:
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
        return self.backend.record(case, case_dir, payload, meta, files=[k.filename() for k in goldens],
                                   expected_version=expected_version, expected_files=expected_files)

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
        meta = validated_meta(approver=approver, reason=reason, action="rollback", source_run_id=None,
                              fingerprint=None, provenance=None)
        return self.backend.rollback(case, case_dir, ref, payload, current, approver=meta["approver"],
                                     reason=meta["reason"])

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
        todo: list[tuple[str, Path]] = []
        for case in targets:
            case_dir = self.case_dir(case)
            why = (self.backend.nothing_to_adopt(case, case_dir) if plain_golden_files(case_dir)
                   else f"no golden_values_<env>_<platform>.json file to adopt in {case_dir}")
            if why is None:
                todo.append((case, case_dir))
                continue
            if not skip_empty:
                raise StoreError(f"{case}: {why}")
            skipped.append((case, why))
        adopted = self.backend.adopt(todo, approver=approver, reason=reason)
        return AdoptReport(tuple(adopted), tuple(skipped))

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
