"""A version of a case's goldens, as both history backends report it.

In a ledger store a version is a ledger entry (``CASE@v3``); in a git work tree it is a commit
that changed the case's golden files (``CASE@<commit>``), or the work tree's uncommitted change.
One commit may hold several versions when its files were attributed differently (an approval of
one file beside a file copied in by another tool). A version whose change no approval record
describes is *unattributed*: changed by another tool (a plain copy, Megatron's download script) —
a note in the history, not an error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.errors import StoreError
from .records import FileRecord, LedgerEntry


class VersionConflict(StoreError):
    """The golden moved since the caller read it (optimistic concurrency): plan again."""


class NothingToRestore(StoreError):
    """A rollback whose target the golden files already hold (or a version that does not exist)."""


UNATTRIBUTED = "unattributed"
WORKTREE = "worktree"  # the ref of a git store's uncommitted change


@dataclass(frozen=True, slots=True)
class Version:
    """One version: who, why, when, from which run, and what it did to each golden file."""

    ref: str                         # what CASE@REF names: "v3" (ledger) | a commit hash | "worktree"
    number: int                      # 1-based position in the case's history, oldest first
    time: str                        # when it was approved (or committed, when unattributed)
    approver: str | None             # None: unattributed
    reason: str | None
    action: str                      # approve | rollback | imported | unattributed | …
    source_run_id: str | None
    fingerprint: str | None
    provenance: dict[str, Any] | None
    files: dict[str, FileRecord]
    commit: str | None = None        # git: the commit (None in a ledger store and for the work tree)
    author: str | None = None        # git: who committed it
    subject: str | None = None       # git: the commit's subject line
    notes: tuple[str, ...] = field(default=())

    @property
    def attributed(self) -> bool:
        return self.approver is not None

    @property
    def label(self) -> str:
        """How a person names it: v3, a short commit hash, or "uncommitted"."""
        if self.ref == WORKTREE:
            return "uncommitted"
        return self.ref[:12] if self.commit else self.ref

    @classmethod
    def from_entry(cls, entry: LedgerEntry) -> Version:
        return cls(ref=f"v{entry.version}", number=entry.version, time=entry.time, approver=entry.approver,
                   reason=entry.reason, action=entry.action, source_run_id=entry.source_run_id,
                   fingerprint=entry.fingerprint, provenance=entry.provenance, files=dict(entry.files))

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "label": self.label, "number": self.number, "time": self.time,
                "approver": self.approver, "reason": self.reason, "action": self.action,
                "attributed": self.attributed, "source_run_id": self.source_run_id,
                "fingerprint": self.fingerprint, "provenance": self.provenance,
                "files": {k: v.to_json() for k, v in self.files.items()}, "commit": self.commit,
                "author": self.author, "subject": self.subject, "notes": list(self.notes)}
