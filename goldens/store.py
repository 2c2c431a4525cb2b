"""The golden store: the plain Megatron files are the current goldens; beside them, their history.

A store is a folder of case folders, possibly nested (a Megatron checkout's
``tests/functional_tests/test_cases/<model>/<case>/`` works as it is). A case folder holds::

    golden_values_<env>_<platform>[_2nd].json   the current goldens, exactly what Megatron reads
    .golden/objects/<sha256>.json               every version's exact bytes, content-addressed
    .golden/ledger.jsonl                        append-only, one JSON line per version (hash-chained)
    .golden/lock                                the exclusive writer lock (filelock)

Versions are per case: ``CASE@v3`` is the case's goldens as of ledger entry 3, and one entry may
cover several files (a resume case's file pair).

Write protocol, under the case's lock: recover; write the blobs (atomic); append the ledger line
and fsync — THE COMMIT POINT; then atomically replace the plain files. Recovery (before every write,
and in ``fsck``) drops a torn trailing ledger line (never committed) and rolls the plain files
forward to the last committed entry (its blobs exist: they were written before the commit). So a
crash at any instant leaves the old or the new version, and after recovery the ledger agrees.
Nothing is written at all when the new content fails validation.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from .atomic import atomic_write_bytes, fsync_dir
from .case import CASE_FILE, check_name
from .errors import FormatError, StoreError
from .formats import dumps_golden, parse_golden_bytes, parse_golden_filename
from .model import GoldenKey, GoldenSet, MetricSeries
from .validate import ERROR, MEGATRON_CASE_FILE, check_golden_set, declared_metrics, is_golden_name

HISTORY_DIR = ".golden"
OBJECTS_DIR = "objects"
LEDGER_FILE = "ledger.jsonl"
LOCK_FILE = "lock"
LEDGER_SCHEMA = "golden.ledger/1"
STORE_ENV = "GOLDEN_STORE"
DEFAULT_STORE = "cases"
IMPORTED = "imported"
_HASH = re.compile(r"^[0-9a-f]{64}$")
_ACTION = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_ENTRY_FIELDS = ("version", "time", "approver", "reason", "action", "source_run_id", "fingerprint",
                 "provenance", "files", "prev_entry_hash", "entry_hash")


class VersionConflict(StoreError):
    """The ledger head moved since the caller read it (optimistic concurrency)."""


# ---------------------------------------------------------------- records

@dataclass(frozen=True, slots=True)
class MetricChange:
    """One metric of one file against the previous version.

    Relative diffs are over the steps both versions hold a finite value at, divided by the
    previous value; steps where that is 0 are counted in ``changed_steps`` but have no relative
    diff. ``None`` when there is no such step. ``mean_rel_diff`` is signed (drift shows).
    """

    steps_added: int
    steps_removed: int
    changed_steps: int
    max_abs_rel_diff: float | None
    mean_rel_diff: float | None

    def to_json(self) -> dict[str, Any]:
        return {"steps_added": self.steps_added, "steps_removed": self.steps_removed,
                "changed_steps": self.changed_steps, "max_abs_rel_diff": self.max_abs_rel_diff,
                "mean_rel_diff": self.mean_rel_diff}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "MetricChange":
        return cls(int(raw["steps_added"]), int(raw["steps_removed"]), int(raw["changed_steps"]),
                   raw.get("max_abs_rel_diff"), raw.get("mean_rel_diff"))


@dataclass(frozen=True, slots=True)
class FileRecord:
    """What one ledger entry did to one golden file (``hash`` None: the file was removed)."""

    hash: str | None
    previous_hash: str | None
    summary: dict[str, MetricChange] | None  # None when either side could not be parsed

    def to_json(self) -> dict[str, Any]:
        return {"hash": self.hash, "previous_hash": self.previous_hash,
                "summary": None if self.summary is None else {k: v.to_json() for k, v in self.summary.items()}}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "FileRecord":
        summary = raw.get("summary")
        return cls(raw.get("hash"), raw.get("previous_hash"),
                   None if summary is None else {k: MetricChange.from_json(v) for k, v in summary.items()})


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One committed version of a case."""

    version: int
    time: str
    approver: str
    reason: str
    action: str
    source_run_id: str | None
    fingerprint: str | None
    provenance: dict[str, Any] | None
    files: dict[str, FileRecord]
    prev_entry_hash: str | None
    entry_hash: str

    def to_json(self) -> dict[str, Any]:
        return {"schema": LEDGER_SCHEMA, "version": self.version, "time": self.time,
                "approver": self.approver, "reason": self.reason, "action": self.action,
                "source_run_id": self.source_run_id, "fingerprint": self.fingerprint,
                "provenance": self.provenance, "files": {k: v.to_json() for k, v in self.files.items()},
                "prev_entry_hash": self.prev_entry_hash, "entry_hash": self.entry_hash}

    @classmethod
    def from_json(cls, raw: Any) -> "LedgerEntry":
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        missing = [f for f in _ENTRY_FIELDS if f not in raw]
        if missing:
            raise ValueError(f"missing field(s) {', '.join(missing)}")
        if not isinstance(raw["version"], int) or not isinstance(raw["files"], dict):
            raise ValueError("version must be an integer and files an object")
        return cls(raw["version"], raw["time"], raw["approver"], raw["reason"], raw["action"],
                   raw["source_run_id"], raw["fingerprint"], raw["provenance"],
                   {k: FileRecord.from_json(v) for k, v in raw["files"].items()},
                   raw["prev_entry_hash"], raw["entry_hash"])


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding of the integrity check; ``repaired`` when fsck (or recovery) fixed it."""

    case: str
    kind: str
    message: str
    severity: str = ERROR  # "error" | "warning"
    repaired: bool = False
    path: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"case": self.case, "kind": self.kind, "message": self.message, "severity": self.severity,
                "repaired": self.repaired, "path": self.path}


@dataclass(frozen=True, slots=True)
class _Ledger:
    """The ledger file as read: committed entries, a torn tail, unreadable lines."""

    entries: tuple[LedgerEntry, ...] = ()
    committed_bytes: int = 0
    torn_tail: bytes = b""
    bad_lines: tuple[tuple[int, str], ...] = ()
    entry_lines: tuple[bytes, ...] = field(default=(), repr=False)  # the raw line of each entry


# ---------------------------------------------------------------- small pure helpers

def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def entry_hash_of(entry_json: Mapping[str, Any]) -> str:
    """The chain hash: sha256 of the entry's canonical JSON without its own ``entry_hash``."""
    return sha256_hex(_canonical({k: v for k, v in entry_json.items() if k != "entry_hash"}))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def metric_change(old: MetricSeries | None, new: MetricSeries | None) -> MetricChange:
    """How ``new`` differs from ``old`` step by step (NaN equals NaN; bits decide 'changed')."""
    old_steps = old.steps if old is not None else np.empty(0, np.int64)
    new_steps = new.steps if new is not None else np.empty(0, np.int64)
    common, i_old, i_new = np.intersect1d(old_steps, new_steps, return_indices=True)
    added = int(new_steps.size - common.size)
    removed = int(old_steps.size - common.size)
    if not common.size:
        return MetricChange(added, removed, 0, None, None)
    o, n = old.values[i_old], new.values[i_new]  # type: ignore[union-attr]
    changed = int(np.count_nonzero(o.view(np.int64) != n.view(np.int64)))
    usable = np.isfinite(o) & np.isfinite(n) & (o != 0)
    if not usable.any():
        return MetricChange(added, removed, changed, None, None)
    rel = (n[usable] - o[usable]) / np.abs(o[usable])
    return MetricChange(added, removed, changed, _finite_or_none(np.max(np.abs(rel))),
                        _finite_or_none(np.mean(rel)))


