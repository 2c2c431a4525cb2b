"""The golden store: current goldens as plain Megatron files, their history beside them.

``GoldenStore`` is the front door (``golden_store``): cases by path (``tree``), the write dialect
(``dialect``), and the history backend (``backend.HistoryBackend``) — ``git_history`` in a git
work tree (approval records, ``approvals``; git read through ``gitrepo``), else ``ledger_history``
(``ledger`` the on-disk history and write protocol, ``recovery`` crash recovery and the integrity
check, ``records`` what a version records). ``versions`` is the version both backends report;
``migrate`` moves a ledger into git.
"""
from __future__ import annotations

from .backend import GIT, LEDGER, HistoryBackend
from .golden_store import (
    BACKEND_ENV,
    DEFAULT_STORE,
    STORE_ENV,
    AdoptReport,
    GoldenStore,
    default_store_root,
    parse_case_ref,
)
from .ledger import HISTORY_DIR, IMPORTED, LEDGER_FILE, LOCK_FILE, OBJECTS_DIR
from .ledger_history import ledger_number
from .records import (
    FileRecord,
    LedgerEntry,
    MetricChange,
    Problem,
    entry_hash_of,
    metric_change,
    sha256_hex,
    summarize_change,
)
from .versions import UNATTRIBUTED, WORKTREE, NothingToRestore, Version, VersionConflict

__all__ = ["BACKEND_ENV", "DEFAULT_STORE", "GIT", "HISTORY_DIR", "IMPORTED", "LEDGER", "LEDGER_FILE", "LOCK_FILE",
           "OBJECTS_DIR", "STORE_ENV", "UNATTRIBUTED", "WORKTREE", "AdoptReport", "FileRecord", "GoldenStore",
           "HistoryBackend", "LedgerEntry", "MetricChange", "NothingToRestore", "Problem", "Version",
           "VersionConflict", "default_store_root", "entry_hash_of", "ledger_number", "metric_change",
           "parse_case_ref", "sha256_hex", "summarize_change"]
