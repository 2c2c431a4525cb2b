"""The ledger store on disk: one case folder's history beside its plain golden files.

Layout (per case folder)::

    golden_values_<env>_<platform>[_2nd].json   the current goldens, exactly what Megatron reads
    .golden/objects/<sha256>.json               every version's exact bytes, content-addressed
    .golden/ledger.jsonl                        append-only, one JSON line per version (hash-chained)
    .golden/lock                                the exclusive writer lock (filelock); readers share it
    .golden/intent.json                         while a write is under way: the blobs it adds
    .golden/quarantine/<time>/                  what fsck could not place, kept with a report

Write protocol, under the case's lock (``commit``): the ledger it appends to is whole and its
hash chain holds (``recovery.recover_or_refuse``); every name is a plain golden file name that fits a file
name, every store path a real folder or regular file (``layout_problems``). Then: record the
intent (the blobs about to be added, on top of which head); write the blobs; write every plain
file's new bytes to a temp file beside it — so nothing commits before every file it needs exists;
append the ledger line and fsync — THE COMMIT POINT; rename the temp files over the plain files;
drop the intent. The intent is what lets recovery prove a blob is an uncommitted temporary of
this store; anything else it cannot place is quarantined, never deleted.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ..core.errors import StoreError
from ..core.model import GoldenKey, GoldenSet
from ..files.atomic import atomic_write_bytes, fsync_dir, install, write_temp
from ..files.case import check_name
from ..files.formats.golden import dumps_golden, parse_golden_filename
from ..files.validate import ERROR, check_golden_set, declared_metrics
from .records import HASH, FileRecord, LedgerEntry, canonical_json, entry_hash_of, now_iso, sha256_hex, summary_or_none
from .safety import FILE, FOLDER, path_problem, plain_name, read_regular, require_safe, temp_files_in, temp_target

HISTORY_DIR = ".golden"
OBJECTS_DIR = "objects"
LEDGER_FILE = "ledger.jsonl"
LOCK_FILE = "lock"
INTENT_FILE = "intent.json"
QUARANTINE_DIR = "quarantine"
INTENT_SCHEMA = "golden.intent/1"
IMPORTED = "imported"
ACTION = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
BLOB_NAME = re.compile(r"^(?P<digest>[0-9a-f]{64})\.json$")
# the temp file atomic_write_bytes / write_temp makes for a name: "." + name + "." + mkstemp's 8 + ".tmp"
LONE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


@dataclass(frozen=True, slots=True)
class Ledger:
    """The ledger file as read: committed entries, a torn tail, unreadable lines.

    A last line that parses is committed whether or not its newline made it (``missing_newline``);
    a tail that is the beginning of a line that never finished is ``torn_tail``.
    """

    entries: tuple[LedgerEntry, ...] = ()
    committed_bytes: int = 0
    torn_tail: bytes = b""
    bad_lines: tuple[tuple[int, str], ...] = ()
    entry_docs: tuple[dict[str, Any], ...] = field(default=(), repr=False)  # each entry's JSON, as read
    entry_lines: tuple[bytes, ...] = field(default=(), repr=False)  # and its line's bytes
    missing_newline: bool = False
    exists: bool = False


def read_bytes(path: Path) -> bytes | None:
    """A store file's bytes (None: absent); never through a symlink, never blocking on a pipe."""
    return read_regular(path)

def ledger_path(case_dir: Path) -> Path:
    return case_dir / HISTORY_DIR / LEDGER_FILE


def objects_dir(case_dir: Path) -> Path:
    return case_dir / HISTORY_DIR / OBJECTS_DIR


def intent_path(case_dir: Path) -> Path:
    return case_dir / HISTORY_DIR / INTENT_FILE


def lock_path(case_dir: Path) -> Path:
    return case_dir / HISTORY_DIR / LOCK_FILE


def quarantine_dir(case_dir: Path) -> Path:
    return case_dir / HISTORY_DIR / QUARANTINE_DIR