def summarize_change(old: GoldenSet | None, new: GoldenSet | None) -> dict[str, MetricChange]:
    """Per-metric change of a golden file; scalar entries count as a one-step series."""
    def series(golden: GoldenSet | None) -> dict[str, MetricSeries]:
        if golden is None:
            return {}
        out = dict(golden.metrics)
        out.update({k: MetricSeries(k, np.zeros(1, np.int64), np.array([v])) for k, v in golden.scalars.items()})
        return out

    before, after = series(old), series(new)
    names = list(after) + [k for k in before if k not in after]
    return {name: metric_change(before.get(name), after.get(name)) for name in names}


def _summary_or_none(old: bytes | None, new: bytes | None, where: str) -> dict[str, MetricChange] | None:
    try:
        return summarize_change(None if old is None else parse_golden_bytes(old, where),
                                None if new is None else parse_golden_bytes(new, where))
    except FormatError:
        return None


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:  # a folder or an unreadable file where the store expects a file
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None


def default_store_root() -> Path:
    """``$GOLDEN_STORE``, else ``cases/`` under the current folder, else the repository's ``cases/``."""
    env = os.environ.get(STORE_ENV)
    if env:
        return Path(env)
    here = Path.cwd() / DEFAULT_STORE
    repo = Path(__file__).resolve().parents[1] / DEFAULT_STORE
    return here if here.is_dir() or not repo.is_dir() else repo


