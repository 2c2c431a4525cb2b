"""Lint changed golden files as Megatron's CI lints them (``tools/check_golden_values.py``).

The rules come from the tree's generation (``goldens.core.megatron``):
- every generation: a changed golden file of a Megatron case may hold no NaN and no infinity anywhere
  (``"nan"`` included: Megatron's extraction no longer writes it);
- since PR #7217: a changed metric block of a deterministic case — one whose CI mode is exact
  (model_config.yaml, as ``goldens.megatron.case`` reads it) — must carry ``"value_precision": "full"``;
  a case whose pipeline runs no golden-value check (SKIP_PYTEST, lightweight mode, …) is exempt, and
  ``--allow-legacy-precision`` turns the rule off for a local run. The marker decides, never the number
  of digits printed. A pure rename changes nothing.

A block is changed when the file is new, or its JSON object differs from the one at the base revision;
files named without a base count as changed as a whole.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import FormatError, GoldenError, StoreError
from ..core.megatron import REGULAR, Detection
from ..files.formats.jsontext import load_json_text
from ..files.gitrepo import GitRepo
from ..files.validate import CASE_DEFINITION_FILES, CASE_FILE, ERROR, FileReport, Finding, is_golden_name, validate_file
from .case import MODEL_CONFIG, read_megatron_case
from .detect import detect_generation

_NONFINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


@dataclass(frozen=True)
class ChangedFile:
    """A golden file a change touched, and its bytes at the base (None: new, or no base given)."""

    path: Path
    before: bytes | None
    whole: bool  # no base: every block counts as changed


def changed_files(base: str | None, files: Iterable[str | Path], cwd: Path) -> list[ChangedFile]:
    """The golden files to lint: ``files`` (against ``base`` when given), else every golden file that
    differs between ``base`` (default HEAD) and the work tree, pure renames left out."""
    given = [Path(f) for f in files]
    if given and base is None:
        return [ChangedFile(p, None, True) for p in given if is_golden_name(p.name)]
    repo = GitRepo.find(cwd)
    if repo is None:
        raise GoldenError(f"--changed without FILES needs a git work tree (none at {cwd})")
    if given:
        paths = [p for p in given if is_golden_name(p.name)]
    else:
        ref = repo.resolve(base or "HEAD")
        listing = repo.git("diff", "--name-status", "-z", "--find-renames", "--diff-filter=AMR", ref, "--")
        fields = [f.decode("utf-8", "surrogateescape") for f in listing.split(b"\0") if f]
        paths, i = [], 0
        while i < len(fields):
            status = fields[i]
            if status.startswith("R"):
                if status != "R100" and is_golden_name(Path(fields[i + 2]).name):  # a pure rename: skipped
                    paths.append(repo.top / fields[i + 2])
                i += 3
            else:
                if is_golden_name(Path(fields[i + 1]).name):
                    paths.append(repo.top / fields[i + 1])
                i += 2
        untracked = repo.git("ls-files", "-z", "--others", "--exclude-standard")
        paths += [repo.top / f.decode("utf-8", "surrogateescape") for f in untracked.split(b"\0")
                  if f and is_golden_name(Path(f.decode("utf-8", "surrogateescape")).name)]
    return [ChangedFile(p, _at(repo, base or "HEAD", p), False) for p in paths]


def _at(repo: GitRepo, ref: str, path: Path) -> bytes | None:
    """A file's bytes at ``ref`` (None: it did not exist there)."""
    prefix = repo.prefix(path.parent)
    try:
        commit = repo.resolve(ref)
        return repo.git("show", f"{commit}:{prefix}/{path.name}" if prefix else f"{commit}:{path.name}")
    except StoreError:
        return None


