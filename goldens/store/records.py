"""What the store records: a ledger entry per version, per-file records with a change summary,
the hash chain, and fsck's problems. Pure data and hashing; no I/O.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

import numpy as np

from ..errors import FormatError
from ..formats import parse_golden_bytes
from ..model import GoldenSet, MetricSeries
from ..validate import ERROR

LEDGER_SCHEMA = "golden.ledger/1"
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


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def entry_hash_of(entry_json: Mapping[str, Any]) -> str:
    """The chain hash: sha256 of the entry's canonical JSON without its own ``entry_hash``."""
    return sha256_hex(canonical_json({k: v for k, v in entry_json.items() if k != "entry_hash"}))


def now_iso() -> str:
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


def summary_or_none(old: bytes | None, new: bytes | None, where: str) -> dict[str, MetricChange] | None:
    try:
        return summarize_change(None if old is None else parse_golden_bytes(old, where),
                                None if new is None else parse_golden_bytes(new, where))
    except FormatError:
        return None

