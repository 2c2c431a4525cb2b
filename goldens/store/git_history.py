"""The git backend: in a git work tree, git is the history of the goldens.

Versions. A version of a golden file is a commit that changed it (``CASE@<commit>``; any revision
git resolves works: ``CASE@HEAD~1``, a tag, a branch), plus the work tree's uncommitted change
(``worktree``). ``CASE@vN`` means nothing stable in git — numbers would change with every merge —
so it is refused with a pointer to ``golden history``, unless git itself knows a revision ``vN``.

Provenance. An approval writes the golden and its approval record (``approvals``) into the work
tree; the user commits both with the pull request. A version is attributed to the record
committed with it when the record's hash equals the golden's bytes there; a ledger entry
committed in the same commit (a store from before the migration) attributes it the same way.
Anything else — a plain copy and commit, Megatron's download script — is an unattributed version:
a note in ``golden history``, never an error.

Writes, under the store's lock (``<store>/.golden-store/lock``): every file of the write — goldens
and records, possibly of many cases — goes into one journal (``<store>/.golden-store/journal.json``,
written atomically: THE COMMIT POINT), then each file is replaced atomically, then the journal is
removed. A crash before the journal leaves the old state; after it, recovery (before every write,
and in ``fsck``) finishes the journal. ``.golden-store/`` ignores itself in git. Only paths inside the
store are touched, never through a symbolic link, and nothing is written when CI is set unless the
caller allows it deliberately.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ..core.errors import StoreError
from ..files.atomic import atomic_write_bytes, fsync_dir
from ..files.case import check_case_path
from ..files.formats.golden import parse_golden_filename
from ..files.gitrepo import Change, Commit, GitRepo
from ..files.validate import ERROR, WARNING
from .approvals import RECORDS_DIR, ApprovalRecord, golden_name, record_name, repository_relative
from .backend import GIT
from .ledger import IMPORTED, plain_golden_files
from .records import FileRecord, LedgerEntry, Problem, now_iso, run_provenance, sha256_hex, summary_or_none
from .safety import FILE, FOLDER, make_folder, path_problem, read_regular, require_safe, shared_lock, temp_files_in
from .versions import UNATTRIBUTED, WORKTREE, Version, VersionConflict

STORE_DIR = ".golden-store"
LOCK_FILE = "lock"
JOURNAL_FILE = "journal.json"
JOURNAL_SCHEMA = "golden.journal/1"
LEGACY_LEDGER = ".golden/ledger.jsonl"
NOTE = "note"  # a finding that is no problem: an unattributed golden


@dataclass
class CaseWrite:
    """What one case gets in a write: golden bytes (None: remove) and one record per golden file it
    attributes (a file recorded but not in ``goldens`` keeps its bytes: a re-approval, an adopt)."""

    case: str
    case_dir: Path
    goldens: dict[str, bytes | None]
    records: dict[str, dict[str, Any]]        # file → meta (action, approver, reason, time, run, fingerprint…)
    expected: dict[str, str | None] | None = None   # file → sha256 it must still hold (None: absent)
    versions: list[Version] = field(default_factory=list)


def _parse_entries(data: bytes) -> list[LedgerEntry]:
    entries = []
    for line in data.splitlines():
        try:
            entries.append(LedgerEntry.from_json(json.loads(line)))
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
    return entries


def _is_record_or_ledger(relative: str) -> bool:
    return relative == LEGACY_LEDGER or (relative.startswith(RECORDS_DIR + "/") and relative.count("/") == 1)


def _case_folder_of(path: str) -> str:
    """The case folder a changed file belongs to: its own folder, or the one above ``.approvals/``
    (a record) or ``.golden/`` (the legacy ledger)."""
    folder, _, name = path.rpartition("/")
    parent, _, last = folder.rpartition("/")
    if last == RECORDS_DIR or (last == LEGACY_LEDGER.split("/")[0] and name == LEGACY_LEDGER.split("/")[1]):
        return parent
    return folder


class GitHistory:
    """History, writes and the integrity check of a store inside a git work tree."""

    name = GIT

    def __init__(self, root: Path, repo: GitRepo, *, lock_timeout: float = 30.0):
        self.root = root
        self.repo = repo
        self.lock_timeout = lock_timeout
        self._histories: dict[str, list[Version]] = {}
        self._log: dict[str, list[Commit]] | None = None      # case folder → its commits (one git log, lazily)
        self._head: dict[str, dict[str, str]] | None = None   # folder → name → blob at HEAD (one ls-tree)

    # ------------------------------------------------------------ paths

    def _inside(self, target: Path) -> Path:
        """``target`` if it lies in the store with no symbolic link on the way; else StoreError."""
        root = Path(os.path.abspath(self.root))
        target = Path(os.path.abspath(target))
        if not target.is_relative_to(root) or target == root:
            raise StoreError(f"refusing to write {target}: outside the store {root}")
        here = root
        for part in target.relative_to(root).parts:
            here = here / part
            if here.is_symlink():
                raise StoreError(f"refusing to write {target}: {here} is a symlink (the store never follows one)")
        return target

    def record_path(self, case_dir: Path, filename: str) -> Path:
        return case_dir / RECORDS_DIR / record_name(filename)

    @property
    def store_dir(self) -> Path:
        return self.root / STORE_DIR

    @property
    def journal_path(self) -> Path:
        return self.store_dir / JOURNAL_FILE

    # ------------------------------------------------------------ reading

    def current(self, case_dir: Path, filename: str) -> bytes | None:
        return read_regular(case_dir / filename)

    def worktree_record(self, case_dir: Path, filename: str) -> ApprovalRecord | None:
        data = read_regular(self.record_path(case_dir, filename))
        if data is None:
            return None
        try:
            return ApprovalRecord.from_bytes(data, str(self.record_path(case_dir, filename)))
        except StoreError:
            return None  # fsck reports it; the golden stays readable

    def _store_log(self) -> dict[str, list[Commit]]:
        """Every commit that changed a file below the store, read by ONE ``git log`` for the whole
        store (a Megatron checkout has ~10,000 commits: never one log per case), each commit's changes
        grouped by the case folder they belong to (its golden files, ``.approvals/`` records and legacy
        ledger), oldest first."""
        if self._log is None:
            index: dict[str, list[Commit]] = {}
            for commit in self.repo.log(self.repo.prefix(self.root)):
                by_folder: dict[str, list[Change]] = {}
                for change in commit.changes:
                    by_folder.setdefault(_case_folder_of(change.path), []).append(change)
                for folder, changes in by_folder.items():
                    index.setdefault(folder, []).append(replace(commit, changes=tuple(changes)))
            self._log = index
        return self._log

    def _head_listing(self, folder: str) -> dict[str, str]:
        """name → blob of the files directly in ``folder`` at HEAD, from one ``ls-tree`` of the store."""
        if self._head is None:
            self._head = self.repo.ls_tree_folders("HEAD", self.repo.prefix(self.root)) \
                if self.repo.has_commits() else {}
        return self._head.get(folder, {})

    def may_attribute(self, case_dir: Path) -> bool:
        """Whether any version of this case can be attributed: an approval record or a legacy ledger
        was ever committed for it, or lies in its folder now. When not (a plain Megatron tree), every
        version is unattributed and ``writer_of`` is None without reading a single blob."""
        if (case_dir / RECORDS_DIR).exists() or (case_dir / LEGACY_LEDGER).exists():
            return True
        prefix = self.repo.prefix(case_dir)
        return any(_is_record_or_ledger(change.path[len(prefix) + 1:] if prefix else change.path)
                   for commit in self._store_log().get(prefix, ()) for change in commit.changes)

    def history(self, case: str, case_dir: Path) -> list[Version]:
        """The case's versions, oldest first: commits that changed its goldens, then the work tree's
        uncommitted change."""
        if case in self._histories:
            return self._histories[case]
        prefix = self.repo.prefix(case_dir)
        wanted: set[str] = set()
        touched = []
        for commit in self._store_log().get(prefix, ()):
            goldens, records, ledger = {}, {}, None
            for change in commit.changes:
                relative = change.path[len(prefix) + 1:] if prefix else change.path
                if "/" not in relative and parse_golden_filename(relative):
                    goldens[relative] = change
                    wanted.update(b for b in (change.old, change.new) if b)
                elif relative.startswith(RECORDS_DIR + "/") and relative.count("/") == 1 and change.new:
                    described = golden_name(relative.split("/")[1])
                    if described:
                        records[described] = change.new
                        wanted.add(change.new)
                elif relative == LEGACY_LEDGER and change.new:
                    ledger = change.new
                    wanted.add(change.new)
            if goldens or records:
                touched.append((commit, goldens, records, ledger))
        blobs = self.repo.read_blobs(sorted(wanted))
        versions: list[Version] = []
        latest: dict[str, bytes | None] = {}   # each golden's bytes as of the commit being read
        for commit, goldens, records, ledger in touched:
            recs = {}
            for filename, blob in records.items():
                with contextlib.suppress(StoreError):  # an unreadable committed record attributes nothing
                    recs[filename] = ApprovalRecord.from_bytes(blobs[blob], f"{commit.hash[:12]}:{RECORDS_DIR}")
            changes = {name: (blobs.get(c.old) if c.old else None, blobs.get(c.new) if c.new else None)
                       for name, c in goldens.items()}
            for name, record in recs.items():  # a record committed for bytes an earlier commit brought (adopt)
                held = latest.get(name)
                if name not in changes and held is not None and record.hash == sha256_hex(held):
                    changes[name] = (held, held)
            latest.update({name: new for name, (_, new) in changes.items()})
            if not changes:
                continue
            entries = _parse_entries(blobs[ledger]) if ledger else []
            versions += self._versions(changes, recs, entries, ref=commit.hash, commit=commit.hash,
                                       time=commit.time, author=commit.author, subject=commit.subject)
        versions += self._worktree_versions(case_dir, prefix)
        numbered = [_renumbered(v, n) for n, v in enumerate(versions, start=1)]
        self._histories[case] = numbered
        return numbered

    def _worktree_versions(self, case_dir: Path, prefix: str) -> list[Version]:
        head = {n: b for n, b in self._head_listing(prefix).items() if parse_golden_filename(n)}
        on_disk = {p.name: read_regular(p) for p in sorted(case_dir.iterdir())
                   if parse_golden_filename(p.name) and p.is_file() and not p.is_symlink()}
        head_records = self._head_listing(f"{prefix}/{RECORDS_DIR}" if prefix else RECORDS_DIR)
        changed: dict[str, tuple[str | None, bytes | None]] = {}
        readopted: dict[str, bytes] = {}
        for name in sorted(set(head) | set(on_disk)):
            data, blob = on_disk.get(name), head.get(name)
            if data is not None and blob is not None and self.repo.blob_id(data) == blob:
                record = read_regular(self.record_path(case_dir, name))
                if record is not None and self.repo.blob_id(record) != head_records.get(record_name(name)):
                    readopted[name] = data   # the same bytes, a new record (an adopt, a re-approval)
                continue
            changed[name] = (blob, data)
        if not changed and not readopted:
            return []
        old = self.repo.read_blobs([b for b, _ in changed.values() if b])
        changes = {name: (old.get(blob) if blob else None, data) for name, (blob, data) in changed.items()}
        changes.update({name: (data, data) for name, data in readopted.items()})
        recs = {name: r for name in changes if (r := self.worktree_record(case_dir, name)) is not None}
        changes = {name: c for name, c in changes.items()
                   if name in changed or (name in recs and c[1] is not None and recs[name].hash == sha256_hex(c[1]))}
        return self._versions(changes, recs, [], ref=WORKTREE, commit=None, time="", author=None, subject=None)

    def _versions(self, changes: Mapping[str, tuple[bytes | None, bytes | None]],
                  records: Mapping[str, ApprovalRecord], entries: list[LedgerEntry], *, ref: str,
                  commit: str | None, time: str, author: str | None, subject: str | None) -> list[Version]:
        """The versions one commit (or the work tree) holds: its changed files grouped by what
        attributes them — an approval record, a ledger entry, or nothing."""
        groups: dict[tuple[Any, ...], tuple[ApprovalRecord | LedgerEntry | None, dict[str, FileRecord]]] = {}
        for name, (old, new) in sorted(changes.items()):
            new_hash = None if new is None else sha256_hex(new)
            old_hash = None if old is None else sha256_hex(old)
            record = records.get(name)
            source: ApprovalRecord | LedgerEntry | None = None
            key: tuple[Any, ...]
            summary = None
            if record is not None and record.file == name and record.hash == new_hash:
                source, key = record, ("record", record.identity)
                summary = record.summary
            else:
                entry = next((e for e in reversed(entries) if name in e.files and e.files[name].hash == new_hash), None)
                if entry is not None:
                    source, key = entry, ("ledger", entry.entry_hash)
                else:
                    key = ("none",)
            if summary is None:
                summary = summary_or_none(old, new, name)
            groups.setdefault(key, (source, {}))[1][name] = FileRecord(new_hash, old_hash, summary)
        out = []
        for source, files in groups.values():
            if source is None:
                out.append(Version(ref=ref, number=0, time=time, approver=None, reason=None, action=UNATTRIBUTED,
                                   source_run_id=None, fingerprint=None, provenance=None, files=files,
                                   commit=commit, author=author, subject=subject,
                                   notes=("changed outside the golden tool (no approval record describes it)",)))
                continue
            notes = ((f"from the ledger (v{source.version}) committed with it",) if isinstance(source, LedgerEntry)
                     else ())
            out.append(Version(ref=ref, number=0, time=source.time, approver=source.approver, reason=source.reason,
                               action=source.action, source_run_id=source.source_run_id,
                               fingerprint=source.fingerprint, provenance=source.provenance, files=files,
                               commit=commit, author=author, subject=subject, notes=notes))
        return out

    def resolve(self, ref: str) -> str:
        """A version ref as git knows it; ``vN`` that git does not know is refused with the reason."""
        if ref == WORKTREE:
            return ref
        try:
            return self.repo.resolve(ref)
        except StoreError:
            if ref[:1] in "vV" and ref[1:].isdigit():
                raise StoreError(f"@{ref}: this store's history is git, so versions are commits — name one as "
                                 f"CASE@<commit> (or CASE@HEAD~1, a tag, a branch); golden history CASE lists "
                                 f"them") from None
            raise

    def version_bytes(self, case: str, case_dir: Path, ref: str) -> dict[str, bytes]:
        """The golden files of a case at ``ref`` (exact bytes), by file name."""
        resolved = self.resolve(ref)
        if resolved == WORKTREE:
            return {p.name: data for p in sorted(case_dir.iterdir())
                    if parse_golden_filename(p.name) and p.is_file() and not p.is_symlink()
                    and (data := read_regular(p)) is not None}
        listing = {n: b for n, b in self.repo.ls_folder(resolved, self.repo.prefix(case_dir)).items()
                   if parse_golden_filename(n)}
        contents = self.repo.read_blobs(list(listing.values()))
        return {name: contents[blob] for name, blob in sorted(listing.items())}

    def writer_of(self, case: str, case_dir: Path, filename: str, ref: str | None = None) -> Version | None:
        """The attributed version that wrote exactly the bytes the file holds now (or at ``ref``)."""
        if ref is None and not self.may_attribute(case_dir):
            return None
        data = (self.current(case_dir, filename) if ref is None
                else self.version_bytes(case, case_dir, ref).get(filename))
        if data is None:
            return None
        digest = sha256_hex(data)
        for version in reversed(self.history(case, case_dir)):
            written = version.files.get(filename)
            if written is not None and written.hash == digest and version.attributed:
                return version
        record = self.worktree_record(case_dir, filename) if ref is None else None
        if record is not None and record.hash == digest:  # committed long ago, beyond the log's reach
            return Version(ref="HEAD", number=0, time=record.time, approver=record.approver, reason=record.reason,
                           action=record.action, source_run_id=record.source_run_id, fingerprint=record.fingerprint,
                           provenance=record.provenance, files={filename: FileRecord(record.hash, record.previous_hash,
                                                                                     record.summary)})
        return None

    # ------------------------------------------------------------ writing

    @contextmanager
    def locked(self) -> Iterator[None]:
        self._inside(self.store_dir / LOCK_FILE)
        unsafe = self.unsafe_paths()
        if unsafe:
            path, why = unsafe[0]
            raise StoreError(f"refusing to use {path}: it {why}; nothing written, run golden fsck")
        make_folder(self.store_dir)
        lock = FileLock(str(self.store_dir / LOCK_FILE), timeout=self.lock_timeout)
        try:
            lock.acquire()
        except Timeout:
            raise StoreError(f"another writer holds the lock {self.store_dir / LOCK_FILE} "
                             f"(waited {self.lock_timeout:g} s)") from None
        try:
            # only under the lock: a holder's recovery removes temp files here, a half-written
            # .gitignore of a writer still waiting for the lock among them
            ignore = self.store_dir / ".gitignore"
            if not ignore.exists():
                atomic_write_bytes(ignore, b"*\n")  # the lock and the journal are never committed
            yield
        finally:
            lock.release()

    def record(self, case: str, case_dir: Path, payload: dict[str, bytes | None], meta: dict[str, Any], *,
               files: list[str], expected_version: int | None = None,
               expected_files: Mapping[str, str | None] | None = None) -> Version:
        """One approval: the golden bytes and an approval record (``meta``, one time for all its files)
        for each of ``files``, as one journal. ``expected_files``: file → the sha256 it was planned on."""
        stamped = dict(meta, time=now_iso())
        records = dict.fromkeys(files, stamped)
        expected = None if expected_files is None else dict(expected_files)
        (done,) = self.apply([CaseWrite(case, case_dir, payload, records, expected)])
        return done.versions[0]

    def rollback(self, case: str, case_dir: Path, ref: str, payload: dict[str, bytes | None],
                 current: Mapping[str, bytes | None], *, approver: str, reason: str) -> Version:
        """``payload`` with a record per file carrying the run of the version that wrote it at ``ref``
        (the commit ``ref`` resolves to: ``rollback_to``); ``current`` must still hold when written."""
        commit_of = self.resolve(ref)
        records, time = {}, now_iso()
        for filename, data in payload.items():
            writer = self.writer_of(case, case_dir, filename, ref) if data is not None else None
            records[filename] = {
                "approver": approver, "reason": reason, "action": "rollback", "time": time,
                "source_run_id": writer.source_run_id if writer else None,
                "fingerprint": writer.fingerprint if writer else None,
                "provenance": dict(run_provenance(writer.provenance if writer else None), rollback_to=commit_of)}
        expected = {name: None if (data := current.get(name)) is None else sha256_hex(data) for name in payload}
        (done,) = self.apply([CaseWrite(case, case_dir, payload, records, expected)])
        return done.versions[0]

    def unrecorded(self, case_dir: Path) -> list[str]:
        """The case's golden files that no approval record describes as they are."""
        out = []
        for path in plain_golden_files(case_dir):
            record = self.worktree_record(case_dir, path.name)
            if record is None or record.hash != sha256_hex(read_regular(path) or b""):
                out.append(path.name)
        return out

    def nothing_to_adopt(self, case: str, case_dir: Path) -> str | None:
        if self.unrecorded(case_dir):
            return None
        return "nothing to adopt, the golden files match their approval records"

    def adopt(self, cases: list[tuple[str, Path]], *, approver: str, reason: str) -> list[tuple[str, Version]]:
        """An approval record ("imported") for each golden file no record describes, every case in
        one journal."""
        meta = {"approver": approver, "reason": reason, "action": IMPORTED, "time": now_iso(), "source_run_id": None,
                "fingerprint": None, "provenance": None, "summary": None}
        writes = [CaseWrite(case, case_dir, {}, dict.fromkeys(self.unrecorded(case_dir), meta))
                  for case, case_dir in cases]
        self.apply(writes)
        return [(write.case, write.versions[0]) for write in writes]

    def apply(self, writes: list[CaseWrite]) -> list[CaseWrite]:
        """Write every case's goldens and records as one journal (all or nothing); each write's
        ``versions`` are filled in. ``VersionConflict`` when an expected file changed meanwhile."""
        with self.locked():
            unrepaired = [p for p in self.recover(repair=True) if p.severity == ERROR and not p.repaired]
            if unrepaired:
                raise StoreError(f"{unrepaired[0].message}; nothing written, run golden fsck")
            files: dict[Path, bytes | None] = {}
            for write in writes:
                for name, expected in (write.expected or {}).items():
                    data = self.current(write.case_dir, name)
                    if (None if data is None else sha256_hex(data)) != expected:
                        raise VersionConflict(f"{write.case}: {name} changed since it was read (someone wrote "
                                              f"in between)")
                files.update(self._files_of(write))
            if files:
                self._commit(files)
            for write in writes:
                self._histories.pop(write.case, None)
        return writes

    def _files_of(self, write: CaseWrite) -> dict[Path, bytes | None]:
        files: dict[Path, bytes | None] = {}
        groups: dict[tuple, dict[str, FileRecord]] = {}
        metas: dict[tuple, dict[str, Any]] = {}
        unsafe = self.case_unsafe_paths(write.case_dir)
        if unsafe:
            path, why = unsafe[0]
            raise StoreError(f"{write.case}: refusing to use {path}: it {why}; nothing written, run golden fsck")
        names = sorted(set(write.goldens) | set(write.records))
        befores = {name: self.current(write.case_dir, name) for name in names}
        afters = {name: write.goldens[name] if name in write.goldens else befores[name] for name in names}
        no_op = self._no_op_records(write, befores, afters)
        for name in names:
            path = self._inside(write.case_dir / name)
            before, after = befores[name], afters[name]
            if name in write.goldens and after != before:
                files[path] = after
            if name not in write.records or name in no_op:
                continue
            meta = dict(write.records[name])
            meta["provenance"] = repository_relative(meta.get("provenance"), self.repo.top)
            new_hash = None if after is None else sha256_hex(after)
            old_hash = (meta["previous_hash"] if "previous_hash" in meta
                        else None if before is None else sha256_hex(before))
            summary = meta["summary"] if "summary" in meta else summary_or_none(before, after, name)
            record = ApprovalRecord.made(name, new_hash, old_hash, summary, meta)
            files[self._inside(self.record_path(write.case_dir, name))] = record.to_bytes()
            key = record.identity
            groups.setdefault(key, {})[name] = FileRecord(new_hash, old_hash, summary)
            metas[key] = record.to_json()
        write.versions = [Version(ref=WORKTREE, number=0, time=m["time"], approver=m["approver"], reason=m["reason"],
                                  action=m["action"], source_run_id=m["source_run_id"], fingerprint=m["fingerprint"],
                                  provenance=m["provenance"], files=groups[k])
                          for k, m in metas.items()]
        return files

    def _no_op_records(self, write: CaseWrite, befores: Mapping[str, bytes | None],
                       afters: Mapping[str, bytes | None]) -> set[str]:
        """The files of a write whose bytes stay as they are and whose record already describes
        them (a resume pair's ``_2nd`` when only the 1st changed): a new record there would say
        nothing changed (hash = previous hash) and take the attribution from the approval that
        made those bytes. When nothing in the write changes, none is: re-approving the same bytes
        records its new reason."""
        unchanged = set()
        for name in write.records:
            after = afters[name]
            if after is None or after != befores[name]:
                continue
            record = self.worktree_record(write.case_dir, name)
            if record is not None and record.hash == sha256_hex(after):
                unchanged.add(name)
        return unchanged if unchanged != set(write.records) else set()

    def _relative(self, path: Path) -> str:
        return Path(os.path.abspath(path)).relative_to(Path(os.path.abspath(self.root))).as_posix()

    def _commit(self, files: dict[Path, bytes | None]) -> None:
        doc = {"schema": JOURNAL_SCHEMA,
               "files": {self._relative(p): None if d is None else d.decode("utf-8") for p, d in files.items()}}
        atomic_write_bytes(self.journal_path, json.dumps(doc).encode("utf-8"))  # ---- COMMIT POINT
        self._finish(doc)

    def _journal_target(self, relative: str) -> Path:
        """A journal path, checked: a case path, then a golden or record name — inside the store."""
        folder, _, name = relative.rpartition("/")
        if folder.endswith("/" + RECORDS_DIR):
            folder, ok = folder[: -len(RECORDS_DIR) - 1], golden_name(name) is not None
        else:
            ok = parse_golden_filename(name) is not None
        check_case_path(folder)
        if not ok:
            raise StoreError(f"journal names {relative!r}, which is no golden or record file")
        return self._inside(self.root / relative)

    def _finish(self, doc: dict[str, Any]) -> None:
        touched_folders = set()
        for relative, text in doc["files"].items():
            target = self._journal_target(relative)
            if text is None:
                target.unlink(missing_ok=True)
                touched_folders.add(target.parent)
            else:
                atomic_write_bytes(target, text.encode("utf-8"))
        for folder in touched_folders:
            if folder.is_dir():
                fsync_dir(folder)
        self.journal_path.unlink()
        fsync_dir(self.store_dir)

    def _read_journal(self) -> dict[str, Any] | None:
        data = read_regular(self.journal_path)
        if data is None:
            return None
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise StoreError(f"{self.journal_path} is unreadable; it was written atomically, so something else "
                             f"changed it — inspect it, then remove it") from None
        if not isinstance(doc, dict) or doc.get("schema") != JOURNAL_SCHEMA or not isinstance(doc.get("files"), dict) \
                or not all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in doc["files"].items()):
            raise StoreError(f"{self.journal_path} is not a golden store journal")
        return doc

    def recover(self, *, repair: bool) -> list[Problem]:
        """Finish an interrupted write (the journal is whole: it was committed) and drop temp files
        of uncommitted ones. Only a writer holding the lock repairs."""
        unsafe = self.unsafe_paths()
        if unsafe:  # never read, write or delete through them
            return [Problem("-", "unsafe-path", f"{path} {why}", path=str(path)) for path, why in unsafe]
        problems = []
        for tmp in self._our_temps(self.store_dir):
            if repair:
                tmp.unlink(missing_ok=True)
            problems.append(Problem("-", "stale-temp-file", f"temp file of an uncommitted write: {tmp.name}",
                                    severity=WARNING, repaired=repair, path=str(tmp)))
        try:
            doc = self._read_journal()
        except StoreError as exc:
            return [*problems, Problem("-", "unreadable-journal", str(exc), path=str(self.journal_path))]
        if doc is None:
            return problems
        folders = set()
        try:
            for relative in doc["files"]:
                target = self._journal_target(relative)
                require_safe([(target.parent, FOLDER), (target, FILE)])
                folders.add(target.parent)
        except StoreError as exc:  # a forged journal: nothing it names is touched
            return [*problems, Problem("-", "unreadable-journal", f"{self.journal_path}: {exc}",
                                       path=str(self.journal_path))]
        for folder in sorted(folders):
            problems += self._temp_files(folder, "-", repair=repair)
        if repair:
            self._finish(doc)
        problems.append(Problem("-", "interrupted-write",
                                f"a write of {len(doc['files'])} files was committed but not finished"
                                + ("; finished it" if repair else " (fsck finishes it)"),
                                severity=WARNING, repaired=repair, path=str(self.journal_path)))
        return problems

    def unsafe_paths(self) -> list[tuple[Path, str]]:
        """The store's own folder and files that are symlinks or the wrong kind of file."""
        return [(path, why) for path, expected in ((self.store_dir, FOLDER), (self.store_dir / LOCK_FILE, FILE),
                                                   (self.journal_path, FILE))
                if (why := path_problem(path, expected)) is not None]

    @staticmethod
    def case_unsafe_paths(case_dir: Path) -> list[tuple[Path, str]]:
        """A case's golden files, its records folder and records that are symlinks or the wrong kind."""
        found = []
        records = case_dir / RECORDS_DIR
        for entry in sorted(os.scandir(case_dir), key=lambda e: e.name):
            if parse_golden_filename(entry.name) and (why := path_problem(Path(entry.path), FILE)) is not None:
                found.append((Path(entry.path), why))
        why = path_problem(records, FOLDER)
        if why is not None:
            return [*found, (records, why)]
        if records.is_dir():
            found += [(Path(e.path), why) for e in sorted(os.scandir(records), key=lambda e: e.name)
                      if (why := path_problem(Path(e.path), FILE)) is not None]
        return found

    @staticmethod
    def _our_temps(folder: Path) -> list[Path]:
        """Temp files our own atomic writes leave (exact names, regular files) in a real folder."""
        def ours(target: str) -> bool:
            if folder.name == STORE_DIR:
                return target in (JOURNAL_FILE, ".gitignore")
            return (golden_name(target) if folder.name == RECORDS_DIR else parse_golden_filename(target)) is not None

        return temp_files_in(folder, ours)

    def _temp_files(self, folder: Path, case: str, *, repair: bool) -> list[Problem]:
        problems = []
        for tmp in self._our_temps(folder):
            if repair:
                tmp.unlink(missing_ok=True)
            problems.append(Problem(case, "stale-temp-file", f"temp file of an interrupted write: {tmp.name}",
                                    severity=WARNING, repaired=repair, path=str(tmp)))
        return problems

    # ------------------------------------------------------------ integrity

    def fsck(self, cases: list[tuple[str, Path]], *, repair: bool) -> list[Problem]:
        """The journal, temp files, and every approval record against its golden. A golden whose
        record no longer matches was changed by another tool: a note (unattributed), not a problem."""
        if repair and not self.unsafe_paths():
            with self.locked():
                return self._fsck(cases, repair=True)
        with shared_lock(self.store_dir / LOCK_FILE, self.lock_timeout):  # a write in progress is waited for
            return self._fsck(cases, repair=False)

    def _fsck(self, cases: list[tuple[str, Path]], *, repair: bool) -> list[Problem]:
        problems = self.recover(repair=repair)
        for case, case_dir in cases:
            unsafe = self.case_unsafe_paths(case_dir)
            problems += [Problem(case, "unsafe-path", f"{path} {why}", path=str(path)) for path, why in unsafe]
            if unsafe:
                continue  # nothing of this case is read or repaired through them
            problems += self._temp_files(case_dir, case, repair=repair)
            problems += self._temp_files(case_dir / RECORDS_DIR, case, repair=repair)
            if (case_dir / LEGACY_LEDGER).exists():
                problems.append(Problem(case, "ledger-history", "a ledger history inside a git store: "
                                                                "`golden migrate` moves it into approval records",
                                        severity=WARNING, path=str(case_dir / LEGACY_LEDGER)))
            problems += self._check_records(case, case_dir)
        return problems

    def _check_records(self, case: str, case_dir: Path) -> list[Problem]:
        folder = case_dir / RECORDS_DIR
        if not folder.is_dir():
            return []
        problems = []
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):
                continue
            described = golden_name(path.name)
            if described is None or not path.is_file() or path.is_symlink():
                problems.append(Problem(case, "stray-record", f"{path.name} in {RECORDS_DIR}/ names no golden file",
                                        severity=WARNING, path=str(path)))
                continue
            try:
                record = ApprovalRecord.from_bytes(read_regular(path) or b"", str(path))
            except StoreError as exc:
                problems.append(Problem(case, "unreadable-record", str(exc), path=str(path)))
                continue
            if record.file != described:
                problems.append(Problem(case, "record-mismatch", f"{path.name} describes {record.file}, "
                                                                 f"not {described}", path=str(path)))
                continue
            data = self.current(case_dir, described)
            if record.hash is not None and data is None:
                problems.append(Problem(case, "orphan-record", f"{described} is gone but its approval record "
                                                               f"remains (removed by another tool)",
                                        severity=WARNING, path=str(path)))
            elif (None if data is None else sha256_hex(data)) != record.hash:
                problems.append(Problem(case, "unattributed", f"{described} was changed by another tool since its "
                                                              f"approval ({record.time} by {record.approver}); "
                                                              f"golden history shows it unattributed",
                                        severity=NOTE, path=str(case_dir / described)))
        return problems


def _renumbered(version: Version, number: int) -> Version:
    return replace(version, number=number)