def _document(data: bytes | None) -> dict[str, Any]:
    if data is None:
        return {}
    try:
        doc = load_json_text(data.decode("utf-8"))
    except (FormatError, UnicodeDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _nonfinite(value: Any, where: str) -> Iterable[str]:
    """Where ``value`` holds a NaN or an infinity, as Megatron's linter finds them (strings too)."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _nonfinite(child, f"{where}[{key!r}]")
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _nonfinite(child, f"{where}[{index}]")
    elif (isinstance(value, float) and not math.isfinite(value)) or str(value).strip().lower() in _NONFINITE:
        yield where


def _deterministic(folder: Path) -> tuple[bool, str]:
    """Whether the case in ``folder`` is compared exactly by Megatron's CI, and why."""
    config = folder / MODEL_CONFIG
    if not config.is_file():
        return False, "not a Megatron case"
    try:
        case = read_megatron_case(config)
    except FormatError as exc:
        return False, f"model_config.yaml unreadable ({exc.reason})"
    if REGULAR not in case.pipelines:
        return False, f"opted out: {case.pipeline_origin}"
    if case.allow_nondeterministic:
        return False, "approximate only (ENV_VARS allow nondeterministic results)"
    return True, "deterministic (exact CI mode)"


def _tree_root(folder: Path) -> Path:
    """The test_cases folder a golden lies in (its tree), else its own folder."""
    for parent in (folder, *folder.parents):
        if parent.name == "test_cases":
            return parent
    return folder


def lint_file(changed: ChangedFile, detection: Detection, *, allow_legacy_precision: bool = False) -> FileReport:
    """One changed golden file: the usual validation, then the generation's linter rules."""
    report = validate_file(changed.path)
    findings = list(report.findings)
    folder = changed.path.parent
    megatron = (folder / MODEL_CONFIG).is_file() and not (folder / CASE_FILE).is_file()
    if not megatron:
        return report
    try:
        doc = _document(changed.path.read_bytes())
    except OSError:
        return FileReport(report.path, report.kind, tuple(findings))
    row = detection.generation
    if row.lint_finite:
        bad = list(_nonfinite(doc, "$"))
        if bad:
            shown = ", ".join(bad[:5]) + (f", … ({len(bad)} in all)" if len(bad) > 5 else "")
            findings.append(Finding(ERROR, f"non-finite value at {shown}: Megatron's linter "
                                           f"(tools/check_golden_values.py) rejects a changed golden holding "
                                           f"NaN or infinity"))
    if row.lint_requires_marker and row.marker is not None:
        deterministic, why = _deterministic(folder)
        if deterministic:
            before = {} if changed.whole else _document(changed.before)
            key, value = row.marker
            for name, block in doc.items():
                if not isinstance(block, dict) or "values" not in block:
                    continue
                if not changed.whole and name in before and before[name] == block:
                    continue
                if block.get(key) == value:
                    continue
                if allow_legacy_precision:
                    findings.append(Finding("warning", f"{name!r}: changed block without \"{key}\": \"{value}\" "
                                                       f"(allowed by --allow-legacy-precision)", metric=name))
                else:
                    findings.append(Finding(ERROR, f"{name!r}: changed block of a deterministic case without "
                                                   f"\"{key}\": \"{value}\" (Megatron PR #{row.pr}: its CI would "
                                                   f"compare it at 5 decimals; {why}; --allow-legacy-precision "
                                                   f"overrides locally)", metric=name))
    return FileReport(report.path, report.kind, tuple(findings))


def lint_changed(files: Iterable[str | Path] = (), *, base: str | None = None, cwd: Path | None = None,
                 generation: str | None = None, allow_legacy_precision: bool = False
                 ) -> tuple[list[FileReport], list[Detection]]:
    """Every changed golden file linted by its tree's generation (a case definition given among the files
    is validated as ``golden validate`` does); the detections used (one per tree)."""
    given = [Path(f) for f in files]
    for path in given:
        if not path.exists():
            raise FormatError("no such file or directory", path=path)
    changed = changed_files(base, given, Path.cwd() if cwd is None else cwd)
    detections: dict[Path, Detection] = {}
    reports = [validate_file(p) for p in given if p.name in CASE_DEFINITION_FILES]
    for item in changed:
        root = _tree_root(item.path.resolve().parent)
        if root not in detections:
            detections[root] = detect_generation(root, generation)
        reports.append(lint_file(item, detections[root], allow_legacy_precision=allow_legacy_precision))
    return reports, list(detections.values())


def describe_rules(detection: Detection) -> str:
    """One line: which linter rules apply, from which generation."""
    row = detection.generation
    rules = ["no NaN or infinity in a changed Megatron golden"] if row.lint_finite else []
    if row.lint_requires_marker:
        rules.append("a changed block of a deterministic case carries \"value_precision\": \"full\"")
    return f"{detection.line}; lint rules: {'; '.join(rules) or 'none'}"