def parse_case_ref(ref: str) -> tuple[str, int | None]:
    """``CASE`` or ``CASE@vN`` (also ``CASE@N``) → (case, N or None)."""
    case, sep, version = ref.partition("@")
    if not sep:
        return check_name(case), None
    digits = version[1:] if version[:1] in ("v", "V") else version
    if not digits.isdigit() or not digits.isascii() or int(digits) < 1:
        raise StoreError(f"invalid version {version!r} in {ref!r}: use CASE@vN with N ≥ 1")
    return check_name(case), int(digits)


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
        keys = [GoldenKey(case, *parse_golden_filename(p.name)) for p in _plain_golden_files(self.case_dir(case))]
        return sorted(keys, key=_key_order)

    def read(self, key: GoldenKey) -> GoldenSet:
        """The current golden: the plain Megatron file."""
        path = self.case_dir(key.case) / _checked_filename(key)
        if not path.is_file():
            have = ", ".join(k.filename() for k in self.keys(key.case)) or "none"
            raise StoreError(f"case {key.case!r} has no {key.filename()} (has: {have})")
        data = path.read_bytes()
        golden = parse_golden_bytes(data, path)
        return GoldenSet(golden.metrics, golden.scalars, key=key, source=str(path))

    # ------------------------------------------------------------ history (read-only)

    def history(self, case: str) -> list[LedgerEntry]:
        return list(_checked_ledger(case, self.case_dir(case)).entries)

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
        for filename, digest in _state(entries[:version]).items():
            parsed = parse_golden_filename(filename)
            if digest is None or parsed is None:
                continue
            key = GoldenKey(case, *parsed)
            blob = _blob_path(case_dir, digest)
            data = _read_bytes(blob)
            if data is None or sha256_hex(data) != digest:
                raise StoreError(f"{case}@v{version}: blob {blob.name} is {'missing' if data is None else 'corrupt'}; "
                                 f"run golden fsck")
            golden = parse_golden_bytes(data, f"{case}@v{version}/{filename}")
            out[key] = GoldenSet(golden.metrics, golden.scalars, key=key, source=str(blob))
        return {key: out[key] for key in sorted(out, key=_key_order)}

    def writer_of(self, key: GoldenKey, *, upto: int | None = None) -> LedgerEntry | None:
        """The ledger entry (up to version ``upto``) whose write made this file what it is; None
        when no entry wrote it or the last one to touch it removed it."""
        filename = _checked_filename(key)
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
        payload = _validated_payload(case, case_dir, goldens)
        meta = _validated_meta(approver=approver, reason=reason, action=action, source_run_id=source_run_id,
                               fingerprint=fingerprint, provenance=provenance)
        if expected_version is not None and (not isinstance(expected_version, int) or isinstance(expected_version, bool)
                                             or expected_version < 0):
            raise StoreError(f"expected_version must be a version number ≥ 0, got {expected_version!r}")
        if expected_version not in (None, 0) and not _ledger_path(case_dir).exists():
            raise VersionConflict(f"{case}: expected v{expected_version} but the case has no history yet")
        with self._locked(case, case_dir):
            _recover_or_refuse(case, case_dir)
            ledger = _checked_ledger(case, case_dir)
            head = ledger.entries[-1].version if ledger.entries else 0
            if expected_version is not None and head != expected_version:
                raise VersionConflict(f"{case}: expected v{expected_version} but the ledger head is v{head} "
                                      f"(someone wrote in between)")
            entries = list(ledger.entries)
            imported = _commit_untracked(case_dir, entries, approver=meta["approver"],
                                         reason=f"recorded golden files changed outside the store before {action}")
            if imported is not None:
                entries.append(imported)
            return _commit(case_dir, entries, payload, **meta)

    def adopt(self, case: str, *, approver: str | None = None,
              reason: str = "imported existing golden files") -> LedgerEntry:
        """Record the plain golden files as they are (exact bytes) without changing them.

        Version 1 ("imported") for a case without history; later, a new version for files changed
        outside the store. ``StoreError`` when there is nothing to record.
        """
        case_dir = self.case_dir(case)
        approver = approver or _default_approver()
        if not _plain_golden_files(case_dir):
            raise StoreError(f"{case}: no golden_values_<env>_<platform>.json file to adopt in {case_dir}")
        with self._locked(case, case_dir):
            _recover_or_refuse(case, case_dir)
            entries = list(_checked_ledger(case, case_dir).entries)
            entry = _commit_untracked(case_dir, entries, approver=approver, reason=reason)
        if entry is None:
            raise StoreError(f"{case}: nothing to adopt, the golden files match v{entries[-1].version}")
        return entry

    @contextmanager
    def _locked(self, case: str, case_dir: Path) -> Iterator[None]:
        from filelock import FileLock, Timeout

        history = case_dir / HISTORY_DIR
        history.mkdir(exist_ok=True)
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
        """Check every case's history: ledger lines and chain, blobs, plain files against the head.

        With ``repair`` (under each case's lock): drop a torn trailing ledger line, finish an
        interrupted write, delete stale temp files and blobs no entry references. What cannot be
        repaired is reported (``repaired=False``).
        """
        problems: list[Problem] = []
        if cases is None:
            problems += self._unaddressable_folders()
        for case in (self.cases() if cases is None else cases):
            case_dir = self.case_dir(case)
            if not (case_dir / HISTORY_DIR).is_dir():
                continue
            if repair:
                with self._locked(case, case_dir):
                    problems += _fsck_case(case, case_dir, repair=True)
            else:
                problems += _fsck_case(case, case_dir, repair=False)
        return problems

    def _unaddressable_folders(self) -> list[Problem]:
        return [Problem(name, "bad-case-name", f"case folder {path} cannot be addressed: its name is not a valid "
                                               f"case name (letters, digits, '_', '-', '.')",
                        severity="warning", path=str(path))
                for name, path in sorted(self._case_index().items()) if not _addressable(name)]


