"""Recovery and the integrity check of a ledger store.

Recovery (before every write, and in ``fsck``) finishes what a crash can leave: a torn trailing
ledger line is dropped (never committed), a committed last line that lost its newline gets it,
the blobs of a write that never committed are deleted — the write's intent record proves they
are this store's uncommitted temporaries — and the plain files are rolled forward to the last
committed entry. So a crash at any instant leaves the old or the new version.

Nothing else is ever deleted. A store path that is a symlink or the wrong kind of file stops all
repair of that case (``unsafe-path``); a ledger that is missing, unreadable or whose chain is
broken is an error to repair by hand, and while it is, no blob is touched; a file in the objects
folder that no entry references and no intent accounts for is moved to ``.golden/quarantine/``
with a report (an error: fsck exits 1 so a person looks).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import StoreError
from ..files.atomic import atomic_write_bytes, fsync_dir
from ..files.validate import ERROR
from .ledger import (
    BLOB_NAME,
    HISTORY_DIR,
    IMPORTED,
    INTENT_FILE,
    Ledger,
    LedgerEntry,
    append_line,
    blob_path,
    chain_breaks,
    clear_intent,
    file_state,
    intent_path,
    layout_problems,
    ledger_damage,
    ledger_path,
    objects_dir,
    our_temp,
    quarantine_dir,
    read_blob,
    read_bytes,
    read_intent,
    read_ledger,
    temp_files,
    untracked,
)
from .records import Problem, sha256_hex
from .safety import QUARANTINE_REPORT, quarantine

WARNING = "warning"


@dataclass
class _Recovered:
    """What recovery found, for fsck to go on from."""

    problems: list[Problem] = field(default_factory=list)
    ledger: Ledger = field(default_factory=Ledger)
    safe: bool = True          # every store path a real folder or regular file
    intact: bool = False       # the ledger is the whole history: readable, chained, present
    uncommitted: set[str] = field(default_factory=set)  # blobs of a write that never committed (still there)
    bad_intent: str | None = None


def _rel(case_dir: Path, path: Path) -> str:
    return path.relative_to(case_dir).as_posix() if path.is_relative_to(case_dir) else str(path)


def _recover(case: str, case_dir: Path, repair: bool) -> _Recovered:
    out = _Recovered()
    unsafe = layout_problems(case_dir)
    if unsafe:
        out.safe = False
        out.problems = [Problem(case, "unsafe-path", f"{_rel(case_dir, path)} {why}", path=str(path))
                        for path, why in unsafe]
        return out
    ledger = read_ledger(case_dir)
    out.problems += _finish_last_line(case, case_dir, ledger, repair)
    if repair and (ledger.torn_tail or ledger.missing_newline):
        ledger = read_ledger(case_dir)
    for tmp in temp_files(case_dir):
        if repair:
            tmp.unlink(missing_ok=True)
        out.problems.append(Problem(case, "stale-temp-file", f"temp file of an interrupted write: {tmp.name}",
                                    severity=WARNING, repaired=repair, path=str(tmp)))
    breaks = chain_breaks(ledger)
    if not ledger.bad_lines and not breaks:
        out.problems += _uncommitted_write(case, case_dir, ledger, repair, out)
    damage = ledger_damage(case, case_dir, ledger, breaks=breaks, ignore=out.uncommitted)
    out.problems += [Problem(case, kind, message, path=str(ledger_path(case_dir))) for kind, message in damage]
    out.ledger, out.intact = ledger, not damage
    if out.intact and ledger.entries and ledger.entries[-1].action != IMPORTED:
        out.problems += _roll_forward(case, case_dir, ledger.entries[-1], repair)
    return out


def _finish_last_line(case: str, case_dir: Path, ledger: Ledger, repair: bool) -> list[Problem]:
    path = ledger_path(case_dir)
    if ledger.torn_tail:
        if repair:
            fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
            try:
                os.ftruncate(fd, ledger.committed_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
        return [Problem(case, "torn-ledger-line", f"{'dropped' if repair else 'fsck drops'} a torn trailing ledger "
                                                  f"line, never committed ({len(ledger.torn_tail)} bytes)",
                        severity=WARNING, repaired=repair, path=str(path))]
    if ledger.missing_newline:
        if repair:
            append_line(path, b"\n")
        return [Problem(case, "missing-newline", f"the last ledger line (v{ledger.entries[-1].version}) is complete "
                                                 f"but lacks its newline; {'added' if repair else 'fsck adds'} it",
                        severity=WARNING, repaired=repair, path=str(path))]
    return []


def _uncommitted_write(case: str, case_dir: Path, ledger: Ledger, repair: bool, out: _Recovered) -> list[Problem]:
    """A write's intent on top of the current head: it never committed, so the blobs it added (and
    no entry references) are its temporaries. An intent on another head is done with."""
    try:
        intent = read_intent(case_dir)
    except ValueError as exc:
        out.bad_intent = str(exc)
        return []
    if intent is None:
        return []
    base, blobs = intent
    head = ledger.entries[-1].entry_hash if ledger.entries else None
    referenced = _referenced(ledger)
    problems = []
    if base == head:
        for digest in blobs:
            path = blob_path(case_dir, digest)
            data = read_bytes(path)
            if digest in referenced or data is None or sha256_hex(data) != digest:
                continue  # not this write's blob after all: fsck looks at it like any other
            if repair:
                path.unlink()
            else:
                out.uncommitted.add(digest)
            problems.append(Problem(case, "orphan-blob", f"blob {digest[:12]}… from a write that never committed",
                                    severity=WARNING, repaired=repair, path=str(path)))
    if repair:
        clear_intent(case_dir)
    return problems


def _roll_forward(case: str, case_dir: Path, head: LedgerEntry, repair: bool) -> list[Problem]:
    """Only the head entry can be incomplete (every write recovers first): a file of the head that
    still holds the entry's *previous* bytes is rolled forward from its blob."""
    problems = []
    for filename, record in head.files.items():
        target = case_dir / filename
        data = read_bytes(target)
        current = None if data is None else sha256_hex(data)
        if current == record.hash or current != record.previous_hash:
            continue  # done, or changed outside the store (fsck reports that)
        blob = None if record.hash is None else read_blob(case_dir, record.hash)
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
                                severity=WARNING, repaired=repair, path=str(target)))
    return problems


