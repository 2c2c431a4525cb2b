"""One metric, one phase: align, judge with the policy's mode, explain.

Every metric is aligned by step (``goldens.core.align``) and every aligned step gets an explicit
status — missing, extra, NaN on either side, outside the window — so a truncated run or a
different grid is a verdict with reasons, never a crash. The policy's mode
(``goldens.core.modes.MODES``) judges; all per-step work is vectorised. Relative tolerances are
relative to the reference (the golden).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..align import Aligned, align
from ..model import MetricSeries
from ..modes import MODES
from ..modes.common import CODE, Context, counted_problems, threshold
from ..policy.schema import MetricPolicy, PolicySet
from ..result import (
    MAX_SAMPLES,
    STEP_STATUSES,
    MetricVerdict,
    PhaseResult,
    Rule,
    Sample,
    StepStatus,
    StepTable,
    Verdict,
)
from .history import judge_by_history, uses_history


def mean_relative_diff(al: Aligned, mask: np.ndarray | None = None) -> float | None:
    """Signed mean of (actual - golden)/|golden| over the masked steps (default: both sides
    list the step) where both values are finite and the golden is nonzero.

    Always reported: a run 1 % worse on every step passes a 5 % rule but shows +1 % here.
    """
    if mask is None:
        mask = al.golden_row & al.actual_row
    g, a = al.golden, al.actual
    use = mask & np.isfinite(g) & np.isfinite(a) & (g != 0)
    if not use.any():
        return None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # the steps left out below
        relative = a - g
        relative /= np.abs(g)
    return float(np.mean(relative if use.all() else relative[use]))  # the used steps, in order, contiguous


def _compared(status: np.ndarray) -> np.ndarray:
    """Steps where both sides had a value inside the judged window."""
    return ((status == CODE[StepStatus.PASS]) | (status == CODE[StepStatus.FAIL])
            | (status == CODE[StepStatus.REDUCED]))


def _value(x: float | None) -> float | None:
    """NaN means 'no value' in the result's scalar fields (None); infinities are kept."""
    return None if x is None or np.isnan(x) else float(x)


def effective_policy(policy: MetricPolicy, exact_regime: bool) -> MetricPolicy:
    """A deterministic metric under the exact regime is compared bit-exactly on every step."""
    if exact_regime and policy.deterministic and policy.mode != "exact":
        return _derived(policy, "exact", lambda: policy.model_copy(update={"mode": "exact", "max_failing_steps": 0}))
    return policy


def comparison_decimals(policy: MetricPolicy, golden: MetricSeries | None) -> int | None:
    """The decimals both sides are rounded to before they are compared (None: compared as they are).
    Megatron PR #7087: approximate checks round; an exact check rounds only a legacy golden block,
    one not marked ``"value_precision": "full"``."""
    if policy.round_decimals is None:
        return None
    if policy.mode == "exact" and golden is not None and golden.precision == "full":
        return None
    return policy.round_decimals


def round_each(values: np.ndarray, decimals: int) -> np.ndarray:
    """Python's ``round(x, decimals)`` of each value, as Megatron's comparator rounds. Vectorised:
    rint(x·10^d)/10^d is that value unless x·10^d lies within its own rounding error of a half (or is
    not finite, or too large for a fraction); only those few go through ``round``."""
    scale = 10.0 ** decimals
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = values * scale
        out = np.rint(scaled) / scale
        distance = np.abs(scaled - np.floor(scaled) - 0.5)
        safe = (distance > np.abs(scaled) * 1e-15 + 1e-300) & (np.abs(scaled) < 2.0**52)
    risky = np.flatnonzero(~safe)
    if risky.size:
        out[risky] = [round(v, decimals) for v in values[risky].tolist()]
    return out


def rounded(al: Aligned, decimals: int) -> Aligned:
    """Both sides of an alignment rounded as Megatron's comparator rounds them."""
    return Aligned(al.step, round_each(al.golden, decimals), round_each(al.actual, decimals),
                   al.golden_row, al.actual_row)


_PER_STEP_RULES = ("exact", "approx")  # the modes whose rule is one threshold per step


