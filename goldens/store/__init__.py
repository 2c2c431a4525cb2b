"""The golden store: current goldens as plain Megatron files, their history beside them.

``GoldenStore`` is the front door (``golden_store``); ``ledger`` holds the on-disk history and
the write protocol, ``recovery`` the crash recovery and integrity check, ``records`` what a
version records.
"""
from __future__ import annotations

from .golden_store import (DEFAULT_STORE, STORE_ENV, GoldenStore, VersionConflict, default_store_root,
                           parse_case_ref)
from .ledger import HISTORY_DIR, IMPORTED, LEDGER_FILE, LOCK_FILE, OBJECTS_DIR
from .records import (FileRecord, LedgerEntry, MetricChange, Problem, entry_hash_of, metric_change, sha256_hex,
                      summarize_change)

__all__ = ["DEFAULT_STORE", "HISTORY_DIR", "IMPORTED", "LEDGER_FILE", "LOCK_FILE", "OBJECTS_DIR", "STORE_ENV",
           "FileRecord", "GoldenStore", "LedgerEntry", "MetricChange", "Problem", "VersionConflict",
           "default_store_root", "entry_hash_of", "metric_change", "parse_case_ref", "sha256_hex",
           "summarize_change"]
