"""The approval record: the provenance of one golden file, committed beside it in a git store.

``<case>/.approvals/<env>_<platform>[_2nd].json`` describes the approval that made
``<case>/golden_values_<env>_<platform>[_2nd].json`` what it is: who, why, when, from which run
and fingerprint, what changed per metric, and the sha256 of the approved bytes. One record per
golden file, so two branches approving different goldens — even of one case — touch different
files and merge cleanly. The record is one line of canonical JSON (a few hundred bytes); the
golden's contents are never copied into it: git holds every version of the golden already.

A record describes its golden only while ``hash`` equals the golden's bytes: a golden changed by
another tool (a plain copy, Megatron's download script) no longer matches, and its history shows
that version as unattributed. A record with ``hash`` null is a removal (a rollback to a version
without that file).
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..core.errors import StoreError
from ..files.formats.golden import parse_golden_filename
from .records import MetricChange, canonical_json

RECORDS_DIR = ".approvals"
RECORD_SCHEMA = "golden.approval/1"
GOLDEN_PREFIX = "golden_values_"
_FIELDS = ("file", "hash", "previous_hash", "action", "approver", "reason", "time", "source_run_id",
           "fingerprint", "provenance", "summary")


# an absolute path inside a string: at its start or after a space, '=', ':', a quote, '(' or ','
_ABSOLUTE_PATH = re.compile(r"""(?<![^\s=:'"(,])/[^\s'"/][^\s'"]*""")


def repository_relative(value: Any, top: Path) -> Any:
    """``value`` (a record's provenance) with every absolute path made relative to the repository
    ``top`` — a path outside it keeps only its name: a record is committed into a shared repository,
    where a local path (/home/ada/…, a CI runner's workspace) means nothing and leaks whose machine
    it was. Keys and non-path text are untouched."""
    tops = [PurePosixPath(t) for t in dict.fromkeys((top.as_posix(), top.resolve().as_posix()))]

    def local(match: re.Match[str]) -> str:
        path = PurePosixPath(match.group(0))
        for root in tops:
            if path == root or root in path.parents:
                return path.relative_to(root).as_posix()
        return path.name or "."

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return _ABSOLUTE_PATH.sub(local, item)
        if isinstance(item, dict):
            return {k: walk(v) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        return item

    return walk(value)


def record_name(golden_filename: str) -> str:
    """``golden_values_dev_dgx_h100_2nd.json`` → ``dev_dgx_h100_2nd.json``."""
    return golden_filename[len(GOLDEN_PREFIX):]


def golden_name(record_filename: str) -> str | None:
    """The golden file a record file describes, or None when the name is no record's."""
    name = GOLDEN_PREFIX + record_filename
    return name if parse_golden_filename(name) is not None else None


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """What one approval (or adopt, or rollback) did to one golden file."""

    file: str
    hash: str | None
    previous_hash: str | None
    action: str
    approver: str
    reason: str
    time: str
    source_run_id: str | None
    fingerprint: str | None
    provenance: dict[str, Any] | None
    summary: dict[str, MetricChange] | None

    def to_json(self) -> dict[str, Any]:
        return {"schema": RECORD_SCHEMA, "file": self.file, "hash": self.hash, "previous_hash": self.previous_hash,
                "action": self.action, "approver": self.approver, "reason": self.reason, "time": self.time,
                "source_run_id": self.source_run_id, "fingerprint": self.fingerprint,
                "provenance": self.provenance,
                "summary": None if self.summary is None else {k: v.to_json() for k, v in self.summary.items()}}

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json()) + b"\n"

    @property
    def identity(self) -> tuple:
        """What makes two records one approval (a resume pair is approved in one go)."""
        return (self.action, self.approver, self.reason, self.time, self.source_run_id, self.fingerprint)

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> ApprovalRecord:
        """Parse a record; StoreError naming ``where`` and what is wrong (e.g. merge-conflict markers)."""
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            hint = " (merge-conflict markers?)" if b"<<<<<<<" in data else ""
            raise StoreError(f"{where}: not a JSON approval record{hint}") from None
        return cls.from_json(raw, where)

    @classmethod
    def from_json(cls, raw: Any, where: str) -> ApprovalRecord:
        if not isinstance(raw, dict) or raw.get("schema") != RECORD_SCHEMA:
            raise StoreError(f"{where}: not an approval record (expected schema {RECORD_SCHEMA!r})")
        missing = [f for f in _FIELDS if f not in raw]
        if missing:
            raise StoreError(f"{where}: approval record without {', '.join(missing)}")
        strings = ("file", "action", "approver", "reason", "time")
        if not all(isinstance(raw[f], str) and raw[f] for f in strings) \
                or not all(raw[f] is None or isinstance(raw[f], str)
                           for f in ("hash", "previous_hash", "source_run_id", "fingerprint")) \
                or not (raw["provenance"] is None or isinstance(raw["provenance"], dict)) \
                or not (raw["summary"] is None or isinstance(raw["summary"], dict)):
            raise StoreError(f"{where}: approval record with a field of the wrong type")
        try:
            summary = None if raw["summary"] is None else {str(k): MetricChange.from_json(v)
                                                           for k, v in raw["summary"].items()}
        except (KeyError, TypeError, ValueError):
            raise StoreError(f"{where}: approval record with an unreadable summary") from None
        return cls(raw["file"], raw["hash"], raw["previous_hash"], raw["action"], raw["approver"], raw["reason"],
                   raw["time"], raw["source_run_id"], raw["fingerprint"], raw["provenance"], summary)

    @classmethod
    def made(cls, filename: str, data_hash: str | None, previous_hash: str | None,
             summary: Mapping[str, MetricChange] | None, meta: Mapping[str, Any]) -> ApprovalRecord:
        return cls(filename, data_hash, previous_hash, meta["action"], meta["approver"], meta["reason"], meta["time"],
                   meta.get("source_run_id"), meta.get("fingerprint"), meta.get("provenance"),
                   None if summary is None else dict(summary))