def _referenced(ledger: Ledger) -> set[str]:
    """Every blob a readable ledger line names, as the new content or the previous one."""
    return {h for e in ledger.entries for r in e.files.values() for h in (r.hash, r.previous_hash) if h is not None}


def recover(case: str, case_dir: Path, *, repair: bool) -> list[Problem]:
    return _recover(case, case_dir, repair).problems


def recover_or_refuse(case: str, case_dir: Path) -> Ledger:
    """Recover before a write and return the ledger to append to: whole, its chain holding (every
    entry hashing to itself, each linked to the one before). Refused — nothing written, naming
    fsck — while anything is left that needs a person."""
    found = _recover(case, case_dir, repair=True)
    unrepaired = [p for p in found.problems if p.severity == ERROR and not p.repaired]
    if found.bad_intent is not None:
        unrepaired.append(Problem(case, "unplaced-file", f"{HISTORY_DIR}/{INTENT_FILE} is not a write intent of "
                                                         f"this store ({found.bad_intent})"))
    if unrepaired:
        raise StoreError(f"{case}: {unrepaired[0].message}; nothing written, run golden fsck {case}")
    return found.ledger


def fsck_case(case: str, case_dir: Path, *, repair: bool) -> list[Problem]:
    found = _recover(case, case_dir, repair)
    problems = found.problems
    if not found.safe:
        return problems
    ledger = found.ledger
    referenced = _referenced(ledger)
    objects = objects_dir(case_dir)
    present: dict[str, Path] = {}
    unplaced: list[tuple[Path, str]] = []
    if objects.is_dir():
        with os.scandir(objects) as it:
            for entry in sorted(it, key=lambda e: e.name):
                match = BLOB_NAME.match(entry.name)
                if match is None:
                    if our_temp(entry.name, objects) is None:  # a temp file of ours is recovery's
                        unplaced.append((Path(entry.path), "not a blob of this store"))
                    continue
                present[match["digest"]] = Path(entry.path)
    recorded = {r.hash for e in ledger.entries for r in e.files.values() if r.hash is not None}
    for digest in sorted(recorded - present.keys()):
        problems.append(Problem(case, "missing-blob", f"blob {digest[:12]}… referenced by the ledger is missing",
                                path=str(blob_path(case_dir, digest))))
    for digest, path in sorted(present.items()):
        if digest in found.uncommitted:
            continue
        intact_bytes = sha256_hex(read_bytes(path) or b"") == digest
        if digest in referenced:
            if not intact_bytes:
                problems.append(Problem(case, "blob-hash-mismatch", f"blob {path.name} does not hash to its name",
                                        path=str(path)))
        else:
            unplaced.append((path, "a blob no ledger entry references and no interrupted write accounts for"
                             + ("" if intact_bytes else ", and it does not hash to its name")))
    if found.bad_intent is not None:
        unplaced.append((intent_path(case_dir), f"not a write intent of this store ({found.bad_intent})"))
    problems += _place(case, case_dir, unplaced, repair=repair, intact=found.intact)
    if found.intact and ledger.entries:
        pending = {p.path for p in problems if p.kind == "interrupted-write" and not p.repaired}
        problems += [p for p in check_plain_files(case, case_dir, list(ledger.entries)) if p.path not in pending]
    if not (unplaced and repair and found.intact):  # what was just moved is reported above
        problems += _waiting_in_quarantine(case, case_dir)
    return problems


