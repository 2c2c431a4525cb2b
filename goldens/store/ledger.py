"""The ledger store on disk: one case folder's history beside its plain golden files.

Layout (per case folder)::

    golden_values_<env>_<platform>[_2nd].json   the current goldens, exactly what Megatron reads
    .golden/objects/<sha256>.json               every version's exact bytes, content-addressed
    .golden/ledger.jsonl                        append-only, one JSON line per version (hash-chained)
    .golden/lock                                the exclusive writer lock (filelock)

Write protocol, under the case's lock: write the blobs (atomic); append the ledger line and
fsync — THE COMMIT POINT; then atomically replace the plain files (``commit``). Everything a
write stores is validated first (``validated_payload``, ``validated_meta``), so nothing is written
when the new content is refused.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..atomic import atomic_write_bytes, fsync_dir
from ..case import check_name
from ..errors import StoreError
from ..formats import dumps_golden, parse_golden_filename
from ..model import GoldenKey, GoldenSet
from ..validate import ERROR, check_golden_set, declared_metrics
from .records import (FileRecord, LedgerEntry, canonical_json, entry_hash_of, now_iso, sha256_hex,
                      summary_or_none)

HISTORY_DIR = ".golden"
OBJECTS_DIR = "objects"
LEDGER_FILE = "ledger.jsonl"
LOCK_FILE = "lock"
IMPORTED = "imported"
HASH = re.compile(r"^[0-9a-f]{64}$")
ACTION = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


@dataclass(frozen=True, slots=True)
class Ledger:
    """The ledger file as read: committed entries, a torn tail, unreadable lines."""

    entries: tuple[LedgerEntry, ...] = ()
    committed_bytes: int = 0
    torn_tail: bytes = b""
    bad_lines: tuple[tuple[int, str], ...] = ()
    entry_lines: tuple[bytes, ...] = field(default=(), repr=False)  # the raw line of each entry


def read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:  # a folder or an unreadable file where the store expects a file
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None


def ledger_path(case_dir: Path) -> Path:
    return case_dir / HISTORY_DIR / LEDGER_FILE


def objects_dir(case_dir: Path) -> Path:
    return case_dir / HISTORY_DIR / OBJECTS_DIR


def blob_path(case_dir: Path, digest: str) -> Path:
    return objects_dir(case_dir) / f"{digest}.json"


def key_order(key: GoldenKey) -> tuple[str, str, int]:
    return key.env, key.platform, key.phase


def plain_golden_files(case_dir: Path) -> list[Path]:
    return sorted(p for p in case_dir.iterdir() if p.is_file() and parse_golden_filename(p.name))


def file_state(entries: list[LedgerEntry] | tuple[LedgerEntry, ...]) -> dict[str, str | None]:
    """filename → hash (None: removed) after applying ``entries`` in order."""
    state: dict[str, str | None] = {}
    for entry in entries:
        for filename, record in entry.files.items():
            state[filename] = record.hash
    return state


def checked_filename(key: GoldenKey) -> str:
    """The key's file name, refused unless it is safe and reads back as the same key."""
    check_name(key.env, "env")
    check_name(key.platform, "platform")
    filename = key.filename()
    if key.phase not in (1, 2) or parse_golden_filename(filename) != (key.env, key.platform, key.phase):
        raise StoreError(f"{key.case}: env {key.env!r} / platform {key.platform!r} / phase {key.phase!r} do not "
                         f"make a golden file name that reads back (env: letters and digits only)")
    return filename


def validated_payload(case: str, case_dir: Path, goldens: Mapping[GoldenKey, GoldenSet | None]
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
        filename = checked_filename(key)
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


def validated_meta(**meta: Any) -> dict[str, Any]:
    """The entry's who/why/what, checked (approver and reason required); stripped copies returned."""
    for name in ("approver", "reason"):
        value = meta[name]
        if not isinstance(value, str) or not value.strip():
            raise StoreError(f"a golden version needs a non-empty {name}")
        meta[name] = value.strip()
    if not isinstance(meta["action"], str) or not ACTION.match(meta["action"]):
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
            canonical_json(provenance)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"provenance is not plain JSON: {exc}") from None
    return meta


