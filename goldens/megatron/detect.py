"""Which generation of Megatron's conventions a tree follows, and why (files are read here; the table
itself is ``goldens.core.megatron``).

Precedence, stated once: an explicit choice (``--megatron-generation`` or ``$GOLDEN_MEGATRON_GENERATION``);
else the tree's own comparator files (a Megatron checkout above the store: ``python_test_utils/``,
``run_ci_test.sh``, ``tools/check_golden_values.py``) recognised by content digest, else by the markers
they hold; else the ``value_precision`` marker in any golden of the tree (the newest row that writes it);
else the legacy row. Comparator files that match no row are reported once: "this tree's comparator is
newer than the rules the megatron preset follows".
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..core.megatron import COMPARATOR_FILES, GENERATION_ENV, GENERATIONS, LEGACY, Detection, Generation, generation

NEWER_COMPARATOR = "this tree's comparator is newer than the rules the megatron preset follows"
MAX_COMPARATOR_BYTES = 4 << 20  # a comparator file is a few kB; more is not one
MARKER_BYTES = b'"value_precision"'
_TEST_FOLDER = "tests/functional_tests/"
_SEARCH_UP = 6  # test_cases → functional_tests → tests → checkout, and a little more


def comparator_files(root: Path) -> dict[str, Path]:
    """The comparator files of the checkout at or above ``root`` (relative path → file): each where
    the checkout has it, or beside the store as Megatron's test folder has it (``python_test_utils/``
    and ``shell_test_utils/`` next to ``test_cases``); the nearest folder wins."""
    here = Path(root).resolve()
    folders = (here, *list(here.parents)[:_SEARCH_UP])
    found: dict[str, Path] = {}
    for rel in COMPARATOR_FILES:
        beside = rel.removeprefix(_TEST_FOLDER)
        for folder in folders:
            hit = next((p for p in (folder / rel, folder / beside) if p.is_file()), None)
            if hit is not None:
                found[rel] = hit
                break
    return found


def _read(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_COMPARATOR_BYTES + 1)
    except OSError:
        return b""


def recognise(files: dict[str, Path]) -> tuple[Generation | None, str]:
    """The row the comparator files belong to — every file's digest known to one row, else the newest
    row whose markers they all hold — and how it was recognised; (None, why) when none fits."""
    contents = {rel: _read(path) for rel, path in files.items()}
    digests = {rel: hashlib.sha256(data).hexdigest() for rel, data in contents.items()}
    for row in GENERATIONS:
        if row.digests and all(row.digests.get(rel) == digest for rel, digest in digests.items()):
            return row, f"the tree's comparator files ({len(digests)}) match its digests"
    text = b"\n".join(contents.values())
    for row in reversed(GENERATIONS):
        if row.markers and all(m.encode() in text for m in row.markers):
            return row, f"the tree's comparator files mention {', '.join(row.markers)}"
    unknown = sorted(rel for rel, digest in digests.items() if all(r.digests.get(rel) != digest for r in GENERATIONS))
    return None, f"unknown comparator files: {', '.join(Path(u).name for u in unknown[:3])}"


def marked_golden(root: Path) -> Path | None:
    """The first golden file under ``root`` that holds the ``value_precision`` marker (None: none does)."""
    for top, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("golden_values") and name.endswith(".json"):
                path = Path(top) / name
                if not path.is_symlink() and _holds_marker(path):
                    return path
    return None


def _holds_marker(path: Path) -> bool:
    tail = b""
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                if MARKER_BYTES in tail + chunk:
                    return True
                tail = chunk[-len(MARKER_BYTES):]
    except OSError:
        return False
    return False


def newest_marking() -> Generation:
    """The newest row whose extraction writes the marker: what a tree of marked goldens is taken to follow."""
    return next(row for row in reversed(GENERATIONS) if row.marker is not None)


def detect_generation(root: str | Path, choice: str | None = None, *, goldens: str | Path | None = None) -> Detection:
    """The generation the tree at ``root`` follows (see the module docstring for the precedence);
    ``goldens``: where to look for marked goldens, if not the whole tree (a case folder)."""
    chosen = choice or os.environ.get(GENERATION_ENV) or None
    files = comparator_files(Path(root))
    row, how = recognise(files) if files else (None, "")
    warning = NEWER_COMPARATOR + f" ({how})" if files and row is None else None
    if chosen is not None:
        source = "--megatron-generation" if choice else f"${GENERATION_ENV}"
        return Detection(generation(chosen), f"set explicitly ({source})", warning)
    if row is not None:
        return Detection(row, f"detected: {how}")
    marked = marked_golden(Path(goldens if goldens is not None else root))
    if marked is not None:
        found = newest_marking()
        return Detection(found, f"detected: {marked.name} in {marked.parent.name} carries \"value_precision\" "
                                f"(newest row that writes it)", warning)
    why = "no \"value_precision\" marker in any golden" + ("" if files else " and no Megatron comparator files found")
    return Detection(LEGACY, f"detected: {why}", warning)