def failing_samples(al: Aligned, status: np.ndarray, policy: MetricPolicy) -> tuple[Sample, ...]:
    """The failing steps of a per-step rule (out of tolerance, or missing / NaN where that counts), the
    first ``MAX_SAMPLES`` by step: values as compared, absolute and relative error, the tolerance."""
    fail = (status == CODE[StepStatus.FAIL]) | counted_problems(status, policy)
    at = np.flatnonzero(fail)[:MAX_SAMPLES]
    if not at.size:
        return ()
    golden, actual = al.golden[at], al.actual[at]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        tolerance = threshold(golden, policy, policy.mode == "exact")
        error = np.abs(actual - golden)
    samples = []
    names = [s.value for s in STEP_STATUSES]
    for i, g, a, e, t in zip(at.tolist(), golden.tolist(), actual.tolist(), error.tolist(), tolerance.tolist(),
                             strict=True):  # one row per failing step `at`
        finite = np.isfinite(e)
        relative = (e / abs(g)) if finite and g != 0 else (0.0 if finite and e == 0 else None)
        samples.append(Sample(step=int(al.step[i]), golden=_value(g), actual=_value(a),
                              abs_error=float(e) if finite else None, rel_error=relative,
                              tolerance=_value(t), status=names[int(status[i])]))
    return tuple(samples)


_DERIVED: dict[tuple[int, str], tuple[MetricPolicy, Any]] = {}


def _derived(policy: MetricPolicy, what: str, make: Any) -> Any:
    """What a policy (frozen) gives — its exact variant, its rule text, its parameters — made once per
    policy object: a bulk judgement asks the same policies thousands of times."""
    key = (id(policy), what)
    hit = _DERIVED.get(key)
    if hit is None or hit[0] is not policy:
        if len(_DERIVED) > 4096:
            _DERIVED.clear()
        hit = _DERIVED[key] = (policy, make())
    return hit[1]


def compare_metric(name: str, golden: MetricSeries | None, actual: MetricSeries | None,
                   policy: MetricPolicy | None, ctx: Context, *, origin: str = "",
                   missing_is_ok: bool = False, history: Sequence[MetricSeries] | None = None,
                   required: str | None = None) -> MetricVerdict:
    """One metric: align, evaluate with the policy's mode, explain. ``history``: the approved
    versions of the golden's series (see ``judge_by_history``). ``required``: why the metric must be
    judged (e.g. a Megatron case's METRICS): then one without a rule, or absent from the golden or the
    run, fails."""
    if required is not None and (policy is None or golden is None):
        return _required_but(name, golden, actual, policy, ctx, origin, required)
    al = align(golden, actual)
    if policy is None:
        # No rule for this metric (e.g. the megatron preset): report the numbers, judge nothing.
        effective = MetricPolicy(mode="exact")
        rule = Rule("none", {}, f"not judged ({origin})")
    else:
        effective = effective_policy(policy, ctx.exact)
        upgraded = effective is not policy
        text = _derived(effective, "describe", effective.describe)
        text += f" [{ctx.exact_reason}]" if upgraded or effective.mode == "exact" else ""
        rule = Rule(effective.mode, _derived(effective, "params", effective.params),
                    f"{text} — {origin}" if origin else text)
    decimals = None if policy is None else comparison_decimals(effective, golden)
    judged = al if decimals is None else rounded(al, decimals)
    outcome = MODES[effective.mode].evaluate(judged, effective, ctx)
    if history is not None and policy is not None and uses_history(effective) and ctx.same_platform \
            and outcome.judged and outcome.actual_value is not None:
        outcome, rule = judge_by_history(name, al, effective, ctx, outcome, rule, history, origin)
    table = StepTable(al.step, al.golden, al.actual, outcome.status)
    counts = table.counts()
    samples = failing_samples(judged, outcome.status, effective) \
        if policy is not None and outcome.failed and effective.mode in _PER_STEP_RULES else ()
    golden_value, actual_value = _value(outcome.golden_value), _value(outcome.actual_value)
    delta = delta_pct = None
    if golden_value is not None and actual_value is not None:
        delta = _value(actual_value - golden_value)
        if golden_value != 0 and np.isfinite(golden_value) and delta is not None:
            delta_pct = 100.0 * delta / abs(golden_value)
    drift = mean_relative_diff(al, _compared(outcome.status))

    def verdict(kind: Verdict, passed: bool, explanation: str, within_rule: bool | None = None) -> MetricVerdict:
        return MetricVerdict(metric=name, phase=ctx.phase, verdict=kind, passed=passed, rule=rule,
                             explanation=explanation, steps=table, step_counts=counts, mean_rel_diff=drift,
                             failing_steps=outcome.failing_steps, allowed_failing_steps=outcome.allowed_failing_steps,
                             total_steps=outcome.total_steps, worst_step=outcome.worst_step,
                             golden_value=golden_value, actual_value=actual_value, delta=delta, delta_pct=delta_pct,
                             samples=samples, sample_decimals=decimals if samples else None, within_rule=within_rule)

    drift_text = "" if drift is None else f"; mean rel diff {100.0 * drift:+.3g} %"
    run_only = counts.get(StepStatus.EXTRA.value, 0)
    if run_only and golden is not None:  # e.g. a run logging every step against a golden of every 5th
        drift_text += f"; {run_only} steps only in the run (no golden value there, not judged)"

    if actual is None:
        # A metric that would only be reported (never judged) cannot fail by being absent either.
        not_judged = policy is not None and (
            policy.report_only or (policy.only_on_same_platform and not ctx.same_platform))
        ok = missing_is_ok or policy is None or policy.on_missing == "ignore" or not_judged
        why = " (on_missing: fail)" if not ok else " (report only: not judged)" if not_judged else ""
        return verdict(Verdict.MISSING, ok, f"the run has no {name!r}{why}")
    if golden is None:
        return verdict(Verdict.NEW, True, f"{name!r} is new: the reference has no such metric")
    if policy is None:
        return verdict(Verdict.SKIPPED, True, f"not judged: {origin}; {outcome.summary}{drift_text}")
    if not outcome.judged:
        return verdict(Verdict.SKIPPED, True, f"not judged: {outcome.summary}")
    within = not outcome.failed  # also for report-only metrics: a report names those out of it
    if effective.report_only:
        return verdict(Verdict.SKIPPED, True, f"report only: {outcome.summary}{drift_text}", within)
    if effective.only_on_same_platform and not ctx.same_platform:
        return verdict(Verdict.SKIPPED, True,
                       f"report only ({ctx.other_platform_reason}): {outcome.summary}{drift_text}", within)
    return verdict(Verdict.FAIL if outcome.failed else Verdict.PASS, not outcome.failed,
                   f"{outcome.summary}{drift_text}", within)