def _place(case: str, case_dir: Path, unplaced: list[tuple[Path, str]], *, repair: bool,
           intact: bool) -> list[Problem]:
    """What fsck cannot place: kept where it is while the ledger is damaged (the ledger may yet
    name it), else moved to quarantine with a report. Never deleted."""
    if not unplaced:
        return []
    if not intact:
        return [Problem(case, "unplaced-file", f"{_rel(case_dir, path)}: {why}; kept where it is until the ledger "
                                               f"is repaired", severity=WARNING, path=str(path))
                for path, why in unplaced]
    if not repair:
        return [Problem(case, "unplaced-file", f"{_rel(case_dir, path)}: {why}; fsck moves it to quarantine",
                        path=str(path)) for path, why in unplaced]
    folder = quarantine(quarantine_dir(case_dir), unplaced, store=str(case_dir))
    return [Problem(case, "quarantined", f"moved {_rel(case_dir, path)} to {_rel(case_dir, folder)}/ ({why}); "
                                         f"see {QUARANTINE_REPORT} there, then delete that folder",
                    path=str(folder)) for path, why in unplaced]


def _waiting_in_quarantine(case: str, case_dir: Path) -> list[Problem]:
    folder = quarantine_dir(case_dir)
    if not folder.is_dir():
        return []
    batches = sorted(p for p in folder.iterdir() if not p.is_symlink() and p.is_dir())
    items = sum(1 for batch in batches for p in batch.iterdir() if p.name != QUARANTINE_REPORT)
    if not items:
        return []
    return [Problem(case, "quarantine", f"{items} file(s) fsck could not place wait in {_rel(case_dir, folder)}/ "
                                        f"({len(batches)} batch(es)); read each {QUARANTINE_REPORT}, then delete them",
                    severity=WARNING, path=str(folder))]


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
                                severity=ERROR if tracked else WARNING, path=str(case_dir / filename)))
    return problems
