"""The store's tree: which folders are cases, what each case is called, and what is odd about it.

A case is its folder's path under the store root, posix and relative (``gpt/gpt3_7b_tp1_pp4_memory_speed``;
in a flat store such as ours, just the folder's name). A bare name is accepted wherever it names one
case; a name two model folders share is ambiguous, and the error lists the paths. A folder is a case
folder when it holds a case definition (``case.yaml``, Megatron's ``model_config.yaml``) or a golden
file; folders below a case folder, hidden folders and ``__pycache__`` are not searched.

What a real Megatron tree holds beside well-formed cases — the same name under two model folders, an
orphan folder (goldens, no case definition), a case without goldens, a legacy file name the store
cannot address (``golden_values_lts.json``), a folder whose name is no valid case path — is a
*finding* (``findings``), never an error that stops another case from working.
"""
from __future__ import annotations

import difflib
import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import StoreError
from ..files.case import CASE_FILE, check_case_path
from ..files.formats.golden import parse_golden_filename
from ..files.validate import MEGATRON_CASE_FILE, WARNING, is_golden_name
from .records import Problem

CASE_DEFINITIONS = (CASE_FILE, MEGATRON_CASE_FILE)
_PATTERN = re.compile(r"^[A-Za-z0-9_.*?\[\]/-]{1,400}$")


@dataclass(frozen=True)
class CaseFolder:
    """One case folder as found on disk."""

    path: str                       # the case: its store-relative posix path
    folder: Path
    definition: str | None          # case.yaml / model_config.yaml; None: an orphan folder
    goldens: tuple[str, ...]        # golden file names the store can address
    unaddressable: tuple[str, ...]  # golden_values*.json names that do not parse (legacy names)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def _is_case_folder(files: list[str]) -> bool:
    return any(f in CASE_DEFINITIONS or is_golden_name(f) for f in files)


class CaseTree:
    """Every case folder below ``root``, by path and by bare name."""

    def __init__(self, root: Path):
        if not root.is_dir():
            raise StoreError(f"no golden store at {root} (set --store or $GOLDEN_STORE)")
        self.root = root
        self.cases: dict[str, CaseFolder] = {}
        self.bad_folders: list[Path] = []   # case folders whose path is no valid case path
        for top, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
            here = Path(top)
            if here == root or not _is_case_folder(files):
                continue
            dirs[:] = []  # a case folder holds no cases
            path = here.relative_to(root).as_posix()
            try:
                check_case_path(path)
            except StoreError:
                self.bad_folders.append(here)
                continue
            names = sorted(files)
            definition = next((d for d in CASE_DEFINITIONS if d in names), None)
            goldens = tuple(n for n in names if parse_golden_filename(n) is not None)
            odd = tuple(n for n in names if is_golden_name(n) and parse_golden_filename(n) is None)
            self.cases[path] = CaseFolder(path, here, definition, goldens, odd)
        self._by_name: dict[str, list[str]] = {}
        for path in self.cases:
            self._by_name.setdefault(path.rsplit("/", 1)[-1], []).append(path)

    def paths(self) -> list[str]:
        return sorted(self.cases)

    def resolve(self, ref: str) -> str:
        """A case path, or a bare name that names one case, → the case's path; else StoreError
        (an ambiguous name lists its paths; an unknown one suggests the closest)."""
        check_case_path(ref)
        if ref in self.cases:
            return ref
        matches = self._by_name.get(ref, []) if "/" not in ref else []
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise StoreError(f"case name {ref!r} is ambiguous in store {self.root}: "
                             f"{', '.join(sorted(matches))} (give the path)")
        close = difflib.get_close_matches(ref, list(self.cases) + list(self._by_name), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise StoreError(f"unknown case {ref!r} in store {self.root} ({len(self.cases)} cases){hint}")

    def case_for_folder(self, folder: Path) -> str | None:
        """The case a folder elsewhere stands for: the longest tail of its path that is a case path
        here (``…/test_cases/moe/x`` → ``moe/x``); a folder inside the store is its own path."""
        folder = Path(os.path.abspath(folder))
        root = Path(os.path.abspath(self.root))
        if folder.is_relative_to(root) and folder != root:
            path = folder.relative_to(root).as_posix()
            return path if path in self.cases else None
        parts = folder.parts
        for size in range(min(len(parts), 8), 0, -1):
            tail = "/".join(parts[-size:])
            if tail in self.cases:
                return tail
        return None

    def matching(self, pattern: str) -> list[str]:
        """Case paths a pattern selects: a path or bare name, or a glob (``gpt/*``, ``*memory_speed``);
        without '/', the pattern is also matched against each case's bare name."""
        check_case_pattern(pattern)
        return [p for p in self.paths() if case_matches(pattern, p)]

    def findings(self) -> list[Problem]:
        """What is odd about the tree, one finding per folder or file (all warnings)."""
        found: list[Problem] = []
        for name, paths in sorted(self._by_name.items()):
            if len(paths) > 1:
                listed = ", ".join(sorted(paths))
                for path in sorted(paths):
                    found.append(Problem(path, "duplicate-name", f"case name {name!r} is used by {listed}: "
                                                                 f"refer to these cases by path",
                                         severity=WARNING, path=str(self.cases[path].folder)))
        for path, case in sorted(self.cases.items()):
            if case.definition is None:
                found.append(Problem(path, "orphan-folder", f"no {' or '.join(CASE_DEFINITIONS)} beside its goldens "
                                                            f"({len(case.goldens) + len(case.unaddressable)} files)",
                                     severity=WARNING, path=str(case.folder)))
            elif not case.goldens:
                found.append(Problem(path, "no-goldens", "a case without golden files", severity=WARNING,
                                     path=str(case.folder)))
            for odd in case.unaddressable:
                found.append(Problem(path, "legacy-name", f"{odd} does not follow golden_values_<env>_<platform>"
                                                          f"[_2nd].json: the store cannot address it",
                                     severity=WARNING, path=str(case.folder / odd)))
        for folder in self.bad_folders:
            found.append(Problem(folder.relative_to(self.root).as_posix(), "bad-case-name",
                                 f"case folder {folder} cannot be addressed: its path is not a valid case path "
                                 f"(letters, digits, '_', '-', '.' in each part)", severity=WARNING, path=str(folder)))
        return found


def check_case_pattern(pattern: str) -> str:
    """A case pattern (``--case`` where several cases may be meant): a path, a name or a glob."""
    if not isinstance(pattern, str) or not _PATTERN.fullmatch(pattern) or ".." in pattern \
            or pattern.startswith("/"):
        raise StoreError(f"invalid case pattern {pattern!r}: a case path, a bare name or a glob such as gpt/* "
                         f"(letters, digits, '_', '-', '.', '/', '*', '?', '[]')")
    return pattern


def is_pattern(text: str) -> bool:
    return any(c in text for c in "*?[")


def case_matches(pattern: str, case: str) -> bool:
    if fnmatch.fnmatchcase(case, pattern):
        return True
    return "/" not in pattern and fnmatch.fnmatchcase(case.rsplit("/", 1)[-1], pattern)