def _required_but(name: str, golden: MetricSeries | None, actual: MetricSeries | None, policy: MetricPolicy | None,
                  ctx: Context, origin: str, required: str) -> MetricVerdict:
    """A required metric that cannot be judged fails, saying why (no rule, or no golden values)."""
    if policy is None:
        why = f"{name!r} is required ({required}) but has no rule ({origin}): Megatron's test fails (KeyError)"
        rule = Rule("none", {}, f"no rule — {origin}")
    else:
        absent = "the golden and the run have" if actual is None else "the golden has"
        why = f"{name!r} is required ({required}) but {absent} no such metric"
        rule = Rule(policy.mode, policy.params(), f"{policy.describe()} — {origin}")
    al = align(golden, actual)
    table = StepTable(al.step, al.golden, al.actual, np.full(al.step.shape, CODE[StepStatus.SKIPPED], dtype=np.int8))
    return MetricVerdict(metric=name, phase=ctx.phase, verdict=Verdict.FAIL, passed=False, rule=rule,
                         explanation=why, steps=table, step_counts=table.counts())


def _scalar_series(name: str, value: float) -> MetricSeries:
    return MetricSeries(name, np.zeros(1, np.int64), np.array([value]))


def compare_phase(reference: Mapping[str, MetricSeries], candidate: Mapping[str, MetricSeries],
                  policies: PolicySet, ctx: Context, *, reference_scalars: Mapping[str, float] = {},
                  candidate_scalars: Mapping[str, float] = {}, reference_label: str | None = None,
                  history: Mapping[str, Sequence[MetricSeries]] | None = None) -> PhaseResult:
    """Every metric of one phase; metric order: the reference's, then the candidate's new ones, then
    required ones neither side has. ``history``: the reference's approved versions per metric (None:
    not from a store)."""
    verdicts = []
    required = set(policies.required)
    names = [*reference, *(n for n in candidate if n not in reference)]
    names += [n for n in policies.required if n not in reference and n not in candidate]
    for name in names:
        resolved = policies.resolve(name)
        verdicts.append(compare_metric(name, reference.get(name), candidate.get(name),
                                       resolved.policy, ctx, origin=resolved.origin,
                                       history=None if history is None else history.get(name, ()),
                                       required=policies.required_origin or "required" if name in required else None))
    # Scalar entries (e.g. an old golden's "iteration_timing_avg"): one value each, no window.
    # Runs never produce them, so one the candidate lacks is reported, never a failure.
    for name in [*reference_scalars, *(n for n in candidate_scalars if n not in reference_scalars)]:
        resolved = policies.resolve(name)
        policy = None if resolved.policy is None else resolved.policy.model_copy(
            update={"skip_warmup": 0, "window": None})
        g = reference_scalars.get(name)
        a = candidate_scalars.get(name)
        verdicts.append(compare_metric(name, None if g is None else _scalar_series(name, g),
                                       None if a is None else _scalar_series(name, a),
                                       policy, ctx, origin=resolved.origin + " (scalar entry)",
                                       missing_is_ok=True))
    failed = any(not v.passed for v in verdicts)
    return PhaseResult(ctx.phase, Verdict.FAIL if failed else Verdict.PASS, tuple(verdicts), reference_label)