# ---------------------------------------------------------------- layout

def _addressable(name: str) -> bool:
    try:
        check_name(name)
    except StoreError:
        return False
    return True


def _is_case_folder(files: list[str]) -> bool:
    return any(f in (CASE_FILE, MEGATRON_CASE_FILE) or is_golden_name(f) for f in files)


def _ledger_path(case_dir: Path) -> Path:
    return case_dir / HISTORY_DIR / LEDGER_FILE


def _objects_dir(case_dir: Path) -> Path:
    return case_dir / HISTORY_DIR / OBJECTS_DIR


def _blob_path(case_dir: Path, digest: str) -> Path:
    return _objects_dir(case_dir) / f"{digest}.json"


def _key_order(key: GoldenKey) -> tuple[str, str, int]:
    return key.env, key.platform, key.phase


def _plain_golden_files(case_dir: Path) -> list[Path]:
    return sorted(p for p in case_dir.iterdir() if p.is_file() and parse_golden_filename(p.name))


def _state(entries: list[LedgerEntry] | tuple[LedgerEntry, ...]) -> dict[str, str | None]:
    """filename → hash (None: removed) after applying ``entries`` in order."""
    state: dict[str, str | None] = {}
    for entry in entries:
        for filename, record in entry.files.items():
            state[filename] = record.hash
    return state


def _default_approver() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# ---------------------------------------------------------------- validation before any write

def _checked_filename(key: GoldenKey) -> str:
    """The key's file name, refused unless it is safe and reads back as the same key."""
    check_name(key.env, "env")
    check_name(key.platform, "platform")
    filename = key.filename()
    if key.phase not in (1, 2) or parse_golden_filename(filename) != (key.env, key.platform, key.phase):
        raise StoreError(f"{key.case}: env {key.env!r} / platform {key.platform!r} / phase {key.phase!r} do not "
                         f"make a golden file name that reads back (env: letters and digits only)")
    return filename


