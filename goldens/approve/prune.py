"""Prune: goldens no case defines and what else is odd about the tree (reported; goldens change
only through the store), and candidates no run backs any more (discarded)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import FormatError
from ..files.validate import ERROR, validate_golden_file
from ..store import Problem
from ..store.safety import in_ci
from .candidate import candidate_run, checked_pending_root, read_candidate, remove_empty_folders
from .guardrails import approved_since

if TYPE_CHECKING:
    from ..store import GoldenStore


@dataclass(frozen=True, kw_only=True)
class PruneReport:
    """Goldens no case defines, the tree's other findings (one per folder or file: a name two
    cases share, a case without goldens, a legacy name, an unreadable golden), and candidates no
    run backs."""

    orphan_goldens: tuple[Path, ...]
    stale_candidates: tuple[tuple[Path, str], ...]   # (pending file, why)
    findings: tuple[Problem, ...] = ()

    @property
    def clean(self) -> bool:
        return not self.orphan_goldens and not self.stale_candidates and not self.findings


CASE_DEFINITIONS = ("case.yaml", "model_config.yaml")  # ours, and a Megatron checkout's


def prune_check(store: GoldenStore) -> PruneReport:
    orphans = []
    findings = [p for p in store.findings() if p.kind != "orphan-folder"]
    for case in store.cases():
        case_dir = Path(store.case_dir(case))
        if not any((case_dir / name).is_file() for name in CASE_DEFINITIONS):
            orphans.extend(sorted(case_dir / key.filename() for key in store.keys(case)))
        for key in store.keys(case):
            report = validate_golden_file(case_dir / key.filename())
            errors = [f.message for f in report.findings if f.severity == ERROR]
            if errors:
                findings.append(Problem(case, "unreadable-golden", f"{key.filename()}: {errors[0]}",
                                        path=report.path))
    stale = []
    root = checked_pending_root(store)
    for path in sorted(root.rglob("*.json")) if root.is_dir() else ():  # checked: regular files only
        try:
            candidate = read_candidate(path)
        except FormatError as exc:
            stale.append((path, f"unreadable: {exc.reason}"))
            continue
        try:
            artifact = candidate_run(candidate)
        except FormatError:
            stale.append((path, f"run {candidate.run_id!r} is gone ({candidate.artifact})"))
            continue
        if artifact.run_id != candidate.run_id:
            stale.append((path, f"{candidate.artifact} now holds run {artifact.run_id!r}"))
            continue
        landed = approved_since(store, candidate)
        if landed is not None:
            stale.append((path, f"run {candidate.run_id!r} was already approved as {landed.label}"))
    return PruneReport(orphan_goldens=tuple(orphans), stale_candidates=tuple(stale), findings=tuple(findings))


def prune(store: GoldenStore, *, ci: bool | None = None) -> PruneReport:
    """Discard stale candidates; orphan goldens and findings are only reported (goldens change through
    the store). In CI (``CI`` set) nothing is discarded: the report says what would be."""
    report = prune_check(store)
    if in_ci(ci):
        return report
    for path, _ in report.stale_candidates:
        path.unlink(missing_ok=True)
        remove_empty_folders(path)
    return report

