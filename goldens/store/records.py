"""What the store records: a ledger entry per version, per-file records with a change summary,
the hash chain, and fsck's problems. Pure data and hashing; no I/O.

A ledger line is the store's own file, but it is read as untrusted input: ``from_json`` accepts
an entry only when every field has its type, every file name is a plain golden file name and
every hash is 64 hex digits, so nothing a damaged or forged line says can name a path outside
the store (``ValueError`` otherwise: the line is unreadable, fsck reports it, writes refuse).
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ..core.errors import FormatError
from ..core.model import GoldenSet, MetricSeries
from ..files.formats.golden import parse_golden_bytes, parse_golden_filename
from ..files.validate import ERROR
from .safety import MAX_FILE_NAME

LEDGER_SCHEMA = "golden.ledger/1"
HASH = re.compile(r"^[0-9a-f]{64}$")
_CHANGE_FIELDS = ("steps_added", "steps_removed", "changed_steps", "max_abs_rel_diff", "mean_rel_diff")
_ENTRY_FIELDS = ("version", "time", "approver", "reason", "action", "source_run_id", "fingerprint",
                 "provenance", "files", "prev_entry_hash", "entry_hash")


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
    def from_json(cls, raw: Any) -> MetricChange:
        if not isinstance(raw, dict) or set(raw) != set(_CHANGE_FIELDS):
            raise ValueError(f"a metric change must be an object of {', '.join(_CHANGE_FIELDS)}")
        counts = [raw[f] for f in _CHANGE_FIELDS[:3]]
        if not all(_is_count(c) for c in counts):
            raise ValueError("step counts must be integers ≥ 0")
        diffs = [raw[f] for f in _CHANGE_FIELDS[3:]]
        if not (diffs == [None, None] or all(_is_finite_number(d) for d in diffs)):
            raise ValueError("relative diffs must both be numbers or both null")
        return cls(*counts, *diffs)


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
    def from_json(cls, raw: Any) -> FileRecord:
        if not isinstance(raw, dict):
            raise ValueError("a file record must be an object")
        for field in ("hash", "previous_hash"):
            if raw.get(field) is not None and not (isinstance(raw[field], str) and HASH.match(raw[field])):
                raise ValueError(f"{field} must be 64 hex digits or null, got {str(raw[field])[:80]!r}")
        summary = raw.get("summary")
        if summary is not None and not isinstance(summary, dict):
            raise ValueError("summary must be an object or null")
        return cls(raw.get("hash"), raw.get("previous_hash"),
                   None if summary is None else {str(k): MetricChange.from_json(v) for k, v in summary.items()})


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
    def from_json(cls, raw: Any) -> LedgerEntry:
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        missing = [f for f in _ENTRY_FIELDS if f not in raw]
        if missing:
            raise ValueError(f"missing field(s) {', '.join(missing)}")
        if not _is_count(raw["version"]) or raw["version"] < 1:
            raise ValueError("version must be an integer ≥ 1")
        for name in ("time", "approver", "reason", "action"):
            if not isinstance(raw[name], str):
                raise ValueError(f"{name} must be a string")
        for name in ("source_run_id", "fingerprint"):
            if raw[name] is not None and not isinstance(raw[name], str):
                raise ValueError(f"{name} must be a string or null")
        if raw["provenance"] is not None and not isinstance(raw["provenance"], dict):
            raise ValueError("provenance must be an object or null")
        if not isinstance(raw["files"], dict) or not raw["files"]:
            raise ValueError("files must be a non-empty object")
        for name in raw["files"]:
            if not is_golden_file_name(name):
                raise ValueError(f"file {str(name)[:80]!r} is not a plain golden file name in the case folder")
        for name in ("prev_entry_hash", "entry_hash"):
            value = raw[name]
            if not (value is None and name == "prev_entry_hash") and not (isinstance(value, str) and HASH.match(value)):
                raise ValueError(f"{name} must be 64 hex digits")
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


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_golden_file_name(name: Any) -> bool:
    """A golden file's own name (``golden_values_<env>_<platform>[_2nd].json``): no folder, nothing
    but the letters the name pattern allows, and short enough to be written with its temp file."""
    return (isinstance(name, str) and "/" not in name and "\\" not in name and name.isascii()
            and len(name) <= MAX_FILE_NAME and parse_golden_filename(name) is not None)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def entry_hash_of(entry_json: Mapping[str, Any]) -> str:
    """The chain hash: sha256 of the entry's canonical JSON without its own ``entry_hash``."""
    return sha256_hex(canonical_json({k: v for k, v in entry_json.items() if k != "entry_hash"}))


def run_provenance(provenance: Mapping[str, Any] | None) -> dict[str, Any]:
    """A version's run provenance (fingerprint fields, model args) without what that approval picked."""
    return {k: v for k, v in (provenance or {}).items() if k not in ("selection", "rollback_to")}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


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


def summary_or_none(old: bytes | None, new: bytes | None, where: str) -> dict[str, MetricChange] | None:
    try:
        return summarize_change(None if old is None else parse_golden_bytes(old, where),
                                None if new is None else parse_golden_bytes(new, where))
    except FormatError:
        return None

