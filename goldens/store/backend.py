"""What the store asks of a history backend (``GoldenStore`` calls exactly these).

Two backends keep it: ``git_history`` (in a git work tree: git is the history, an approval record
beside each golden) and ``ledger_history`` (outside git: content-addressed blobs and a hash-chained
ledger per case). The front door validates and renders everything before it hands a write over;
a backend records it its own way, with its own optimistic concurrency.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from .records import Problem
from .versions import Version

LEDGER, GIT = "ledger", "git"


class HistoryBackend(Protocol):
    """A case's versions, its golden files as of one, and every write, recorded with who and why."""

    name: str  # LEDGER or GIT

    def history(self, case: str, case_dir: Path) -> list[Version]:
        """The case's versions, oldest first."""
        ...

    def version_bytes(self, case: str, case_dir: Path, ref: str) -> dict[str, bytes]:
        """The case's golden files as of ``ref`` (exact bytes), by file name."""
        ...

    def writer_of(self, case: str, case_dir: Path, filename: str, ref: str | None = None) -> Version | None:
        """The version whose write made this file what it is now (or at ``ref``); None when none did."""
        ...

    def record(self, case: str, case_dir: Path, payload: dict[str, bytes | None], meta: dict[str, Any], *,
               files: list[str], expected_version: int | None = None,
               expected_files: Mapping[str, str | None] | None = None) -> Version:
        """One approval (``meta``) of the golden ``files``: ``payload`` (file → bytes, None removes,
        validated and rendered) becomes current. ``expected_version`` (ledger) and ``expected_files``
        (git) raise ``VersionConflict`` when someone wrote in between."""
        ...

    def rollback(self, case: str, case_dir: Path, ref: str, payload: dict[str, bytes | None],
                 current: Mapping[str, bytes | None], *, approver: str, reason: str) -> Version:
        """Record ``payload`` (what differs between the files as they are, ``current``, and ``ref``)
        as a new version, action "rollback", carrying the run provenance of what ``ref`` held."""
        ...

    def nothing_to_adopt(self, case: str, case_dir: Path) -> str | None:
        """Why adopting the case would record nothing; None when it would record something
        (read only; StoreError when the history is not sound)."""
        ...

    def adopt(self, cases: list[tuple[str, Path]], *, approver: str, reason: str) -> list[tuple[str, Version]]:
        """Record the cases' plain golden files as they are (exact bytes), action "imported"."""
        ...

    def fsck(self, cases: list[tuple[str, Path]], *, repair: bool) -> list[Problem]:
        """Check (and with ``repair``, under the lock, repair) the history of every case."""
        ...
