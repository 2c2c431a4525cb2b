"""Accept and reject — one function taking an ``Operation``, as in insta — and rollback.

Accept writes a new golden version through the store (the only writer: atomic, locked, with one
commit point — the ledger line, or the git backend's journal), retrying its plan when another write
lands first; reject discards the staged candidate. Rollback writes a new version whose files hold
exactly the bytes an old one held.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from ..core.errors import FormatError
from ..store import NothingToRestore, VersionConflict
from ..store.identity import resolve_approver
from .candidate import Candidate, read_candidate, remove_empty_folders
from .guardrails import ApprovalRefused, refuse_in_ci, require_reason
from .plan import EVERY_METRIC, Plan, Selection, plan_accept

if TYPE_CHECKING:
    from ..store import GoldenStore, Version

CONFLICT_RETRIES = 50


class Operation(StrEnum):
    """What to do with a candidate: insta's accept/reject, sharing one code path."""

    ACCEPT = "accept"
    REJECT = "reject"


@dataclass(frozen=True, kw_only=True)
class Outcome:
    candidate: Candidate
    operation: Operation
    entry: Version | None = None       # the version written (accept)
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
    remove_empty_folders(candidate.path)


def _commit(store: GoldenStore, candidate: Candidate, selection: Selection, *, reason: str,
            approver: str, ci: bool | None, allow_ci: bool) -> Outcome:
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
                                expected_version=plan.base_version, expected_files=plan.base_files,
                                action="approve", ci=ci, allow_ci=allow_ci)
        except VersionConflict:
            continue  # another write landed: plan again (refused if it touched this target)
        return Outcome(candidate=candidate, operation=Operation.ACCEPT, entry=entry, plan=plan)
    raise ApprovalRefused(f"{candidate.target}: the case kept changing under {CONFLICT_RETRIES} "
                          f"attempts; try again")


def apply(operation: Operation, store: GoldenStore, candidates: Sequence[Candidate], *,
          reason: str | None = None, approver: str | None = None, selection: Selection = EVERY_METRIC,
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
        outcome = _commit(store, candidate, selection, reason=reason, approver=approver, ci=ci, allow_ci=allow_ci)
        if outcome.entry is not None:
            discard(candidate)
        outcomes.append(outcome)
    return outcomes


# ---------------------------------------------------------------- rollback

def rollback(store: GoldenStore, case: str, version: str | int, *, reason: str | None,
             approver: str | None = None, ci: bool | None = None, allow_ci: bool = False) -> Version:
    """A new version whose files hold exactly the bytes they held at ``version`` (``vN`` in a ledger
    store, a revision in git; history is never rewritten): files that version did not have are
    removed, files that already hold its bytes are not touched, and the record carries the run and
    fingerprint that version was approved from."""
    reason = require_reason(reason)
    refuse_in_ci(ci, allow_ci)
    ref = f"v{version}" if isinstance(version, int) else version
    try:
        return store.restore(case, ref, approver=resolve_approver(approver, store.root), reason=reason,
                             ci=ci, allow_ci=allow_ci)
    except NothingToRestore as exc:
        raise ApprovalRefused(str(exc)) from None
