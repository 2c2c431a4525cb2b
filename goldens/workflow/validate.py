"""``golden validate``: the golden and case files, each ok / warning / error, with what is odd about
the store's tree and history; with the audit, every golden judged against itself as Megatron's CI
judges it (``audit_tree``) — the tree's own defects, which a candidate's failure is not a regression of.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import GoldenError
from ..files.validate import ERROR, WARNING, FileReport, ValidationSummary, validate_paths
from ..files.validate import Finding as FileFinding
from ..store import GoldenStore
from .bulk import judge_bulk


def audit_tree(store_root: Path, *, generation: str | None = None) -> dict[str, list[str]]:
    """The tree's own defects: every golden judged against itself as Megatron's CI judges it (the
    megatron preset, nothing staged); each check that fails there — a resume pair that does not
    match, an inference file Megatron's reader cannot index — with the targets it fails in
    (``case env/platform``), each listed once. A candidate failing one of these is not a regression."""
    bulk = judge_bulk([store_root], store_root=store_root, policy="megatron", stage=False, generation=generation)
    found: dict[str, list[str]] = {}
    for result in bulk.results:
        for check in result.preexisting:
            found.setdefault(check, []).append(f"{result.case} {result.env}/{result.platform}")
    return {check: sorted(set(targets)) for check, targets in sorted(found.items())}


@dataclass(frozen=True)
class TreeValidation:
    """What ``golden validate`` found: a report per file — the store's own findings and, with the audit,
    the checks the committed goldens fail on themselves among them — and the audit by check."""

    summary: ValidationSummary
    audited: dict[str, list[str]] = field(default_factory=dict)


def validate_tree(paths: Sequence[Path], store: GoldenStore | None, *, audit: bool = False,
                  generation: str | None = None) -> TreeValidation:
    """The golden files and case files under ``paths`` (none: the store's), each ok / warning / error; with a
    store whose folder exists, also what is odd about its tree (a name two cases share, an orphan folder, …)
    and its history, read-only; with ``audit``, every golden judged against itself (``audit_tree``)."""
    if not paths and store is None:
        raise GoldenError("nothing to validate: give paths or a store")
    summary = validate_paths(list(paths) if paths else [store.root] if store is not None else [])
    in_store = store is not None and store.root.is_dir()
    if store is not None and in_store:
        problems = store.findings() + store.fsck(repair=False)
        extra = [FileReport(p.path or p.case, "store", (FileFinding(p.severity, f"{p.case}: {p.message}"),))
                 for p in problems if p.severity in (WARNING, ERROR)]
        summary = ValidationSummary(summary.reports + tuple(extra))
    if not audit:
        return TreeValidation(summary)
    if store is None or not in_store:
        raise GoldenError("--audit judges a store's goldens against themselves: give --store (or no PATHS)")
    audited = audit_tree(store.root, generation=generation)
    summary = ValidationSummary(summary.reports + tuple(
        FileReport(target, "audit", (FileFinding(WARNING, f"pre-existing: {check} fails on the committed goldens "
                                                          "themselves (Megatron's CI fails it too)"),))
        for check, targets in audited.items() for target in targets))
    return TreeValidation(summary, audited)
