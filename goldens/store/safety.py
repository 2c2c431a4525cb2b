"""Rules every store backend keeps, whatever its own files say (the ledger today, git beside it).

- Paths: a name the store derives from its own files (a ledger entry, a pending record, a blob) is
  one plain name, checked before it is joined to a folder (``plain_name``); every store path is
  looked at with ``lstat`` and a symlink or a wrong file type there is refused for writes, reported
  by fsck, never followed (``path_problem``, ``require_safe``, ``read_regular``).
- Names that become file names are bounded before anything is written (``plain_name``: the name and
  the temp file ``atomic_write_bytes`` makes beside it fit in ``NAME_MAX``).
- CI never writes (``in_ci``, ``refuse_in_ci``).
- Read-only commands read under a shared lock, so a write in progress is waited for, never
  reported as damage (``shared_lock``).
- What cannot be proven an uncommitted temporary of this store is never deleted: it goes to a
  quarantine folder inside the store, with a report (``quarantine``).
- Version numbers are ASCII digits of bounded length (``version_number``).
"""
from __future__ import annotations

import errno
import os
import re
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ..core.errors import StoreError

PENDING_DIR = ".pending"            # staged candidates, at the store root
NAME_MAX = 255                      # bytes in one file name (ext4, xfs, btrfs, apfs, ntfs)
TEMP_NAME_EXTRA = len("..XXXXXXXX.tmp")  # what atomic_write_bytes adds around a name for its temp file
MAX_FILE_NAME = NAME_MAX - TEMP_NAME_EXTRA
MAX_VERSION_DIGITS = 9              # v999999999: far beyond any history, far below int() limits
FILE, FOLDER = "file", "folder"
QUARANTINE_REPORT = "REPORT.txt"


# ---------------------------------------------------------------- names

def plain_name(name: object, what: str = "file name") -> str:
    """One path component the store may create: no separator, not '.'/'..', no NUL, and short
    enough that its temp file fits in a file name too. ``StoreError`` otherwise (nothing written)."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise StoreError(f"invalid {what} {name!r}: not a plain name inside the store")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise StoreError(f"invalid {what} {name!r}: not valid Unicode text") from None
    if size > MAX_FILE_NAME:
        raise StoreError(f"{what} {name[:40]}… is too long: {size} bytes, at most {MAX_FILE_NAME} "
                         f"(a file name holds {NAME_MAX}, and its temp file needs {TEMP_NAME_EXTRA} more)")
    return name


def version_number(text: str) -> int | None:
    """``vN``/``N`` with N ≥ 1 in ASCII digits (not '²' or '٣'), at most ``MAX_VERSION_DIGITS``; None otherwise."""
    digits = text[1:] if text[:1] in ("v", "V") else text
    if not (digits.isascii() and digits.isdigit()) or len(digits) > MAX_VERSION_DIGITS or int(digits) < 1:
        return None
    return int(digits)


# ---------------------------------------------------------------- paths: look, never follow

def path_problem(path: Path, expected: str) -> str | None:
    """Why ``path`` cannot be used as a store ``expected`` (FILE or FOLDER); None when it is one or is absent."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None  # a parent is not a folder: that parent is the problem, reported there
    except OSError as exc:
        return f"cannot be examined ({exc.strerror or exc})"
    if stat.S_ISLNK(mode):
        return f"is a symlink to {os.readlink(path)} (the store never follows one)"
    if expected == FOLDER and not stat.S_ISDIR(mode):
        return f"is a {_kind(mode)}, expected a folder"
    if expected == FILE and not stat.S_ISREG(mode):
        return f"is a {_kind(mode)}, expected a regular file"
    return None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device" if stat.S_ISBLK(mode) or stat.S_ISCHR(mode) else "special file"


def require_safe(paths: Sequence[tuple[Path, str]]) -> None:
    """Refuse (``StoreError``, before anything is read or written there) when any store path is unusable."""
    for path, expected in paths:
        why = path_problem(path, expected)
        if why is not None:
            raise StoreError(f"refusing to use {path}: it {why}; run golden fsck")


