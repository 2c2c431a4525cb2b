"""Landing fetched files: archives read safely, everything staged in a temporary folder beside the
candidates folder, and moved into place only when the whole fetch succeeded.

An archive is refused whole when any member's path could escape the folder it is unpacked into
(absolute, a drive, '..', a NUL): zip-slip. Members are read by name, never extracted, and a
member larger than ``Limits.member_bytes`` is refused (a golden file is kilobytes), and so is a
fetch that would land more than ``Limits.landed_bytes`` in all.
"""
from __future__ import annotations

import os
import re
import shutil
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ..core.errors import StoreError
from ..files.bounded import cut, short
from ..files.case import check_name
from .http import FetchError, Limits

_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, RuntimeError, NotImplementedError,
               EOFError, zlib.error, struct.error, UnicodeDecodeError, IndexError, KeyError, OverflowError)
_DRIVE = re.compile(r"^[A-Za-z]:")


def hostile_member(name: str) -> bool:
    """Whether a zip member's path could land outside the folder it is unpacked into."""
    if not name or "\0" in name or name.startswith(("/", "\\")) or _DRIVE.match(name):
        return True
    return any(part == ".." for part in re.split(r"[/\\]", name))


class Archive:
    """A downloaded zip, checked whole before anything is read from it: at most ``Limits.members``
    entries, none of them a path that could escape; a member is read up to ``Limits.member_bytes``
    (whatever its header declares) and any damage — encryption, an unknown compression method,
    corrupt data — is one ``FetchError`` line."""

    def __init__(self, path: Path, source: str, limits: Limits | None = None):
        self.source = source
        self.limits = limits or Limits()
        try:
            self.zip = zipfile.ZipFile(path)
        except _ZIP_ERRORS as exc:
            raise FetchError(f"{source}: not a readable zip archive ({type(exc).__name__})") from None
        infos = self.zip.infolist()
        if len(infos) > self.limits.members:
            self.zip.close()
            raise FetchError(f"{source}: the zip holds {len(infos):,} entries, more than the {self.limits.members:,} "
                             "allowed (GOLDEN_FETCH_MEMBERS); nothing written")
        for info in infos:
            if hostile_member(info.filename):
                self.zip.close()
                raise FetchError(f"{source}: unsafe path {short(info.filename)} inside the zip (zip-slip); "
                                 "nothing written")
        self.names = [i.filename for i in infos if not i.is_dir()]

    def read(self, name: str) -> bytes:
        info = self.zip.getinfo(name)
        limit = self.limits.member_bytes
        if info.file_size > limit:
            raise FetchError(f"{self.source}: {short(name)} is {info.file_size:,} bytes, more than a golden file "
                             f"can be ({limit:,}, GOLDEN_FETCH_MEMBER_BYTES)")
        try:
            with self.zip.open(info) as member:
                data = member.read(limit + 1)
        except _ZIP_ERRORS as exc:  # CRC mismatch, truncated data, encrypted, an unknown method, bad deflate
            raise FetchError(f"{self.source}: {short(name)} cannot be read from the zip "
                             f"({type(exc).__name__}: {cut(str(exc), 120)})") from None
        if len(data) > limit:
            raise FetchError(f"{self.source}: {short(name)} holds more than the {limit:,} bytes a golden file can be")
        return data

    def close(self) -> None:
        self.zip.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def safe_part(name: str, what: str, source: str) -> str:
    """A folder or file name taken from CI data (stage, test, job, file): one plain component."""
    try:
        return check_name(name, what)
    except StoreError:
        raise FetchError(f"{source}: unsafe {what} {name!r} (letters, digits, '_', '-', '.' only); "
                         "nothing written") from None


class Staging:
    """Files of one fetch, written under a temporary folder beside ``out`` and moved into place by
    ``commit``; anything that goes wrong before leaves ``out`` as it was."""

    def __init__(self, out: Path, limits: Limits | None = None):
        self.out = out
        self.limits = limits or Limits()
        self.landed = 0
        if out.exists() and not out.is_dir():
            raise FetchError(f"{out} exists and is not a folder")
        self.made = [p for p in reversed(out.parents) if not p.exists()]  # removed again unless committed
        self.committed = False
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            self.root = Path(tempfile.mkdtemp(prefix=f".{out.name}.fetch-", dir=out.parent))
        except OSError as exc:
            raise FetchError(f"cannot write beside {out}: {exc.strerror or exc}") from None
        self.files: dict[PurePosixPath, str] = {}  # relative path → where it came from

    def scratch(self, name: str) -> Path:
        """A scratch file inside the staging folder (a download), never moved into place."""
        scratch = self.root / ".scratch"
        scratch.mkdir(exist_ok=True)
        return scratch / name

    def add(self, relative: PurePosixPath, data: bytes, source: str) -> None:
        if relative in self.files:
            raise FetchError(f"{source} and {self.files[relative]} both hold {relative}; nothing written")
        self.landed += len(data)
        if self.landed > self.limits.landed_bytes:
            raise FetchError(f"{source}: the fetch would land more than {self.limits.landed_bytes:,} bytes of golden "
                             "files (GOLDEN_FETCH_LANDED_BYTES); nothing written")
        target = self.root / "tree" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        self.files[relative] = source

    def commit(self) -> list[Path]:
        """Move the staged files into ``out`` (the whole folder at once when ``out`` is new); returns
        the paths written."""
        tree = self.root / "tree"
        written = [self.out / Path(*relative.parts) for relative in sorted(self.files)]
        self.committed = True
        if not self.files:
            return []
        if not self.out.exists():
            try:
                os.rename(tree, self.out)
            except OSError as exc:
                raise FetchError(f"cannot create {self.out}: {exc.strerror or exc}") from None
            return written
        for target in written:  # every obstacle found before the first file moves
            if target.exists() and not target.is_file():
                raise FetchError(f"{target} exists and is not a file")
            for folder in target.relative_to(self.out).parents:
                if (self.out / folder).exists() and not (self.out / folder).is_dir():
                    raise FetchError(f"{self.out / folder} exists and is not a folder")
        try:
            for relative, target in zip(sorted(self.files), written, strict=True):
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tree / Path(*relative.parts), target)
        except OSError as exc:
            raise FetchError(f"cannot move the fetched files into {self.out}: {exc.strerror or exc}") from None
        return written

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        if not self.committed or not self.files:
            for folder in reversed(self.made):  # the folders made for the staging, innermost first
                try:
                    folder.rmdir()
                except OSError:
                    break

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()
