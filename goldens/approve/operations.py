"""Accept and reject — one function taking an ``Operation``, as in insta — and rollback.

Accept writes a new golden version through the store (the only writer: atomic, locked, the
ledger append is the commit point), retrying its plan when another write lands first; reject
discards the staged candidate. Rollback writes a new version equal to an old one.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Sequence

from ..case import check_name
from ..errors import FormatError
from ..identity import resolve_approver
from ..model import GoldenKey, GoldenSet
from ..store import VersionConflict
from .candidate import Candidate, read_candidate
from .guardrails import ApprovalRefused, refuse_in_ci, require_reason
from .plan import Plan, Selection, plan_accept

if TYPE_CHECKING:
    from ..store import GoldenStore, LedgerEntry

CONFLICT_RETRIES = 50


class Operation(StrEnum):
    """What to do with a candidate: insta's accept/reject, sharing one code path."""

    ACCEPT = "accept"
    REJECT = "reject"



@dataclass(frozen=True, kw_only=True)
class Outcome:
    candidate: Candidate
    operation: Operation
    entry: "LedgerEntry | None" = None   # the version written (accept)
    plan: Plan | None = None
    note: str = ""                        # why nothing was written, when nothing was



def discard(candidate: Candidate) -> None:
    """Remove a staged candidate, unless a newer run was staged over it meanwhile."""
    if candidate.path is None:
        return
    try:
        if read_candidate(candidate.path).run_id != candidate.run_id:
            return
        candidate.path.unlink()
    except (FileNotFoundError, FormatError):
        return
    try:
        candidate.path.parent.rmdir()
    except OSError:
        pass


def _commit(store: "GoldenStore", candidate: Candidate, selection: Selection, *, reason: str,
            approver: str) -> Outcome:
    """Plan and write one accept; when another write lands first, plan again on top of it."""
    for _ in range(CONFLICT_RETRIES):
        plan = plan_accept(store, candidate, selection)
        if plan is None:
            return Outcome(candidate=candidate, operation=Operation.ACCEPT,
                           note="nothing selected (no failing metric matches the selection)")
        try:
            entry = store.write(candidate.case, plan.goldens(), approver=approver, reason=reason,
                                source_run_id=candidate.run_id, fingerprint=plan.artifact.fingerprint,
                                provenance=dict(plan.artifact.provenance, selection=plan.selection_record()),
                                expected_version=plan.base_version, action="approve")
        except VersionConflict:
            continue  # another write landed: plan again (refused if it touched this target)
        return Outcome(candidate=candidate, operation=Operation.ACCEPT, entry=entry, plan=plan)
    raise ApprovalRefused(f"{candidate.target}: the case kept changing under {CONFLICT_RETRIES} "
                          f"attempts; try again")


def apply(operation: Operation, store: "GoldenStore", candidates: Sequence[Candidate], *,
          reason: str | None = None, approver: str | None = None, selection: Selection = Selection(),
          ci: bool | None = None, allow_ci: bool = False) -> list[Outcome]:
    """Accept or reject candidates — one path for both, like insta.

    Accept: every guardrail is checked for every candidate before the first write, so a
    refusal writes nothing. Reject: the staged candidates are discarded, goldens untouched.
    Neither writes in CI (``CI`` set) unless ``allow_ci``.
    """
    if operation is Operation.REJECT:
        refuse_in_ci(ci, allow_ci)
        outcomes = []
        for candidate in candidates:
            if candidate.path is None:
                raise ApprovalRefused(f"run {candidate.run_id!r} has no pending candidate to reject")
            discard(candidate)
            outcomes.append(Outcome(candidate=candidate, operation=operation))
        return outcomes
    reason = require_reason(reason)
    refuse_in_ci(ci, allow_ci)
    targets = [c.target for c in candidates]
    duplicate = next((t for t in targets if targets.count(t) > 1), None)
    if duplicate:
        raise ApprovalRefused(f"two candidates target {duplicate}: approve one at a time")
    for candidate in candidates:
        plan_accept(store, candidate, selection)
    approver = resolve_approver(approver, store.root)
    outcomes = []
    for candidate in candidates:
        outcome = _commit(store, candidate, selection, reason=reason, approver=approver)
        if outcome.entry is not None:
            discard(candidate)
        outcomes.append(outcome)
    return outcomes


# ---------------------------------------------------------------- rollback

def rollback(store: "GoldenStore", case: str, version: int, *, reason: str | None,
             approver: str | None = None, ci: bool | None = None, allow_ci: bool = False) -> "LedgerEntry":
    """A new version whose content equals ``version`` (history is never rewritten): files that
    version did not have are removed, and the entry carries that version's run and fingerprint."""
    reason = require_reason(reason)
    refuse_in_ci(ci, allow_ci)
    check_name(case)
    history = store.history(case)
    target = next((e for e in history if int(e.version) == version), None)
    if target is None:
        known = ", ".join(f"v{e.version}" for e in history) or "none"
        raise ApprovalRefused(f"{case} has no version v{version} (versions: {known})")
    current = history[-1]
    goldens: dict[GoldenKey, GoldenSet | None] = dict(store.read_version(case, version))
    head = store.read_version(case, int(current.version))
    if int(current.version) == version or head == goldens:
        raise ApprovalRefused(f"{case} v{current.version} already holds the content of v{version}")
    for key in [*head, *store.keys(case)]:
        goldens.setdefault(key, None)  # a file v{version} did not have is removed
    return store.write(case, goldens, approver=resolve_approver(approver, store.root), reason=reason,
                       source_run_id=target.source_run_id, fingerprint=target.fingerprint,
                       provenance=dict(_without_selection(target.provenance), rollback_to=version),
                       expected_version=int(current.version),
                       action="rollback")


def _without_selection(provenance: dict[str, Any] | None) -> dict[str, Any]:
    """A version's run provenance (fingerprint fields, model args) without what that approval picked."""
    return {k: v for k, v in (provenance or {}).items() if k not in ("selection", "rollback_to")}

