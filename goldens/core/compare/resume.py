"""The resume check: a run's resumed phase (2) against its own phase 1 on the steps both ran.

Its own verdict, separate from the golden comparison. ``resume: exact`` (the default): the
deterministic metrics must be bit-equal on every overlapping step, as both phases ran on one
machine; time and memory are not part of it. ``approx``: each metric's policy, approximately.
``as_golden``: each metric's policy under the comparison's regime, phase 1 standing as the golden —
Megatron's resume test, which with ``resume_after`` compares only the steps after train_iters // 2
and with ``required`` fails a listed metric either phase lacks. ``none``: no check.
"""
from __future__ import annotations

import numpy as np

from ..model import MetricSeries, valued_span
from ..modes.common import Context
from ..policy.schema import PolicySet
from ..result import ResumeCheck, Verdict
from .engine import compare_metric
from .sides import Side


def resume_check(candidate: Side, policies: PolicySet, exact_regime: bool = False) -> ResumeCheck | None:
    """Phase 2 (resumed) against phase 1 on the steps both ran; its own verdict (see the module).
    ``exact_regime``: the comparison's regime, which ``as_golden`` applies."""
    if policies.resume == "none":
        return None
    if 1 not in candidate.phases or 2 not in candidate.phases:
        if policies.resume_required:
            which = "phase 1" if 1 not in candidate.phases else "resumed phase (no _2nd file)"
            return ResumeCheck(Verdict.FAIL, f"the run has no {which}: the resume check the case asks for cannot run")
        return None
    first, second = candidate.phases[1], candidate.phases[2]
    verdicts = []
    overlap_total = 0
    mode = policies.resume
    exact = mode == "exact" or (mode == "as_golden" and exact_regime)
    reason = {"exact": "resume check: both phases on one machine", "as_golden": "resume check: the golden's regime"}
    ctx = Context(phase=2, exact=exact, same_platform=True, exact_reason=reason.get(mode, "") if exact else "")
    after = policies.resume_after
    required = policies.required if mode == "as_golden" else ()
    names = [n for n in second if n in first] + [n for n in required if n not in first or n not in second]
    for name in names:
        a, b = first.get(name), second.get(name)
        # Phase 2 ran from its first value on: a leading NaN run is the padding of a Megatron
        # ``_2nd`` file (steps before the resume), not steps that phase ran.
        ran = np.empty(0, dtype=np.int64) if b is None else b.steps[valued_span(b.values).start:]
        cut = after
        if cut is None and mode == "as_golden" and ran.size:
            cut = int(ran[0]) - 1  # without a stated cut: from the step phase 2 resumed at
        if cut is not None:
            a, b = _after(a, cut), _after(b, cut)
            ran = ran[ran > cut]
        resolved = policies.resolve(name)
        policy = resolved.policy
        origin = f"resume check ({mode}); {resolved.origin}"
        if policy is not None and mode == "exact" and not (policy.deterministic or policy.mode == "exact"):
            policy = None
            origin = "resume check: not a deterministic metric"
        why = (policies.required_origin or "required") if name in required else None
        if mode == "as_golden" and a is not None and b is not None:
            # Phase 1 stands as the golden on its own steps (after the cut): every one is judged.
            overlap_total = max(overlap_total, int(np.intersect1d(a.steps, ran, assume_unique=True).size))
            verdicts.append(compare_metric(name, a, b, policy, ctx, origin=origin, required=why))
            continue
        if a is None or b is None:
            verdicts.append(compare_metric(name, a, b, policy, ctx, origin=origin, required=why))
            continue
        common = np.intersect1d(a.steps, ran, assume_unique=True)
        overlap_total = max(overlap_total, int(common.size))
        verdicts.append(compare_metric(name, _on(common, a), _on(common, b), policy, ctx, origin=origin, required=why))
    resumed = candidate.resumed_from
    judged = [v for v in verdicts if v.verdict in (Verdict.PASS, Verdict.FAIL)]
    failed = [v for v in verdicts if not v.passed]
    if failed:
        names_text = ", ".join(v.metric for v in failed)
        text = f"phase 2 diverges from phase 1 after resuming: {names_text}"
        return ResumeCheck(Verdict.FAIL, text, overlap_total, resumed, tuple(verdicts))
    if overlap_total == 0 and mode != "as_golden":
        return ResumeCheck(Verdict.SKIPPED, "phases 1 and 2 share no steps", 0, resumed, tuple(verdicts))
    if not judged:
        return ResumeCheck(Verdict.SKIPPED, "no metric to check" if mode == "as_golden" else
                           "no deterministic metric to check", overlap_total, resumed, tuple(verdicts))
    after_text = f" after step {after}" if after is not None else ""
    text = (f"phase 2 matches phase 1 on {overlap_total} overlapping steps{after_text} "
            f"({', '.join(v.metric for v in judged)})")
    return ResumeCheck(Verdict.PASS, text, overlap_total, resumed, tuple(verdicts))


# Phase 1 stands as the golden of phase 2, and a run's values are at full precision (Megatron's
# extraction marks them so since PR #7087): an exact resume check compares them raw.
RUN_PRECISION = "full"


def _on(steps: np.ndarray, series: MetricSeries) -> MetricSeries:
    """The series' values on ``steps`` (steps it holds), at a run's full precision."""
    return MetricSeries(series.name, steps, series.values[np.searchsorted(series.steps, steps)],
                        precision=RUN_PRECISION)


def _after(series: MetricSeries | None, step: int) -> MetricSeries | None:
    """The series' steps after ``step`` (Megatron's resume test drops the rest on both sides)."""
    if series is None:
        return None
    keep = series.steps > step
    return MetricSeries(series.name, series.steps[keep], series.values[keep], precision=RUN_PRECISION)
