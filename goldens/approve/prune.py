"""Prune: goldens no case defines (reported; goldens change only through the store) and
candidates no run backs any more (discarded)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import FormatError
from ..store.safety import in_ci
from .candidate import Candidate, candidate_run, checked_pending_root, read_candidate

if TYPE_CHECKING:
    from ..store import GoldenStore, LedgerEntry


@dataclass(frozen=True, kw_only=True)
class PruneReport:
    """Goldens no case defines, and candidates no run backs."""

    orphan_goldens: tuple[Path, ...]
    stale_candidates: tuple[tuple[Path, str], ...]   # (pending file, why)

    @property
    def clean(self) -> bool:
        return not self.orphan_goldens and not self.stale_candidates


CASE_DEFINITIONS = ("case.yaml", "model_config.yaml")  # ours, and a Megatron checkout's


def prune_check(store: "GoldenStore") -> PruneReport:
    orphans = []
    for case in store.cases():
        case_dir = Path(store.case_dir(case))
        if not any((case_dir / name).is_file() for name in CASE_DEFINITIONS):
            orphans.extend(sorted(case_dir / key.filename() for key in store.keys(case)))
    stale = []
    root = checked_pending_root(store)
    for path in sorted(root.glob("*/*.json")) if root.is_dir() else ():
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
            stale.append((path, f"run {candidate.run_id!r} was already approved as v{landed.version}"))
    return PruneReport(orphan_goldens=tuple(orphans), stale_candidates=tuple(stale))


def approved_since(store: "GoldenStore", candidate: Candidate) -> "LedgerEntry | None":
    """The version that approved this very run after the candidate was staged (a crash between
    the commit and discarding the candidate leaves it staged)."""
    if candidate.base_version is None or candidate.case not in store.cases():
        return None
    return next((e for e in store.history(candidate.case)
                 if int(e.version) > candidate.base_version and e.source_run_id == candidate.run_id), None)


def prune(store: "GoldenStore", *, ci: bool | None = None) -> PruneReport:
    """Discard stale candidates; orphan goldens are only reported (goldens change via the ledger).
    In CI (``CI`` set) nothing is discarded: the report says what would be."""
    report = prune_check(store)
    if in_ci(ci):
        return report
    for path, _ in report.stale_candidates:
        path.unlink(missing_ok=True)
        try:
            path.parent.rmdir()
        except OSError:
            pass
    return report