def _validated_payload(case: str, case_dir: Path, goldens: Mapping[GoldenKey, GoldenSet | None]
                       ) -> dict[str, bytes | None]:
    """filename → exact bytes to write (None: remove); StoreError on anything off, before any I/O."""
    if not isinstance(goldens, Mapping) or not goldens:
        raise StoreError(f"{case}: nothing to write (no goldens given)")
    known = declared_metrics(case_dir)
    payload: dict[str, bytes | None] = {}
    for key, golden in goldens.items():
        if not isinstance(key, GoldenKey):
            raise StoreError(f"{case}: golden keys must be GoldenKey, got {type(key).__name__}")
        if key.case != case:
            raise StoreError(f"refusing to write a golden of case {key.case!r} into case {case!r}")
        filename = _checked_filename(key)
        if golden is None:
            payload[filename] = None
            continue
        if not isinstance(golden, GoldenSet):
            raise StoreError(f"refusing to write {case}/{filename}: expected a GoldenSet, got {type(golden).__name__}")
        if not (golden.metrics or golden.scalars):
            raise StoreError(f"refusing to write {case}/{filename}: no metrics")
        errors = [f for f in check_golden_set(golden, known_metrics=known) if f.severity == ERROR]
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise StoreError(f"refusing to write {case}/{filename}: {errors[0].message}{more}")
        payload[filename] = dumps_golden(golden).encode("utf-8")
    return payload


def _validated_meta(**meta: Any) -> dict[str, Any]:
    """The entry's who/why/what, checked (approver and reason required); stripped copies returned."""
    for name in ("approver", "reason"):
        value = meta[name]
        if not isinstance(value, str) or not value.strip():
            raise StoreError(f"a golden version needs a non-empty {name}")
        meta[name] = value.strip()
    if not isinstance(meta["action"], str) or not _ACTION.match(meta["action"]):
        raise StoreError(f"invalid action {meta['action']!r}: lower-case letters, digits, '_' or '-'")
    if meta["action"] == IMPORTED:
        raise StoreError(f"action {IMPORTED!r} is reserved for adopt (it records files without writing them)")
    for name in ("source_run_id", "fingerprint"):
        if meta[name] is not None and not isinstance(meta[name], str):
            raise StoreError(f"{name} must be a string, got {type(meta[name]).__name__}")
    provenance = meta["provenance"]
    if provenance is not None:
        if not isinstance(provenance, dict):
            raise StoreError(f"provenance must be a mapping, got {type(provenance).__name__}")
        try:
            _canonical(provenance)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"provenance is not plain JSON: {exc}") from None
    return meta


# ---------------------------------------------------------------- the ledger on disk

def _read_ledger(case_dir: Path) -> _Ledger:
    data = _read_bytes(_ledger_path(case_dir)) or b""
    committed_end = data.rfind(b"\n") + 1  # a line is committed only once its newline is written
    lines = data[:committed_end].split(b"\n")[:-1]
    entries, entry_lines, bad = [], [], []
    for number, line in enumerate(lines, start=1):
        try:
            entries.append(LedgerEntry.from_json(json.loads(line)))
            entry_lines.append(line)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            bad.append((number, str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__))
    return _Ledger(tuple(entries), committed_end, data[committed_end:], tuple(bad), tuple(entry_lines))


def _checked_ledger(case: str, case_dir: Path) -> _Ledger:
    ledger = _read_ledger(case_dir)
    if ledger.bad_lines:
        line, why = ledger.bad_lines[0]
        raise StoreError(f"{case}: ledger line {line} is unreadable ({why}); run golden fsck")
    return ledger


def _append_line(path: Path, line: bytes) -> None:
    """Append one ledger line and fsync it: the commit point."""
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)


def _write_blob(case_dir: Path, digest: str, data: bytes) -> None:
    blob = _blob_path(case_dir, digest)
    if _read_bytes(blob) != data:
        atomic_write_bytes(blob, data)