def blob_path(case_dir: Path, digest: str) -> Path:
    if not HASH.match(digest):
        raise StoreError(f"invalid blob name {digest[:80]!r}: not 64 hex digits")
    return objects_dir(case_dir) / f"{digest}.json"


def _history_folders(case_dir: Path, *names: str) -> None:
    """Refuse to read through ``.golden`` (and ``names`` below it) unless each is a real folder or absent."""
    history = case_dir / HISTORY_DIR
    require_safe([(history, FOLDER), *((history / name, FOLDER) for name in names)])


def read_blob(case_dir: Path, digest: str) -> bytes | None:
    """A version's bytes from its blob (None: absent), never through a symlinked folder or blob."""
    _history_folders(case_dir, OBJECTS_DIR)
    return read_bytes(blob_path(case_dir, digest))


def key_order(key: GoldenKey) -> tuple[str, str, int]:
    return key.env, key.platform, key.phase


def plain_golden_files(case_dir: Path) -> list[Path]:
    """The case folder's golden files: regular files with a golden name (a symlink is not one)."""
    found = []
    with os.scandir(case_dir) as it:
        for entry in it:
            if parse_golden_filename(entry.name) and entry.is_file(follow_symlinks=False):
                found.append(Path(entry.path))
    return sorted(found)


def file_state(entries: list[LedgerEntry] | tuple[LedgerEntry, ...]) -> dict[str, str | None]:
    """filename → hash (None: removed) after applying ``entries`` in order."""
    state: dict[str, str | None] = {}
    for entry in entries:
        for filename, record in entry.files.items():
            state[filename] = record.hash
    return state


def checked_filename(key: GoldenKey) -> str:
    """The key's file name, refused unless it is safe, fits a file name and reads back as the same key."""
    check_name(key.env, "env")
    check_name(key.platform, "platform")
    filename = key.filename()
    if key.phase not in (1, 2) or parse_golden_filename(filename) != (key.env, key.platform, key.phase):
        raise StoreError(f"{key.case}: env {key.env!r} / platform {key.platform!r} / phase {key.phase!r} do not "
                         f"make a golden file name that reads back (env: letters and digits only)")
    return plain_name(filename, "golden file name")


# ---------------------------------------------------------------- the layout: real folders, regular files

def layout_problems(case_dir: Path) -> list[tuple[Path, str]]:
    """Every store path of the case that is a symlink or the wrong kind of file: (path, why).

    Looked at with lstat, never followed; a write refuses while any is found, fsck reports them.
    """
    found: list[tuple[Path, str]] = []

    def check(path: Path, expected: str) -> bool:
        why = path_problem(path, expected)
        if why is not None:
            found.append((path, why))
        return why is None and os.path.lexists(path)

    history = case_dir / HISTORY_DIR
    if check(history, FOLDER):
        for name, expected in ((LEDGER_FILE, FILE), (LOCK_FILE, FILE), (INTENT_FILE, FILE), (QUARANTINE_DIR, FOLDER)):
            check(history / name, expected)
        objects = history / OBJECTS_DIR
        if check(objects, FOLDER):
            with os.scandir(objects) as it:
                for entry in sorted(it, key=lambda e: e.name):
                    check(Path(entry.path), FILE)
    with os.scandir(case_dir) as it:
        for entry in sorted(it, key=lambda e: e.name):
            if parse_golden_filename(entry.name) or our_temp(entry.name, case_dir) is not None:
                check(Path(entry.path), FILE)
    return found


def require_safe_layout(case: str, case_dir: Path) -> None:
    """Refuse a write (before anything is made, the lock included) while a store path is unsafe."""
    problems = layout_problems(case_dir)
    if problems:
        path, why = problems[0]
        raise StoreError(f"{case}: refusing to use {path}: it {why}; nothing written, run golden fsck")


def _ours(target: str, folder: Path) -> bool:
    """Whether a temp file for ``target`` in ``folder`` is one the ledger's writers make."""
    if folder.name == OBJECTS_DIR:
        return BLOB_NAME.match(target) is not None
    if folder.name == HISTORY_DIR:
        return target == INTENT_FILE
    return parse_golden_filename(target) is not None and "/" not in target