# ---------------------------------------------------------------- the ledger on disk

def read_ledger(case_dir: Path) -> Ledger:
    data = read_bytes(ledger_path(case_dir)) or b""
    committed_end = data.rfind(b"\n") + 1  # a line is committed only once its newline is written
    lines = data[:committed_end].split(b"\n")[:-1]
    entries, entry_lines, bad = [], [], []
    for number, line in enumerate(lines, start=1):
        try:
            entries.append(LedgerEntry.from_json(json.loads(line)))
            entry_lines.append(line)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            bad.append((number, str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__))
    return Ledger(tuple(entries), committed_end, data[committed_end:], tuple(bad), tuple(entry_lines))


def checked_ledger(case: str, case_dir: Path) -> Ledger:
    ledger = read_ledger(case_dir)
    if ledger.bad_lines:
        line, why = ledger.bad_lines[0]
        raise StoreError(f"{case}: ledger line {line} is unreadable ({why}); run golden fsck")
    return ledger


def append_line(path: Path, line: bytes) -> None:
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


def write_blob(case_dir: Path, digest: str, data: bytes) -> None:
    blob = blob_path(case_dir, digest)
    if read_bytes(blob) != data:
        atomic_write_bytes(blob, data)


def commit(case_dir: Path, entries: list[LedgerEntry], payload: Mapping[str, bytes | None], *, approver: str,
            reason: str, action: str, source_run_id: str | None, fingerprint: str | None,
            provenance: dict[str, Any] | None) -> LedgerEntry:
    """Blobs, then the ledger line (commit), then the plain files. Caller holds the lock.

    An import records the plain files as they are, so it leaves them untouched.
    """
    state = file_state(entries)
    records: dict[str, FileRecord] = {}
    for filename, data in payload.items():
        previous = state.get(filename)
        previous_bytes = None if previous is None else read_bytes(blob_path(case_dir, previous))
        digest = None if data is None else sha256_hex(data)
        if data is not None:
            write_blob(case_dir, digest, data)  # type: ignore[arg-type]
        records[filename] = FileRecord(digest, previous, summary_or_none(previous_bytes, data, filename))
    head = entries[-1] if entries else None
    entry_json = LedgerEntry(
        version=(head.version if head else 0) + 1, time=now_iso(), approver=approver, reason=reason, action=action,
        source_run_id=source_run_id, fingerprint=fingerprint, provenance=provenance, files=records,
        prev_entry_hash=head.entry_hash if head else None, entry_hash="").to_json()
    entry_json["entry_hash"] = entry_hash_of(entry_json)
    append_line(ledger_path(case_dir), canonical_json(entry_json) + b"\n")  # ---- COMMIT POINT
    for filename, data in (payload.items() if action != IMPORTED else ()):
        target = case_dir / filename
        if data is None:
            target.unlink(missing_ok=True)
        else:
            atomic_write_bytes(target, data)
    if action != IMPORTED and any(data is None for data in payload.values()):
        fsync_dir(case_dir)
    return LedgerEntry.from_json(entry_json)


def untracked(case_dir: Path, entries: list[LedgerEntry]) -> dict[str, bytes | None]:
    """Plain golden files whose bytes the ledger head does not hold (None: a tracked file deleted)."""
    state = file_state(entries)
    found: dict[str, bytes | None] = {}
    for path in plain_golden_files(case_dir):
        data = path.read_bytes()
        if state.get(path.name) != sha256_hex(data):
            found[path.name] = data
    for filename, digest in state.items():
        if digest is not None and not (case_dir / filename).exists():
            found[filename] = None
    return found


def commit_untracked(case_dir: Path, entries: list[LedgerEntry], *, approver: str, reason: str
                      ) -> LedgerEntry | None:
    """Record changed/untracked plain files as an "imported" version (plain files untouched)."""
    found = untracked(case_dir, entries)
    if not found:
        return None
    return commit(case_dir, entries, found, approver=approver, reason=reason, action=IMPORTED,
                  source_run_id=None, fingerprint=None, provenance=None)