def _commit(case_dir: Path, entries: list[LedgerEntry], payload: Mapping[str, bytes | None], *, approver: str,
            reason: str, action: str, source_run_id: str | None, fingerprint: str | None,
            provenance: dict[str, Any] | None) -> LedgerEntry:
    """Blobs, then the ledger line (commit), then the plain files. Caller holds the lock.

    An import records the plain files as they are, so it leaves them untouched.
    """
    state = _state(entries)
    records: dict[str, FileRecord] = {}
    for filename, data in payload.items():
        previous = state.get(filename)
        previous_bytes = None if previous is None else _read_bytes(_blob_path(case_dir, previous))
        digest = None if data is None else sha256_hex(data)
        if data is not None:
            _write_blob(case_dir, digest, data)  # type: ignore[arg-type]
        records[filename] = FileRecord(digest, previous, _summary_or_none(previous_bytes, data, filename))
    head = entries[-1] if entries else None
    entry_json = LedgerEntry(
        version=(head.version if head else 0) + 1, time=_now(), approver=approver, reason=reason, action=action,
        source_run_id=source_run_id, fingerprint=fingerprint, provenance=provenance, files=records,
        prev_entry_hash=head.entry_hash if head else None, entry_hash="").to_json()
    entry_json["entry_hash"] = entry_hash_of(entry_json)
    _append_line(_ledger_path(case_dir), _canonical(entry_json) + b"\n")  # ---- COMMIT POINT
    for filename, data in (payload.items() if action != IMPORTED else ()):
        target = case_dir / filename
        if data is None:
            target.unlink(missing_ok=True)
        else:
            atomic_write_bytes(target, data)
    if action != IMPORTED and any(data is None for data in payload.values()):
        fsync_dir(case_dir)
    return LedgerEntry.from_json(entry_json)


def _untracked(case_dir: Path, entries: list[LedgerEntry]) -> dict[str, bytes | None]:
    """Plain golden files whose bytes the ledger head does not hold (None: a tracked file deleted)."""
    state = _state(entries)
    found: dict[str, bytes | None] = {}
    for path in _plain_golden_files(case_dir):
        data = path.read_bytes()
        if state.get(path.name) != sha256_hex(data):
            found[path.name] = data
    for filename, digest in state.items():
        if digest is not None and not (case_dir / filename).exists():
            found[filename] = None
    return found


def _commit_untracked(case_dir: Path, entries: list[LedgerEntry], *, approver: str, reason: str
                      ) -> LedgerEntry | None:
    """Record changed/untracked plain files as an "imported" version (plain files untouched)."""
    found = _untracked(case_dir, entries)
    if not found:
        return None
    return _commit(case_dir, entries, found, approver=approver, reason=reason, action=IMPORTED,
                   source_run_id=None, fingerprint=None, provenance=None)


# ---------------------------------------------------------------- recovery and fsck

def _recover(case: str, case_dir: Path, *, repair: bool) -> list[Problem]:
    """Undo what a crash can leave: a torn ledger tail, a half-replaced set of plain files, temp files.

    Only the head entry can be incomplete (every write recovers first): a file of the head that
    still holds the entry's *previous* bytes is rolled forward from its blob.
    """
    problems: list[Problem] = []
    ledger_path = _ledger_path(case_dir)
    for tmp in sorted([*case_dir.glob(".golden_values_*.tmp"), *_objects_dir(case_dir).glob(".*.tmp")]):
        if repair:
            tmp.unlink(missing_ok=True)
        problems.append(Problem(case, "stale-temp-file", f"temp file of an interrupted write: {tmp.name}",
                                severity="warning", repaired=repair, path=str(tmp)))
    ledger = _read_ledger(case_dir)
    if ledger.torn_tail:
        if repair:
            with open(ledger_path, "r+b") as fh:
                fh.truncate(ledger.committed_bytes)
                fh.flush()
                os.fsync(fh.fileno())
        problems.append(Problem(case, "torn-ledger-line",
                                f"dropped an uncommitted trailing ledger line ({len(ledger.torn_tail)} bytes)",
                                severity="warning", repaired=repair, path=str(ledger_path)))
    if ledger.bad_lines or not ledger.entries or ledger.entries[-1].action == IMPORTED:
        return problems  # an import never touches the plain files, so it cannot be half done
    head = ledger.entries[-1]
    for filename, record in head.files.items():
        target = case_dir / filename
        data = _read_bytes(target)
        current = None if data is None else sha256_hex(data)
        if current == record.hash or current != record.previous_hash:
            continue  # done, or changed outside the store (fsck reports that)
        blob = None if record.hash is None else _read_bytes(_blob_path(case_dir, record.hash))
        if record.hash is not None and (blob is None or sha256_hex(blob) != record.hash):
            problems.append(Problem(case, "missing-blob", f"cannot finish v{head.version} for {filename}: "
                                                          f"its blob is missing or corrupt", path=str(target)))
            continue
        if repair:
            if blob is None:
                target.unlink(missing_ok=True)
                fsync_dir(case_dir)
            else:
                atomic_write_bytes(target, blob)
        problems.append(Problem(case, "interrupted-write",
                                f"{filename} still held the previous content; rolled forward to v{head.version}"
                                if repair else f"{filename} still holds the content before v{head.version} "
                                               f"(interrupted write; fsck repairs it)",
                                severity="warning", repaired=repair, path=str(target)))
    return problems