def our_temp(name: str, folder: Path) -> str | None:
    """The name a temp file of ours in ``folder`` was for, or None when ``name`` is not one."""
    target = temp_target(name)
    return target if target is not None and _ours(target, folder) else None


def temp_files(case_dir: Path) -> list[Path]:
    """Temp files our own writers left (exact names, regular files) in the case folder, .golden, objects."""
    return sorted(path for folder in (case_dir, case_dir / HISTORY_DIR, objects_dir(case_dir))
                  for path in temp_files_in(folder, partial(_ours, folder=folder)))


# ---------------------------------------------------------------- what a write stores, checked first

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
    for name in ("approver", "reason", "source_run_id", "fingerprint"):
        try:
            canonical_json(meta[name])
        except ValueError:
            raise StoreError(f"{name} is not valid Unicode text") from None
    return meta


# ---------------------------------------------------------------- the ledger on disk

class _Torn(ValueError):
    """The bytes are the beginning of a JSON line that was never finished."""


def parse_line(line: bytes) -> tuple[dict[str, Any], LedgerEntry]:
    """One ledger line → its JSON and its entry (``ValueError`` saying why it is unreadable)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":
            raise _Torn("cut inside a character") from None
        raise ValueError(f"not UTF-8 text (byte {exc.start})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
            raise _Torn(exc.msg) from None
        raise ValueError(f"{exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if LONE_SURROGATE.search(line):
        canonical_json(doc)  # UnicodeEncodeError (a ValueError) on a lone surrogate
    return doc, LedgerEntry.from_json(doc)


def read_ledger(case_dir: Path) -> Ledger:
    _history_folders(case_dir)
    data = read_bytes(ledger_path(case_dir))
    exists = data is not None
    data = data or b""
    lines = data.split(b"\n")
    tail = lines.pop()  # the bytes after the last newline
    entries: list[LedgerEntry] = []
    docs: list[dict[str, Any]] = []
    raws: list[bytes] = []
    bad: list[tuple[int, str]] = []
    last_parsed = False
    for number, line in enumerate(lines + ([tail] if tail else []), start=1):
        last_parsed = False
        try:
            doc, entry = parse_line(line)
        except _Torn:
            if number <= len(lines):  # a whole line cut short, then more lines: damage, not a torn write
                bad.append((number, "cut short"))
                continue
            return Ledger(tuple(entries), len(data) - len(tail), tail, tuple(bad), tuple(docs), tuple(raws),
                          False, exists)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            bad.append((number, str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__))
            continue
        entries.append(entry)
        docs.append(doc)
        raws.append(line)
        last_parsed = True
    return Ledger(tuple(entries), len(data), b"", tuple(bad), tuple(docs), tuple(raws), bool(tail) and last_parsed,
                  exists)


_OWN_HASH = re.compile(rb'"entry_hash":"([0-9a-f]{64})",')


def hashes_to_itself(line: bytes, doc: dict[str, Any]) -> bool:
    """Whether an entry hashes to its own ``entry_hash``. A line as our writer makes it is the
    canonical JSON, so the hash is of its bytes less that one member (the first: keys are sorted,
    and no key before it holds an object) — one sha256 per line, no re-encoding; any other line is
    re-encoded canonically first."""
    own = _OWN_HASH.search(line)
    if own is not None and sha256_hex(line[:own.start()] + line[own.end():]) == doc.get("entry_hash"):
        return True
    return entry_hash_of(doc) == doc.get("entry_hash")


def chain_breaks(ledger: Ledger) -> list[str]:
    """Where the hash chain does not hold: versions 1, 2, … in order, each linked to the one
    before, each hashing to its own ``entry_hash`` (an edit, a reorder, a dropped or repeated line)."""
    breaks = []
    previous = None
    rows = zip(ledger.entry_lines, ledger.entry_docs, ledger.entries, strict=True)  # read together, one per line
    for number, (line, doc, entry) in enumerate(rows, start=1):
        if entry.version != number:
            breaks.append(f"entry {number} says version {entry.version}")
        if entry.prev_entry_hash != previous:
            breaks.append(f"v{entry.version}: prev_entry_hash does not match the entry before it (chain broken)")
        if not hashes_to_itself(line, doc):
            breaks.append(f"v{entry.version}: entry_hash does not match its content (entry altered)")
        previous = entry.entry_hash
    return breaks


def has_blobs(case_dir: Path, ignore: Collection[str] = frozenset()) -> bool:
    """Whether the objects folder holds a blob (``ignore``: blobs known to be a write's temporaries)."""
    objects = objects_dir(case_dir)
    if path_problem(objects, FOLDER) is not None or not objects.is_dir():
        return False
    with os.scandir(objects) as it:
        return any((m := BLOB_NAME.match(e.name)) and m["digest"] not in ignore for e in it)


def ledger_damage(case: str, case_dir: Path, ledger: Ledger, *, breaks: list[str] | None = None,
                  ignore: Collection[str] = frozenset()) -> list[tuple[str, str]]:
    """(kind, message) for each reason the ledger cannot be trusted as the whole history: an
    unreadable line, a broken chain (``breaks`` when already computed), or no ledger beside blobs
    (``ignore``: blobs a write in progress added)."""
    damage = [("unreadable-ledger-line", f"ledger line {line} is unreadable ({why})") for line, why in ledger.bad_lines]
    damage += [("ledger-chain", why) for why in (chain_breaks(ledger) if breaks is None else breaks)]
    if not ledger.entries and not ledger.bad_lines and has_blobs(case_dir, ignore):
        what = "empty" if ledger.exists else "missing"
        damage.append(("missing-ledger", f"{HISTORY_DIR}/{LEDGER_FILE} is {what} but {HISTORY_DIR}/{OBJECTS_DIR} "
                                         f"holds blobs: restore the ledger (the blobs stay until it is)"))
    return damage


def checked_ledger(case: str, case_dir: Path) -> Ledger:
    """The ledger for reading: every line readable, versions 1, 2, … each linked to the one before
    (so vN is the N-th line); whether each entry hashes to its own hash is fsck's to check."""
    ledger = read_ledger(case_dir)
    if ledger.bad_lines:
        line, why = ledger.bad_lines[0]
        raise StoreError(f"{case}: ledger line {line} is unreadable ({why}); run golden fsck")
    previous = None
    for number, entry in enumerate(ledger.entries, start=1):
        if entry.version != number or entry.prev_entry_hash != previous:
            raise StoreError(f"{case}: ledger line {number} ({'v' + str(entry.version)}) does not follow the line "
                             f"before it (lines reordered, repeated or dropped); run golden fsck")
        previous = entry.entry_hash
    return ledger


def append_line(path: Path, line: bytes) -> None:
    """Append one ledger line and fsync it: the commit point."""
    created = not os.path.lexists(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)


# ---------------------------------------------------------------- the intent of a write under way

def write_intent(case_dir: Path, head: LedgerEntry | None, blobs: list[str]) -> None:
    doc = {"schema": INTENT_SCHEMA, "base": head.entry_hash if head else None, "blobs": sorted(blobs)}
    atomic_write_bytes(intent_path(case_dir), canonical_json(doc) + b"\n")


def read_intent(case_dir: Path) -> tuple[str | None, list[str]] | None:
    """(the head the write built on, the blobs it added); None when there is none; ValueError when
    the file is not one of ours."""
    data = read_bytes(intent_path(case_dir))
    if data is None:
        return None
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise ValueError("not JSON") from None
    if not isinstance(doc, dict) or doc.get("schema") != INTENT_SCHEMA:
        raise ValueError(f"not a {INTENT_SCHEMA} record")
    base, blobs = doc.get("base"), doc.get("blobs")
    if not (base is None or (isinstance(base, str) and HASH.match(base))) or not isinstance(blobs, list) \
            or not all(isinstance(b, str) and HASH.match(b) for b in blobs):
        raise ValueError("base and blobs must be 64-hex-digit hashes")
    return base, blobs


def clear_intent(case_dir: Path) -> None:
    intent_path(case_dir).unlink(missing_ok=True)


# ---------------------------------------------------------------- the write

def commit(case_dir: Path, entries: list[LedgerEntry], payload: Mapping[str, bytes | None], *, approver: str,
            reason: str, action: str, source_run_id: str | None, fingerprint: str | None,
            provenance: dict[str, Any] | None) -> LedgerEntry:
    """Intent, blobs, temp files, then the ledger line (commit), then the plain files. Caller holds
    the lock and has checked the layout and the ledger.

    The entry is made (and anything wrong with it raised) before the first byte is written. An
    import records the plain files as they are, so it leaves them untouched.
    """
    state = file_state(entries)
    records: dict[str, FileRecord] = {}
    for filename, data in payload.items():
        previous = state.get(filename)
        previous_bytes = None if previous is None else read_blob(case_dir, previous)
        digest = None if data is None else sha256_hex(data)
        records[filename] = FileRecord(digest, previous, summary_or_none(previous_bytes, data, filename))
    head = entries[-1] if entries else None
    entry_json = LedgerEntry(
        version=(head.version if head else 0) + 1, time=now_iso(), approver=approver, reason=reason, action=action,
        source_run_id=source_run_id, fingerprint=fingerprint, provenance=provenance, files=records,
        prev_entry_hash=head.entry_hash if head else None, entry_hash="").to_json()
    entry_json["entry_hash"] = entry_hash_of(entry_json)
    try:
        line = canonical_json(entry_json) + b"\n"
        entry = LedgerEntry.from_json(entry_json)  # what any reader will accept, checked before writing
    except (TypeError, ValueError) as exc:
        raise StoreError(f"cannot record this version: {exc}") from None
    blobs = {sha256_hex(d): d for d in payload.values() if d is not None}
    new_blobs = {digest: data for digest, data in blobs.items() if read_blob(case_dir, digest) != data}
    replaced = {} if action == IMPORTED else dict(payload)
    if new_blobs:
        write_intent(case_dir, head, list(new_blobs))
    temps: dict[str, Path] = {}
    try:
        for digest, data in new_blobs.items():
            atomic_write_bytes(blob_path(case_dir, digest), data)
        for filename, data in replaced.items():
            if data is not None:
                temps[filename] = write_temp(case_dir / filename, data)
        append_line(ledger_path(case_dir), line)  # ---- COMMIT POINT
        for filename, data in replaced.items():
            if data is None:
                (case_dir / filename).unlink(missing_ok=True)
            else:
                install(temps[filename], case_dir / filename)
                del temps[filename]
    finally:
        for tmp in temps.values():  # an interrupted write leaves no temp file behind it
            tmp.unlink(missing_ok=True)
    if replaced:
        fsync_dir(case_dir)
    clear_intent(case_dir)
    return entry


def untracked(case_dir: Path, entries: list[LedgerEntry]) -> dict[str, bytes | None]:
    """Plain golden files whose bytes the ledger head does not hold (None: a tracked file deleted)."""
    state = file_state(entries)
    found: dict[str, bytes | None] = {}
    for path in plain_golden_files(case_dir):
        data = read_bytes(path) or b""
        if state.get(path.name) != sha256_hex(data):
            found[path.name] = data
    for filename, digest in state.items():
        if digest is not None and not os.path.lexists(case_dir / filename):
            found[filename] = None
    return found


def commit_untracked(case_dir: Path, entries: list[LedgerEntry], *, approver: str, reason: str
                      ) -> LedgerEntry | None:
    """Record changed/untracked plain files as an "imported" version (plain files untouched)."""
    found = untracked(case_dir, entries)
    for name in found:
        plain_name(name, "golden file name")  # a file on disk may still be too long to write back
    if not found:
        return None
    return commit(case_dir, entries, found, approver=approver, reason=reason, action=IMPORTED,
                  source_run_id=None, fingerprint=None, provenance=None)