def is_regular(path: Path) -> bool:
    """A regular file, not through a symlink (``Path.is_file`` follows one)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def read_regular(path: Path) -> bytes | None:
    """The bytes of a regular file, never through a symlink nor blocking on a pipe; None when absent.

    ``StoreError`` for anything else where the store expects a file."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(path):
            raise StoreError(f"cannot read {path}: it is a symlink (the store never follows one); "
                             f"run golden fsck") from None
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise StoreError(f"cannot read {path}: it is a {_kind(mode)}, expected a regular file; run golden fsck")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")  # atomic_write_bytes's temp files (mkstemp)


def temp_target(name: str) -> str | None:
    """The file a temp file named ``name`` was made for by ``atomic_write_bytes``; None when it is no such name."""
    match = TEMP_NAME.match(name)
    return None if match is None else match["target"]


def temp_files_in(folder: Path, ours: Callable[[str], bool]) -> list[Path]:
    """The temp files in a real ``folder`` that our writers left for a target ``ours`` accepts: exact
    names, regular files, never through a symlink — all a cleanup may delete."""
    if path_problem(folder, FOLDER) is not None or not folder.is_dir():
        return []
    with os.scandir(folder) as entries:
        return sorted(Path(e.path) for e in entries if (target := temp_target(e.name)) is not None
                      and ours(target) and e.is_file(follow_symlinks=False))


def make_folder(path: Path) -> None:
    """Create one store folder (its parent must already be a real folder); refuse what is in the way."""
    require_safe([(path, FOLDER)])
    try:
        os.mkdir(path)
    except FileExistsError:
        require_safe([(path, FOLDER)])  # made meanwhile: it must still be a real folder


# ---------------------------------------------------------------- CI never writes

def in_ci(ci: bool | None = None) -> bool:
    """``ci`` when given, else whether ``$CI`` is set (to anything but the empty string)."""
    return bool(os.environ.get("CI")) if ci is None else ci


def refuse_in_ci(what: str, ci: bool | None = None, allow_ci: bool = False) -> None:
    if in_ci(ci) and not allow_ci:
        raise StoreError(f"CI is set: CI never writes to the golden store, so {what} writes nothing "
                         f"(pass --allow-ci to override deliberately)")


# ---------------------------------------------------------------- readers wait for writers

@contextmanager
def shared_lock(lock_file: Path, timeout: float) -> Iterator[None]:
    """Hold a shared lock on the writers' lock file while reading (flock: writers hold it exclusive).

    Nothing is created: with no lock file there is no writer to wait for (it is made before the
    first write), and a lock file that is not a regular file is left to fsck to report.
    """
    try:
        import fcntl
    except ImportError:  # no flock (Windows): read unlocked
        yield
        return
    try:
        fd = os.open(lock_file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        yield
        return
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            yield
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreError(f"a writer has held {lock_file} for over {timeout:g} s; try again") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


# ---------------------------------------------------------------- quarantine, never delete

def quarantine(folder: Path, items: Sequence[tuple[Path, str]], *, store: str) -> Path:
    """Move ``items`` (path, why) into a new folder under ``folder`` with a report; returns that folder.

    Each item is renamed, not copied (a symlink moves as a link, never followed), within the store.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    make_folder(folder)
    here = folder / stamp
    make_folder(here)
    lines = [f"Moved here by golden fsck at {stamp} from {store}: the store could not place these, so it",
             "kept them instead of deleting them. Look at each, then delete this folder.", ""]
    for number, (path, why) in enumerate(items, start=1):
        target = here / f"{number:03d}-{path.name}"
        os.rename(path, target)
        lines.append(f"{target.name}: was {path}: {why}")
    (here / QUARANTINE_REPORT).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return here


def pending_problems(root: Path) -> list[tuple[Path, str]]:
    """The staged-candidate folder (``.pending/<case path>/<file>``): real folders and regular files only."""
    pending = root / PENDING_DIR
    why = path_problem(pending, FOLDER)
    if why is not None:
        return [(pending, why)]
    if not pending.is_dir():
        return []
    found: list[tuple[Path, str]] = []
    folders = [pending]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                path = Path(entry.path)
                if entry.is_dir(follow_symlinks=False) and not entry.name.endswith(".json"):
                    folders.append(path)  # a case path's folder (a candidate is a .json file)
                elif (w := path_problem(path, FILE)) is not None:
                    found.append((path, w))
    return sorted(found)