def _recover_or_refuse(case: str, case_dir: Path) -> None:
    unrepaired = [p for p in _recover(case, case_dir, repair=True) if p.severity == ERROR and not p.repaired]
    if unrepaired:
        raise StoreError(f"{case}: {unrepaired[0].message}; nothing written, run golden fsck")


def _fsck_case(case: str, case_dir: Path, *, repair: bool) -> list[Problem]:
    problems = _recover(case, case_dir, repair=repair)
    ledger = _read_ledger(case_dir)
    for line, why in ledger.bad_lines:
        problems.append(Problem(case, "unreadable-ledger-line", f"ledger line {line}: {why}",
                                path=str(_ledger_path(case_dir))))
    previous_hash = None
    for number, (raw, entry) in enumerate(zip(ledger.entry_lines, ledger.entries), start=1):
        if entry.version != number:
            problems.append(Problem(case, "ledger-chain", f"entry {number} says version {entry.version}"))
        if entry.prev_entry_hash != previous_hash:
            problems.append(Problem(case, "ledger-chain", f"v{entry.version}: prev_entry_hash does not match "
                                                          f"the entry before it (chain broken)"))
        if entry_hash_of(json.loads(raw)) != entry.entry_hash:
            problems.append(Problem(case, "ledger-chain", f"v{entry.version}: entry_hash does not match its "
                                                          f"content (entry altered)"))
        previous_hash = entry.entry_hash
    referenced = {r.hash for e in ledger.entries for r in e.files.values() if r.hash is not None}
    problems += _check_blobs(case, case_dir, referenced, repair=repair)
    if not ledger.bad_lines and ledger.entries:
        pending = {p.path for p in problems if p.kind == "interrupted-write" and not p.repaired}
        problems += [p for p in _check_plain_files(case, case_dir, list(ledger.entries)) if p.path not in pending]
    return problems


def _check_blobs(case: str, case_dir: Path, referenced: set[str], *, repair: bool) -> list[Problem]:
    problems = []
    objects = _objects_dir(case_dir)
    present = {p.stem: p for p in objects.glob("*.json")} if objects.is_dir() else {}
    for digest in sorted(referenced - present.keys()):
        problems.append(Problem(case, "missing-blob", f"blob {digest[:12]}… referenced by the ledger is missing",
                                path=str(_blob_path(case_dir, digest))))
    for digest, path in sorted(present.items()):
        if not _HASH.match(digest) or sha256_hex(_read_bytes(path) or b"") != digest:
            problems.append(Problem(case, "blob-hash-mismatch", f"blob {path.name} does not hash to its name",
                                    path=str(path)))
        elif digest not in referenced:
            if repair:
                path.unlink()
            problems.append(Problem(case, "orphan-blob", f"blob {digest[:12]}… from an uncommitted write",
                                    severity="warning", repaired=repair, path=str(path)))
    return problems


def _check_plain_files(case: str, case_dir: Path, entries: list[LedgerEntry]) -> list[Problem]:
    head = entries[-1].version
    problems = []
    for filename, data in _untracked(case_dir, entries).items():
        tracked = filename in _state(entries)
        if data is None:
            message = f"{filename} is missing but v{head} has it"
        elif tracked:
            message = f"{filename} differs from v{head} (changed outside the store; golden adopt records it)"
        else:
            message = f"{filename} is not in the history (golden adopt records it)"
        problems.append(Problem(case, "plain-file-differs" if tracked else "untracked-file", message,
                                severity=ERROR if tracked else "warning", path=str(case_dir / filename)))
    return problems
