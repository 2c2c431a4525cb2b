"""The resume check: a run's resumed phase (2) against its own phase 1 on the steps both ran.

Its own verdict, separate from the golden comparison: with ``resume: exact`` (the default) the
deterministic metrics must be bit-equal on every overlapping step, as both phases ran on one
machine; time and memory are not part of it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..model import MetricSeries, valued_span
from ..modes.common import Context
from ..result import ResumeCheck, Verdict
from .engine import compare_metric
from .sides import Side

if TYPE_CHECKING:
    from ..policy import PolicySet


def resume_check(candidate: Side, policies: PolicySet) -> ResumeCheck | None:
    """Phase 2 (resumed) against phase 1 on the steps both ran; its own verdict.

    ``policies.resume == "exact"``: deterministic metrics must be bit-equal on every
    overlapping step (both phases ran on one machine); others (time, memory) are not part of
    it. ``"approx"``: each metric's own policy.
    """
    if 1 not in candidate.phases or 2 not in candidate.phases:
        return None
    first, second = candidate.phases[1], candidate.phases[2]
    verdicts = []
    overlap_total = 0
    exact = policies.resume == "exact"
    ctx = Context(phase=2, exact=exact, same_platform=True,
                  exact_reason="resume check: both phases on one machine" if exact else "")
    for name in [n for n in second if n in first]:
        a, b = first[name], second[name]
        # Phase 2 ran from its first value on: a leading NaN run is the padding of a Megatron
        # ``_2nd`` file (steps before the resume), not steps that phase ran.
        ran = b.steps[valued_span(b.values).start:]
        common = np.intersect1d(a.steps, ran, assume_unique=True)
        overlap_total = max(overlap_total, int(common.size))
        pick = lambda s: MetricSeries(name, common, s.values[np.searchsorted(s.steps, common)])  # noqa: E731
        resolved = policies.resolve(name)
        policy = resolved.policy
        origin = f"resume check ({policies.resume}); {resolved.origin}"
        if policy is not None and exact and not (policy.deterministic or policy.mode == "exact"):
            policy = None
            origin = "resume check: not a deterministic metric"
        verdicts.append(compare_metric(name, pick(a), pick(b), policy, ctx, origin=origin))
    resumed = candidate.resumed_from
    if overlap_total == 0:
        return ResumeCheck(Verdict.SKIPPED, "phases 1 and 2 share no steps", 0, resumed, tuple(verdicts))
    judged = [v for v in verdicts if v.verdict in (Verdict.PASS, Verdict.FAIL)]
    failed = [v for v in judged if not v.passed]
    if not judged:
        return ResumeCheck(Verdict.SKIPPED, "no deterministic metric to check", overlap_total, resumed, tuple(verdicts))
    if failed:
        names = ", ".join(v.metric for v in failed)
        text = f"phase 2 diverges from phase 1 after resuming: {names}"
        return ResumeCheck(Verdict.FAIL, text, overlap_total, resumed, tuple(verdicts))
    text = f"phase 2 matches phase 1 on {overlap_total} overlapping steps ({', '.join(v.metric for v in judged)})"
    return ResumeCheck(Verdict.PASS, text, overlap_total, resumed, tuple(verdicts))
