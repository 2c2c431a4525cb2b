"""The git work tree a store lives in, read through the ``git`` command (subprocess, no library).

Only reading: the store never commits, stages or checks out — approvals land in the work tree and
the user commits them with the pull request. Every ref a user gives is resolved with
``--end-of-options`` (a ref that looks like an option is refused first), and paths are passed
after ``--``.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import StoreError

_ENV = {"GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}


@dataclass(frozen=True, slots=True)
class Change:
    """One file a commit changed: its path from the repository top, and its blob before and after
    (None: absent)."""

    path: str
    old: str | None
    new: str | None


@dataclass(frozen=True, slots=True)
class Commit:
    hash: str
    time: str        # committer date, ISO 8601
    author: str
    subject: str
    changes: tuple[Change, ...]


def _run(cwd: Path, args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, check=False,
                              env={**os.environ, **_ENV})
    except FileNotFoundError:
        raise StoreError("git is not installed (a store inside a git work tree reads its history with it)") from None


def _inside_git(path: Path) -> bool:
    """Whether any folder from ``path`` up holds a ``.git`` (cheap; git itself confirms)."""
    here = path.resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return True
    return bool(os.environ.get("GIT_DIR"))


class GitRepo:
    """A git work tree: its top folder, object format, and the reads the store needs."""

    def __init__(self, top: Path, object_format: str = "sha1"):
        self.top = top
        self.object_format = object_format

    @classmethod
    def find(cls, path: Path) -> GitRepo | None:
        """The work tree holding ``path`` when git tracks it there (not ignored); else None."""
        if not path.is_dir() or not _inside_git(path):
            return None
        done = _run(path, ["rev-parse", "--show-toplevel", "--show-object-format", "--is-inside-work-tree"])
        lines = done.stdout.decode("utf-8", "surrogateescape").splitlines()
        if done.returncode != 0 or len(lines) < 3 or lines[2] != "true":
            return None
        top = Path(lines[0])
        ignored = _run(top, ["check-ignore", "-q", "--", os.path.relpath(path.resolve(), top.resolve())])
        if ignored.returncode == 0:
            return None  # an ignored folder has no history in this repository
        return cls(top, lines[1] if lines[1] in ("sha1", "sha256") else "sha1")

    def git(self, *args: str, stdin: bytes | None = None) -> bytes:
        done = _run(self.top, list(args), stdin)
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise StoreError(f"git {args[0]} failed in {self.top}: "
                             f"{message[0] if message else 'exit ' + str(done.returncode)}")
        return done.stdout

    def prefix(self, folder: Path) -> str:
        """``folder``'s path from the repository top, posix ('' for the top itself)."""
        relative = Path(os.path.relpath(folder.resolve(), self.top.resolve())).as_posix()
        return "" if relative == "." else relative

    def blob_id(self, data: bytes) -> str:
        """The id git gives these bytes as a blob (to compare the work tree with a commit)."""
        return hashlib.new(self.object_format, b"blob %d\0" % len(data) + data).hexdigest()

    def has_commits(self) -> bool:
        return _run(self.top, ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]).returncode == 0

    def resolve(self, ref: str) -> str:
        """A commit's full hash; StoreError naming the ref when git knows no such commit."""
        if not ref or ref.startswith("-") or not ref.isprintable():
            raise StoreError(f"invalid git revision {ref!r}")
        done = _run(self.top, ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"])
        if done.returncode != 0:
            raise StoreError(f"unknown git revision {ref!r} in {self.top}")
        return done.stdout.decode().strip()

    def ls_folder(self, commit: str, prefix: str) -> dict[str, str]:
        """name → blob id of the files directly in folder ``prefix`` at ``commit``."""
        spec = f"{prefix}/" if prefix else "."
        listing = self.git("ls-tree", "-z", "--full-tree", commit, "--", spec)
        found: dict[str, str] = {}
        for entry in filter(None, listing.split(b"\0")):
            meta, _, raw = entry.partition(b"\t")
            _mode, kind, blob = meta.decode().split()
            if kind == "blob":
                found[raw.decode("utf-8", "surrogateescape").rsplit("/", 1)[-1]] = blob
        return found

    def ls_tree_folders(self, commit: str, prefix: str) -> dict[str, dict[str, str]]:
        """folder → name → blob id of every file below ``prefix`` at ``commit``, in one ``ls-tree -r``."""
        spec = f"{prefix}/" if prefix else "."
        listing = self.git("ls-tree", "-r", "-z", "--full-tree", commit, "--", spec)
        found: dict[str, dict[str, str]] = {}
        for entry in filter(None, listing.split(b"\0")):
            meta, _, raw = entry.partition(b"\t")
            _mode, kind, blob = meta.decode().split()
            if kind == "blob":
                folder, _, name = raw.decode("utf-8", "surrogateescape").rpartition("/")
                found.setdefault(folder, {})[name] = blob
        return found

    def read_blobs(self, ids: list[str]) -> dict[str, bytes]:
        """Contents of many blobs through one ``git cat-file --batch``."""
        ids = sorted(set(ids))
        if not ids:
            return {}
        out = self.git("cat-file", "--batch", stdin="".join(f"{b}\n" for b in ids).encode())
        contents: dict[str, bytes] = {}
        position = 0
        for blob in ids:
            header_end = out.index(b"\n", position)
            header = out[position:header_end].decode().split()
            if len(header) < 3 or header[1] != "blob":
                raise StoreError(f"git object {blob} is missing or not a file")
            start = header_end + 1
            contents[blob] = out[start:start + int(header[2])]
            position = start + int(header[2]) + 1
        return contents

    def log(self, prefix: str) -> list[Commit]:
        """Every commit that changed a file below ``prefix``, oldest first (merges show no changes of
        their own; renames are a removal and an addition)."""
        if not self.has_commits():
            return []
        raw = self.git("log", "-z", "--raw", "--no-abbrev", "--no-renames", "--no-color",
                       "--format=%x01%H%x00%cI%x00%an%x00%s", "--", f"{prefix}/" if prefix else ".")
        commits = []
        for chunk in raw.split(b"\x01")[1:]:
            head, _, body = chunk.partition(b"\x00")
            time, _, body = body.partition(b"\x00")
            author, _, body = body.partition(b"\x00")
            subject, _, body = body.partition(b"\x00")
            fields = body.lstrip(b"\n").split(b"\x00")
            changes = []
            # (meta, path) pairs; the NUL that ends the last path leaves an empty field with no pair
            for meta, path in zip(fields[0::2], fields[1::2], strict=False):
                if not meta.startswith(b":"):
                    continue
                parts = meta[1:].decode().split()
                old, new = parts[2], parts[3]
                zero = set("0")
                changes.append(Change(path.decode("utf-8", "surrogateescape"),
                                      None if set(old) <= zero else old, None if set(new) <= zero else new))
            commits.append(Commit(head.decode(), time.decode(), author.decode("utf-8", "replace"),
                                  subject.decode("utf-8", "replace"), tuple(changes)))
        commits.reverse()
        return commits
