"""Recovery and the integrity check of a ledger store.

Recovery (before every write, and in ``fsck``) drops a torn trailing ledger line (never
committed) and rolls the plain files forward to the last committed entry (its blobs exist: they
were written before the commit). So a crash at any instant leaves the old or the new version, and
after recovery the ledger agrees. ``fsck`` also checks the chain, the blobs and the plain files.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..atomic import atomic_write_bytes, fsync_dir
from ..validate import ERROR
from ..errors import StoreError
from .ledger import (HASH, IMPORTED, LedgerEntry, blob_path, file_state, ledger_path, objects_dir, read_bytes,
                     read_ledger, untracked)
from .records import Problem, entry_hash_of, sha256_hex


def recover(case: str, case_dir: Path, *, repair: bool) -> list[Problem]:
    """Undo what a crash can leave: a torn ledger tail, a half-replaced set of plain files, temp files.

    Only the head entry can be incomplete (every write recovers first): a file of the head that
    still holds the entry's *previous* bytes is rolled forward from its blob.
    """
    problems: list[Problem] = []
    ledger_file = ledger_path(case_dir)
    for tmp in sorted([*case_dir.glob(".golden_values_*.tmp"), *objects_dir(case_dir).glob(".*.tmp")]):
        if repair:
            tmp.unlink(missing_ok=True)
        problems.append(Problem(case, "stale-temp-file", f"temp file of an interrupted write: {tmp.name}",
                                severity="warning", repaired=repair, path=str(tmp)))
    ledger = read_ledger(case_dir)
    if ledger.torn_tail:
        if repair:
            with open(ledger_file, "r+b") as fh:
                fh.truncate(ledger.committed_bytes)
                fh.flush()
                os.fsync(fh.fileno())
        problems.append(Problem(case, "torn-ledger-line",
                                f"dropped an uncommitted trailing ledger line ({len(ledger.torn_tail)} bytes)",
                                severity="warning", repaired=repair, path=str(ledger_file)))
    if ledger.bad_lines or not ledger.entries or ledger.entries[-1].action == IMPORTED:
        return problems  # an import never touches the plain files, so it cannot be half done
    head = ledger.entries[-1]
    for filename, record in head.files.items():
        target = case_dir / filename
        data = read_bytes(target)
        current = None if data is None else sha256_hex(data)
        if current == record.hash or current != record.previous_hash:
            continue  # done, or changed outside the store (fsck reports that)
        blob = None if record.hash is None else read_bytes(blob_path(case_dir, record.hash))
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


def recover_or_refuse(case: str, case_dir: Path) -> None:
    unrepaired = [p for p in recover(case, case_dir, repair=True) if p.severity == ERROR and not p.repaired]
    if unrepaired:
        raise StoreError(f"{case}: {unrepaired[0].message}; nothing written, run golden fsck")


def fsck_case(case: str, case_dir: Path, *, repair: bool) -> list[Problem]:
    problems = recover(case, case_dir, repair=repair)
    ledger = read_ledger(case_dir)
    for line, why in ledger.bad_lines:
        problems.append(Problem(case, "unreadable-ledger-line", f"ledger line {line}: {why}",
                                path=str(ledger_path(case_dir))))
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
    problems += check_blobs(case, case_dir, referenced, repair=repair)
    if not ledger.bad_lines and ledger.entries:
        pending = {p.path for p in problems if p.kind == "interrupted-write" and not p.repaired}
        problems += [p for p in check_plain_files(case, case_dir, list(ledger.entries)) if p.path not in pending]
    return problems


def check_blobs(case: str, case_dir: Path, referenced: set[str], *, repair: bool) -> list[Problem]:
    problems = []
    objects = objects_dir(case_dir)
    present = {p.stem: p for p in objects.glob("*.json")} if objects.is_dir() else {}
    for digest in sorted(referenced - present.keys()):
        problems.append(Problem(case, "missing-blob", f"blob {digest[:12]}… referenced by the ledger is missing",
                                path=str(blob_path(case_dir, digest))))
    for digest, path in sorted(present.items()):
        if not HASH.match(digest) or sha256_hex(read_bytes(path) or b"") != digest:
            problems.append(Problem(case, "blob-hash-mismatch", f"blob {path.name} does not hash to its name",
                                    path=str(path)))
        elif digest not in referenced:
            if repair:
                path.unlink()
            problems.append(Problem(case, "orphan-blob", f"blob {digest[:12]}… from an uncommitted write",
                                    severity="warning", repaired=repair, path=str(path)))
    return problems


def check_plain_files(case: str, case_dir: Path, entries: list[LedgerEntry]) -> list[Problem]:
    head = entries[-1].version
    problems = []
    for filename, data in untracked(case_dir, entries).items():
        tracked = filename in file_state(entries)
        if data is None:
            message = f"{filename} is missing but v{head} has it"
        elif tracked:
            message = f"{filename} differs from v{head} (changed outside the store; golden adopt records it)"
        else:
            message = f"{filename} is not in the history (golden adopt records it)"
        problems.append(Problem(case, "plain-file-differs" if tracked else "untracked-file", message,
                                severity=ERROR if tracked else "warning", path=str(case_dir / filename)))
    return problems

