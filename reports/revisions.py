"""Read the golden files of a store as they were at a git revision (the change report's input).

The store is a folder of ``<case>/golden_values_*.json`` inside a git checkout (ours, or a
Megatron checkout's ``tests/functional_tests/test_cases``). ``git ls-tree`` lists the golden
files at a ref with their blob ids, so files whose blob did not change are never parsed, and
``git cat-file --batch`` reads all the others in one process. A file that cannot be read as a
training golden at a revision (inference, empty, ``{}``) is skipped with a note: it never stops the
report on the others.
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from goldens.core.errors import FormatError, NotATrainingGolden, StoreError
from goldens.core.model import GoldenSet
from goldens.files.formats.golden import parse_golden_bytes, parse_golden_filename

_STORE_VERSIONS = re.compile(r"^(?P<case>[A-Za-z0-9][A-Za-z0-9_./-]*)"
                             r"@(?P<base>[^@{}\s]+?)\.\.(?P<head>[^@{}\s.][^@{}\s]*)$")


@dataclass(frozen=True)
class Revision:
    """The golden files of one revision, keyed by their path inside the store."""

    label: str
    goldens: dict[str, GoldenSet]
    blob_ids: dict[str, str] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()  # e.g. inference goldens (no per-step metrics), unreadable files


@dataclass(frozen=True)
class ChangeSpec:
    """A parsed ``--changes`` argument: two git refs, or two versions of one case in the store."""

    base: str
    head: str
    case: str | None = None  # set for CASE@A..B


def parse_change_spec(text: str) -> ChangeSpec:
    """``BASE..HEAD`` (git refs) or ``CASE@A..B`` (two versions of one case: ``vN`` in a ledger store,
    revisions in git; the case is its path or a name only one case has)."""
    text = text.strip()
    versions = _STORE_VERSIONS.match(text)
    if versions:
        return ChangeSpec(versions["base"], versions["head"], case=versions["case"])
    if "..." in text or text.count("..") != 1:
        raise StoreError(f"--changes {text!r}: expected BASE..HEAD (two git refs) or CASE@A..B")
    base, head = text.split("..")
    if not base or not head:
        raise StoreError(f"--changes {text!r}: both sides of '..' must name a git ref")
    return ChangeSpec(base, head)


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], input=stdin, capture_output=True, check=False)
    except FileNotFoundError:
        raise StoreError("git is not installed; the change report over git refs needs it") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise StoreError(f"git {args[0]} failed in {repo}: {message[0] if message else 'exit ' + str(done.returncode)}")
    return done.stdout


def _store_location(store: Path) -> tuple[Path, str]:
    """The git top-level holding the store and the store's path inside it ('' at the top)."""
    if not store.is_dir():
        raise StoreError(f"store {store} is not a directory")
    top = Path(_git(store, "rev-parse", "--show-toplevel").decode().strip())
    prefix = store.resolve().relative_to(top.resolve()).as_posix()
    return top, "" if prefix == "." else prefix


def _resolve(top: Path, ref: str) -> str:
    if ref.startswith("-"):
        raise StoreError(f"invalid git ref {ref!r}")
    try:
        return _git(top, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}").decode().strip()
    except StoreError:
        raise StoreError(f"unknown git ref {ref!r} in {top}") from None


def _golden_blobs(top: Path, commit: str, prefix: str) -> dict[str, str]:
    """store-relative path → blob id of every golden file in the store at ``commit``."""
    listing = _git(top, "ls-tree", "-r", "-z", "--full-tree", commit, *([prefix] if prefix else []))
    blobs: dict[str, str] = {}
    for entry in filter(None, listing.split(b"\0")):
        meta, _, raw_path = entry.partition(b"\t")
        _mode, kind, blob_id = meta.decode().split()
        path = raw_path.decode("utf-8", "surrogateescape")
        if kind != "blob" or parse_golden_filename(path) is None:
            continue
        relative = path[len(prefix) + 1:] if prefix else path
        blobs[relative] = blob_id
    return blobs


def _read_blobs(top: Path, blob_ids: list[str]) -> dict[str, bytes]:
    """Contents of many blobs through one ``git cat-file --batch``."""
    if not blob_ids:
        return {}
    out = _git(top, "cat-file", "--batch", stdin="".join(f"{b}\n" for b in blob_ids).encode())
    contents: dict[str, bytes] = {}
    position = 0
    for blob_id in blob_ids:
        header_end = out.index(b"\n", position)
        _oid, _kind, size = out[position:header_end].decode().split()
        start = header_end + 1
        contents[blob_id] = out[start:start + int(size)]
        position = start + int(size) + 1  # the content is followed by a newline
    return contents


def read_git_revisions(store: str | Path, base_ref: str, head_ref: str) -> tuple[Revision, Revision]:
    """The store's golden files at two git refs; a file with the same blob at both is parsed once."""
    top, prefix = _store_location(Path(store))
    listings = {ref: _golden_blobs(top, _resolve(top, ref), prefix) for ref in (base_ref, head_ref)}
    all_ids = sorted({b for listing in listings.values() for b in listing.values()})
    contents = _read_blobs(top, all_ids)
    parsed: dict[str, GoldenSet | str] = {}  # blob id → golden, or why it is none
    revisions = []
    for ref in (base_ref, head_ref):
        goldens: dict[str, GoldenSet] = {}
        skipped: list[str] = []
        for path, blob_id in sorted(listings[ref].items()):
            if blob_id not in parsed:
                label = f"{ref}:{prefix + '/' if prefix else ''}{path}"
                try:
                    parsed[blob_id] = parse_golden_bytes(contents[blob_id], label)
                except NotATrainingGolden:
                    parsed[blob_id] = "not a training golden"
                except FormatError as exc:
                    parsed[blob_id] = f"unreadable: {exc.reason}"
            golden = parsed[blob_id]
            if isinstance(golden, str):
                skipped.append(f"{path} at {ref}: {golden} (skipped)")
            else:
                goldens[path] = golden
        revisions.append(Revision(ref, goldens, dict(listings[ref]), tuple(skipped)))
    return revisions[0], revisions[1]
