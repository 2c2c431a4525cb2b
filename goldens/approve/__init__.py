"""Pending candidates and the approval workflow: stage, accept, reject, review, rollback, prune.

The insta split: ``golden diff`` / ``golden check`` only *stage* a candidate (``candidate``); a
person then accepts it — a new golden version through the store — or rejects it (``apply``, one
function for both), one at a time in ``review`` or in bulk. Every guardrail (``guardrails``)
refuses *before* anything is written. ``plan`` builds what an accept writes; ``runs`` resolves
which run is meant; ``prune`` clears what no run backs.

The modules import one way: ``candidate`` at the bottom, ``guardrails`` above it, ``runs`` and
``prune`` above those, then ``plan``, ``operations`` and ``review`` on top.
"""
from __future__ import annotations

from .candidate import (
                        PENDING_DIR,
                        PENDING_SCHEMA,
                        Candidate,
                        CandidateMetric,
                        candidate_path,
                        candidate_run,
                        list_pending,
                        pending_root,
                        read_candidate,
                        run_target,
                        stage_candidate,
)
from .guardrails import (
                        ApprovalRefused,
                        approved_since,
                        check_base_version,
                        check_finite,
                        check_run,
                        in_ci,
                        refuse_in_ci,
                        require_reason,
)
from .operations import CONFLICT_RETRIES, Operation, Outcome, apply, discard, rollback
from .plan import KeyChange, Plan, Selection, goldens_at, merge, plan_accept, recorded_selection
from .prune import CASE_DEFINITIONS, PruneReport, prune, prune_check
from .review import REVIEW_KEYS, CandidateView, MetricView, ReviewIO, ReviewSummary, candidate_view, review
from .runs import candidates_for_run, resolve_run

__all__ = [
                        "CASE_DEFINITIONS",
                        "CONFLICT_RETRIES",
                        "PENDING_DIR",
                        "PENDING_SCHEMA",
                        "REVIEW_KEYS",
                        "ApprovalRefused",
                        "Candidate",
                        "CandidateMetric",
                        "CandidateView",
                        "KeyChange",
                        "MetricView",
                        "Operation",
                        "Outcome",
                        "Plan",
                        "PruneReport",
                        "ReviewIO",
                        "ReviewSummary",
                        "Selection",
                        "apply",
                        "approved_since",
                        "candidate_path",
                        "candidate_run",
                        "candidate_view",
                        "candidates_for_run",
                        "check_base_version",
                        "check_finite",
                        "check_run",
                        "discard",
                        "goldens_at",
                        "in_ci",
                        "list_pending",
                        "merge",
                        "pending_root",
                        "plan_accept",
                        "prune",
                        "prune_check",
                        "read_candidate",
                        "recorded_selection",
                        "refuse_in_ci",
                        "require_reason",
                        "resolve_run",
                        "review",
                        "rollback",
                        "run_target",
                        "stage_candidate",
]
