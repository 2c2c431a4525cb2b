"""The comparison engine: two sides (golden sets, artifacts, versions) + policies → a frozen result.

Pure: numpy arrays and dataclasses in, ``ComparisonResult`` out; no files, no printing, no
asserts. Every metric is aligned by step (the union of both sides' steps) and every aligned
step gets an explicit status — missing, extra, NaN on either side, outside the window — so a
truncated run or a different grid is a verdict with reasons, never a crash. All per-step work
is vectorized: there is no Python loop over steps.

The reference is the first side (the golden, or ``REFERENCE`` in ``golden diff REF CAND``);
relative tolerances are relative to it. A reference read from a store may carry its approved
history (``Side.history``, gathered by ``goldens.diff_inputs``): step time is then judged
against that history once it holds ``stats.MIN_HISTORY`` samples (see ``judge_by_history``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .model import Artifact, GoldenSet, MetricSeries, valued_span
from .policy import MetricPolicy, PolicySet
from .result import (STEP_STATUS_CODE, ComparisonResult, FingerprintCheck, MetricVerdict, PhaseResult,
                     ResumeCheck, Rule, StepStatus, StepTable, Verdict, full_precision)

_S = {s: np.int8(STEP_STATUS_CODE[s]) for s in StepStatus}
NOTHING_TO_JUDGE = "no golden values in the judged window"


# ---------------------------------------------------------------- the two sides

@dataclass(frozen=True)
class Side:
    """One side of a comparison, whatever it was read from.

    ``phases`` maps phase number → metric name → series; phase 2 is a resume's second phase.
    ``fingerprint_fields`` (the inputs of the fingerprint hash) lets the result name which
    fields differ; ``model_args`` feeds the structural-drift section. ``history`` (a store's
    golden only) maps phase → metric → the series of every approved version of this golden,
    oldest first, one per distinct content: the baseline of the history-aware timing check.
    """

    label: str
    phases: Mapping[int, Mapping[str, MetricSeries]]
    scalars: Mapping[str, float] = field(default_factory=dict)
    fingerprint: str | None = None
    fingerprint_fields: Mapping[str, Any] | None = None
    model_args: Mapping[str, Any] | None = None
    platform: str | None = None
    resumed_from: int | None = None
    history: Mapping[int, Mapping[str, Sequence[MetricSeries]]] | None = None
    phase_sources: Mapping[int, str] = field(default_factory=dict)  # per-phase file, e.g. the _2nd golden


def side_from_goldens(goldens: Mapping[int, GoldenSet], label: str, *, fingerprint: str | None = None,
                      fingerprint_fields: Mapping[str, Any] | None = None,
                      model_args: Mapping[str, Any] | None = None, platform: str | None = None,
                      per_phase_sources: bool = False) -> Side:
    """Golden files of one key: {1: phase-1 golden, 2: the ``_2nd`` golden (optional)}.

    ``per_phase_sources`` labels each phase with its own file (the ``_2nd`` golden for phase 2)."""
    first = goldens.get(1)
    if platform is None:
        key = next((g.key for g in goldens.values() if g.key is not None), None)
        platform = key.platform if key is not None else None
    return Side(label=label, phases={p: dict(g.metrics) for p, g in sorted(goldens.items())},
                scalars=dict(first.scalars) if first is not None else {},
                fingerprint=fingerprint, fingerprint_fields=fingerprint_fields,
                model_args=model_args, platform=platform,
                phase_sources={p: g.source for p, g in goldens.items() if g.source} if per_phase_sources else {})


def recorded_identity(provenance: Any) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """(fingerprint fields, model arguments) as a provenance records them — a run's, or the
    ledger entry's that wrote a golden; None for what is absent or not a mapping."""
    prov = provenance if isinstance(provenance, Mapping) else {}
    fields = prov.get("fingerprint_fields")
    args = prov.get("model_args", prov.get("args"))
    return (fields if isinstance(fields, Mapping) else None, args if isinstance(args, Mapping) else None)


def side_from_artifact(artifact: Artifact, label: str | None = None) -> Side:
    """A run artifact; fingerprint, its fields, platform and model args come from provenance."""
    prov = artifact.provenance if isinstance(artifact.provenance, Mapping) else {}
    fields, args = recorded_identity(prov)
    phase2 = artifact.phases.get(2)
    platform = prov.get("platform")
    return Side(label=label or artifact.run_id,
                phases={n: dict(p.metrics) for n, p in sorted(artifact.phases.items())},
                fingerprint=prov.get("fingerprint") if isinstance(prov.get("fingerprint"), str) else None,
                fingerprint_fields=fields, model_args=args,
                platform=platform if isinstance(platform, str) else None,
                resumed_from=phase2.resumed_from if phase2 is not None else None)


# ---------------------------------------------------------------- which regime: exact or approx

def flatten_mapping(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted paths: ``{"versions": {"torch": …}}`` → ``versions.torch``."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_mapping(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def decide_regime(reference: Side, candidate: Side, force: str | None = None) -> FingerprintCheck:
    """Exact when both fingerprints are recorded and equal; else approx, naming what differs.

    A side without a fingerprint (two bare Megatron files, say) gets approx — what Megatron
    does under ``--allow-nondeterministic-algo``. ``force`` ("exact" | "approx") overrides.
    """
    ref, cand = reference.fingerprint, candidate.fingerprint
    differing: tuple[str, ...] = ()
    if reference.fingerprint_fields is not None and candidate.fingerprint_fields is not None:
        a, b = flatten_mapping(reference.fingerprint_fields), flatten_mapping(candidate.fingerprint_fields)
        differing = tuple(sorted(k for k in a.keys() | b.keys() if a.get(k, _MISSING) != b.get(k, _MISSING)))
    elif ref is not None and cand is not None and ref != cand:
        differing = ("fingerprint",)
    if ref is None and cand is None:
        natural, reason = False, "neither side has a recorded fingerprint"
    elif ref is None:
        natural, reason = False, "the reference has no recorded fingerprint"
    elif cand is None:
        natural, reason = False, "the candidate has no recorded fingerprint"
    elif ref == cand:
        natural, reason = True, "fingerprints equal"
    else:
        shown = ", ".join(differing[:6]) + (" …" if len(differing) > 6 else "")
        natural, reason = False, f"fingerprints differ ({shown})"
    if force is None:
        return FingerprintCheck(ref, cand, natural, reason, differing)
    if force not in ("exact", "approx"):
        raise ValueError(f"force must be 'exact' or 'approx', got {force!r}")
    return FingerprintCheck(ref, cand, force == "exact", f"forced --{force} ({reason})", differing, forced=force)


_MISSING = object()


# ---------------------------------------------------------------- alignment

@dataclass(frozen=True, eq=False)
class Aligned:
    """Both sides of one metric on the union of their steps (NaN + has_row=False where absent)."""

    step: np.ndarray
    golden: np.ndarray
    actual: np.ndarray
    golden_row: np.ndarray  # bool: the golden lists this step (its value may be NaN)
    actual_row: np.ndarray


def _sorted_union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union of two strictly increasing arrays in linear time: a stable sort (timsort) of two
    sorted runs is a merge; np.union1d would hash or sort from scratch."""
    merged = np.concatenate([a, b])
    merged.sort(kind="stable")
    keep = np.empty(merged.shape, dtype=bool)
    keep[:1] = True
    np.not_equal(merged[1:], merged[:-1], out=keep[1:])
    return merged[keep]


def align(golden: MetricSeries | None, actual: MetricSeries | None) -> Aligned:
    empty = MetricSeries("", np.empty(0, np.int64), np.empty(0))
    g, a = golden or empty, actual or empty
    if np.array_equal(g.steps, a.steps):
        rows = np.ones(g.steps.shape, dtype=bool)
        return Aligned(g.steps, g.values, a.values, rows, rows)
    steps = _sorted_union(g.steps, a.steps)

    def place(series: MetricSeries) -> tuple[np.ndarray, np.ndarray]:
        values = np.full(steps.shape, np.nan)
        row = np.zeros(steps.shape, dtype=bool)
        idx = np.searchsorted(steps, series.steps)
        values[idx] = series.values
        row[idx] = True
        return values, row

    gv, gr = place(g)
    av, ar = place(a)
    return Aligned(steps, gv, av, gr, ar)


# ---------------------------------------------------------------- evaluation of one metric

@dataclass(frozen=True)
class Context:
    """What the engine knows beyond the two series."""

    phase: int
    exact: bool          # the exact regime applies (fingerprints equal or forced)
    same_platform: bool
    exact_reason: str = ""
    other_platform_reason: str = "other platform"  # why a same-platform-only metric is not judged


@dataclass(frozen=True)
class Outcome:
    """What a mode's evaluator returns; the engine turns it into a MetricVerdict."""

    failed: bool
    status: np.ndarray
    failing_steps: int
    allowed_failing_steps: int
    total_steps: int
    worst_step: int | None
    golden_value: float | None
    actual_value: float | None
    summary: str  # the core of the explanation: what was found
    judged: bool = True  # False: nothing to judge (no golden steps in the window)


def _window_mask(al: Aligned, policy: MetricPolicy, ctx: Context) -> np.ndarray:
    golden_steps = al.step[al.golden_row]
    last = int(golden_steps[-1]) if golden_steps.size else None
    lo, hi = policy.window_for(last)
    mask = np.ones(al.step.shape, dtype=bool)
    if lo is not None:
        mask &= al.step >= lo
    if hi is not None:
        mask &= al.step <= hi
    if policy.skip_warmup:
        # A resumed phase warms up again after loading the checkpoint: count its warm-up from
        # the first step it ran, not from the padding before it.
        ran = golden_steps[valued_span(al.golden[al.golden_row]).start:] if ctx.phase == 2 else golden_steps
        cut = ran[policy.skip_warmup] if ran.size > policy.skip_warmup else None
        mask &= (al.step >= cut) if cut is not None else False
    return mask


def _base_status(al: Aligned, in_window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Statuses that do not depend on tolerance; returns (status, both_valued)."""
    g_nan, a_nan = np.isnan(al.golden), np.isnan(al.actual)
    g_val, a_val = al.golden_row & ~g_nan, al.actual_row & ~a_nan
    both = g_val & a_val
    status = np.full(al.step.shape, _S[StepStatus.EMPTY], dtype=np.int8)
    status[both] = _S[StepStatus.PASS]
    status[g_val & ~al.actual_row] = _S[StepStatus.MISSING]
    status[g_val & al.actual_row & a_nan] = _S[StepStatus.NAN_ACTUAL]
    status[a_val & al.golden_row & g_nan] = _S[StepStatus.NAN_GOLDEN]
    status[a_val & ~al.golden_row] = _S[StepStatus.EXTRA]
    status[~in_window] = _S[StepStatus.SKIPPED]
    return status, both & in_window


def _deviation(delta: np.ndarray | float, direction: str) -> Any:
    if direction == "increase_is_bad":
        return delta
    if direction == "decrease_is_bad":
        return -delta
    return np.abs(delta)


def _threshold(golden: np.ndarray | float, policy: MetricPolicy, exact: bool) -> Any:
    if exact:
        return np.zeros_like(golden) if isinstance(golden, np.ndarray) else 0.0
    thr = np.maximum(policy.atol, policy.rtol * np.abs(golden))
    return np.floor(thr) if policy.integer else thr


def _counted_problems(status: np.ndarray, policy: MetricPolicy) -> np.ndarray:
    """Per-step bool: missing/NaN steps that count as failing under on_missing / on_nan."""
    bad = np.zeros(status.shape, dtype=bool)
    if policy.on_missing == "fail":
        bad |= status == _S[StepStatus.MISSING]
    if policy.on_nan == "fail":
        bad |= (status == _S[StepStatus.NAN_ACTUAL]) | (status == _S[StepStatus.NAN_GOLDEN])
    return bad


def _pct(delta: float | None, golden: float | None) -> str:
    if delta is None or golden is None:
        return ""
    if golden == 0:
        return "" if delta == 0 else " (Δ% undefined: golden is 0)"
    return f" ({100.0 * delta / abs(golden):+.4g} %)"


def evaluate_per_step(al: Aligned, policy: MetricPolicy, ctx: Context) -> Outcome:
    """exact / approx: every judged step against the threshold, failing steps counted honestly."""
    exact = policy.mode == "exact"
    in_window = _window_mask(al, policy, ctx)
    status, both = _base_status(al, in_window)
    with np.errstate(invalid="ignore", over="ignore"):
        delta = al.actual - al.golden
        thr = _threshold(al.golden, policy, exact)
        dev = _deviation(delta, policy.direction)
        # An infinity only matches itself (as in numpy.isclose): inf·rtol must not excuse it.
        ok = (al.actual == al.golden) | ((dev <= thr) & np.isfinite(al.actual) & np.isfinite(al.golden))
    fail = both & ~ok
    status[fail] = _S[StepStatus.FAIL]
    problems = _counted_problems(status, policy)
    failing = int(np.count_nonzero(fail)) + int(np.count_nonzero(problems))
    total = int(np.count_nonzero(al.golden_row & in_window))
    allowed = policy.allowed_failing(total)
    worst = _worst(al, both, fail, problems, dev, thr)
    g = a = None
    if worst is not None:
        g, a = float(al.golden[worst]), float(al.actual[worst])
    word = "differ" if exact else "out of tolerance"
    if total == 0:
        return Outcome(False, status, 0, allowed, 0, None, None, None, NOTHING_TO_JUDGE, judged=False)
    n_fail = int(np.count_nonzero(fail))
    parts = [f"{failing} of {total} steps {word}" if failing else f"all {total} steps within the rule"]
    if failing:
        detail = []
        if n_fail:
            detail.append(f"{n_fail} by value")
        for st, label in ((StepStatus.MISSING, "missing in the run"), (StepStatus.NAN_ACTUAL, "NaN in the run"),
                          (StepStatus.NAN_GOLDEN, "NaN in the golden")):
            k = int(np.count_nonzero(problems & (status == _S[st])))
            if k:
                detail.append(f"{k} {label}")
        parts[0] += f" ({', '.join(detail)}; {allowed} allowed)"
    # Counted in T (Megatron's allowance counts every listed step), but nothing was compared
    # there: the "nan" padding of a _2nd file, or a golden's nan tail the run never reached.
    empty = int(np.count_nonzero(al.golden_row & in_window & (status == _S[StepStatus.EMPTY])))
    if empty:
        parts.append(f"{empty} of the {total} with no value on either side (not compared)")
    if worst is not None:
        d = None if a is None or g is None or np.isnan(a) or np.isnan(g) else a - g
        shown = "absent" if status[worst] == _S[StepStatus.MISSING] else full_precision(a)
        parts.append(f"worst step {int(al.step[worst])}: golden {full_precision(g)}, actual {shown}{_pct(d, g)}")
    return Outcome(failing > allowed, status, failing, allowed, total,
                   None if worst is None else int(al.step[worst]), g, a, "; ".join(parts))


def _worst(al: Aligned, both: np.ndarray, fail: np.ndarray, problems: np.ndarray,
           dev: np.ndarray, thr: np.ndarray) -> int | None:
    """Index of the worst step: the largest violation ratio; else the first counted missing/NaN
    step; else (all fine) the largest deviation."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(thr > 0, dev / np.where(thr > 0, thr, 1.0), np.where(dev > 0, np.inf, 0.0))
    ratio = np.where(np.isnan(ratio), np.inf, ratio)
    if fail.any():
        ranked = np.where(fail, ratio, -np.inf)
        # Ties (every failing step is "infinitely" out under a zero threshold, as in exact mode):
        # the largest relative deviation among them, not simply the first.
        tied = ranked == ranked.max()
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.abs(dev) / np.abs(al.golden)
        return int(np.argmax(np.where(tied, np.nan_to_num(relative, nan=np.inf), -np.inf)))
    if problems.any():
        return int(np.argmax(problems))
    if both.any():
        return int(np.argmax(np.where(both, np.abs(dev), -np.inf)))
    return None


_REDUCERS: dict[str, Callable[[np.ndarray], float]] = {
    "median": lambda v: float(np.median(v)), "mean": lambda v: float(np.mean(v)),
    "max": lambda v: float(np.max(v)), "min": lambda v: float(np.min(v)), "last": lambda v: float(v[-1]),
}


def evaluate_summary(al: Aligned, policy: MetricPolicy, ctx: Context) -> Outcome:
    """summary: reduce each side over the window (on the golden's grid), compare the two numbers."""
    window = _window_mask(al, policy, ctx)
    # The run's steps the golden lacks never count; they keep their own status (extra), not
    # "skipped", which means outside the judged window.
    status, both = _base_status(al, window)
    in_window = window & al.golden_row
    status[both] = _S[StepStatus.REDUCED]
    g_vals = al.golden[in_window & ~np.isnan(al.golden)]
    a_vals = al.actual[in_window & al.actual_row & ~np.isnan(al.actual)]
    problems = _counted_problems(status, policy)
    total = int(np.count_nonzero(in_window))
    n_problems = int(np.count_nonzero(problems))
    if g_vals.size == 0:
        return Outcome(False, status, 0, 0, total, None, None, None, NOTHING_TO_JUDGE, judged=False)
    reduce = _REDUCERS[policy.reduce]
    G = reduce(g_vals)
    if a_vals.size == 0:
        return Outcome(policy.on_missing == "fail", status, n_problems, 0, total, None, G, None,
                       f"the run has no values in the window ({policy.reduce} of golden {full_precision(G)})")
    A = reduce(a_vals)
    with np.errstate(invalid="ignore", over="ignore"):
        dev = _deviation(A - G, policy.direction)
        ok = bool(A == G or (np.isfinite(A) and np.isfinite(G)
                             and dev <= _threshold(G, policy, policy.mode == "exact")))
    failing = (0 if ok else 1) + n_problems
    text = (f"{policy.reduce} over {total} steps: golden {full_precision(G)}, "
            f"actual {full_precision(A)}{_pct(A - G, G)}")
    if n_problems:
        text += f"; {n_problems} steps missing or NaN in the window"
    text = ("within the rule: " if failing == 0 else "out of tolerance: ") + text
    return Outcome(failing > 0, status, failing, 0, total, None, G, A, text)


EVALUATORS: dict[str, Callable[[Aligned, MetricPolicy, Context], Outcome]] = {
    "exact": evaluate_per_step,
    "approx": evaluate_per_step,
    "summary": evaluate_summary,
}


def register_evaluator(mode: str, evaluator: Callable[[Aligned, MetricPolicy, Context], Outcome]) -> None:
    """Hook for new modes (e.g. ``band``); the mode must also be in ``policy.MODES``."""
    EVALUATORS[mode] = evaluator


from .band import evaluate_band  # noqa: E402  (the band mode: goldens/band.py)

register_evaluator("band", evaluate_band)


def mean_relative_diff(al: Aligned, mask: np.ndarray | None = None) -> float | None:
    """Signed mean of (actual - golden)/|golden| over the masked steps (default: both sides
    list the step) where both values are finite and the golden is nonzero.

    Always reported: a run 1 % worse on every step passes a 5 % rule but shows +1 % here.
    """
    if mask is None:
        mask = al.golden_row & al.actual_row
    g, a = al.golden[mask], al.actual[mask]  # only the masked steps from here on
    use = np.isfinite(g) & np.isfinite(a) & (g != 0)
    if not use.all():
        g, a = g[use], a[use]
    if not g.size:
        return None
    return float(np.mean((a - g) / np.abs(g)))


def _compared(status: np.ndarray) -> np.ndarray:
    """Steps where both sides had a value inside the judged window."""
    return ((status == _S[StepStatus.PASS]) | (status == _S[StepStatus.FAIL])
            | (status == _S[StepStatus.REDUCED]))


def _value(x: float | None) -> float | None:
    """NaN means 'no value' in the result's scalar fields (None); infinities are kept."""
    return None if x is None or np.isnan(x) else float(x)


def effective_policy(policy: MetricPolicy, exact_regime: bool) -> MetricPolicy:
    """A deterministic metric under the exact regime is compared bit-exactly on every step."""
    if exact_regime and policy.deterministic and policy.mode != "exact":
        return policy.model_copy(update={"mode": "exact", "max_failing_steps": 0})
    return policy


def compare_metric(name: str, golden: MetricSeries | None, actual: MetricSeries | None,
                   policy: MetricPolicy | None, ctx: Context, *, origin: str = "",
                   missing_is_ok: bool = False, history: Sequence[MetricSeries] | None = None) -> MetricVerdict:
    """One metric: align, evaluate with the policy's mode, explain. ``history``: the approved
    versions of the golden's series (see ``judge_by_history``)."""
    al = align(golden, actual)
    if policy is None:
        # No rule for this metric (e.g. the megatron preset): report the numbers, judge nothing.
        effective = MetricPolicy(mode="exact")
        rule = Rule("none", {}, f"not judged ({origin})")
    else:
        effective = effective_policy(policy, ctx.exact)
        upgraded = effective is not policy
        text = effective.describe() + (f" [{ctx.exact_reason}]" if upgraded or effective.mode == "exact" else "")
        rule = Rule(effective.mode, effective.params(), f"{text} — {origin}" if origin else text)
    outcome = EVALUATORS[effective.mode](al, effective, ctx)
    if history is not None and policy is not None and uses_history(effective) and ctx.same_platform \
            and outcome.judged and outcome.actual_value is not None:
        outcome, rule = judge_by_history(name, al, effective, ctx, outcome, rule, history, origin)
    table = StepTable(al.step, al.golden, al.actual, outcome.status)
    golden_value, actual_value = _value(outcome.golden_value), _value(outcome.actual_value)
    common = dict(metric=name, phase=ctx.phase, rule=rule, steps=table, step_counts=table.counts(),
                  mean_rel_diff=mean_relative_diff(al, _compared(outcome.status)),
                  failing_steps=outcome.failing_steps, allowed_failing_steps=outcome.allowed_failing_steps,
                  total_steps=outcome.total_steps, worst_step=outcome.worst_step,
                  golden_value=golden_value, actual_value=actual_value)
    if golden_value is not None and actual_value is not None:
        common["delta"] = _value(actual_value - golden_value)
        if golden_value != 0 and np.isfinite(golden_value) and common["delta"] is not None:
            common["delta_pct"] = 100.0 * common["delta"] / abs(golden_value)
    drift = common["mean_rel_diff"]
    drift_text = "" if drift is None else f"; mean rel diff {100.0 * drift:+.3g} %"
    run_only = table.counts().get(StepStatus.EXTRA.value, 0)
    if run_only and golden is not None:  # e.g. a run logging every step against a golden of every 5th
        drift_text += f"; {run_only} steps only in the run (no golden value there, not judged)"

    if actual is None:
        # A metric that would only be reported (never judged) cannot fail by being absent either.
        not_judged = policy is not None and (
            policy.report_only or (policy.only_on_same_platform and not ctx.same_platform))
        ok = missing_is_ok or policy is None or policy.on_missing == "ignore" or not_judged
        why = " (on_missing: fail)" if not ok else " (report only: not judged)" if not_judged else ""
        return MetricVerdict(verdict=Verdict.MISSING, passed=ok, explanation=f"the run has no {name!r}{why}",
                             **common)
    if golden is None:
        return MetricVerdict(verdict=Verdict.NEW, passed=True,
                             explanation=f"{name!r} is new: the reference has no such metric", **common)
    if policy is None:
        return MetricVerdict(verdict=Verdict.SKIPPED, passed=True,
                             explanation=f"not judged: {origin}; {outcome.summary}{drift_text}", **common)
    if not outcome.judged:
        return MetricVerdict(verdict=Verdict.SKIPPED, passed=True,
                             explanation=f"not judged: {outcome.summary}", **common)
    if effective.report_only:
        return MetricVerdict(verdict=Verdict.SKIPPED, passed=True,
                             explanation=f"report only: {outcome.summary}{drift_text}", **common)
    if effective.only_on_same_platform and not ctx.same_platform:
        return MetricVerdict(verdict=Verdict.SKIPPED, passed=True,
                             explanation=f"report only ({ctx.other_platform_reason}): {outcome.summary}{drift_text}", **common)
    verdict = Verdict.FAIL if outcome.failed else Verdict.PASS
    return MetricVerdict(verdict=verdict, passed=not outcome.failed,
                         explanation=f"{outcome.summary}{drift_text}", **common)


# ---------------------------------------------------------------- history-aware timing

def uses_history(policy: MetricPolicy) -> bool:
    """Judged against the approved history: a one-sided ``summary`` metric judged only on its own
    platform — the shape of the step-time kind, read from the policy (data), never the name."""
    return policy.mode == "summary" and policy.direction != "both" and policy.only_on_same_platform


def _ran_part(series: MetricSeries, phase: int) -> MetricSeries:
    """A phase-2 golden from the step it ran (its NaN padding dropped), so the warm-up skip counts
    from there — as ``_window_mask`` does for the golden."""
    if phase != 2:
        return series
    span = valued_span(series.values)
    return MetricSeries(series.name, series.steps[span], series.values[span])


def judge_by_history(name: str, al: Aligned, policy: MetricPolicy, ctx: Context, outcome: Outcome, rule: Rule,
                     history: Sequence[MetricSeries], origin: str) -> tuple[Outcome, Rule]:
    """Step time against its approved history (same platform: the history is the golden's).

    Each approved version is reduced as the summary check reduces the golden. With at least
    ``stats.MIN_HISTORY`` positive values the one-sided log-normal prediction bound of
    ``stats.history_timing_check`` decides; below that the summary rule's ``outcome`` stands.
    Either way the rule's text and params say which check applied and on how many samples.
    """
    from .stats import MIN_HISTORY, history_timing_check, reduce_window

    golden_steps = al.step[al.golden_row]
    window = policy.window_for(int(golden_steps[-1]) if golden_steps.size else None)
    past = [_ran_part(s, ctx.phase) for s in history]
    reduced = [reduce_window(s.steps, s.values, skip_warmup=policy.skip_warmup, window=window,
                             reduce=policy.reduce) for s in past]
    usable = [s for s, v in zip(past, reduced) if not np.isnan(v)]
    params = {**rule.params, "history_samples": len(usable)}
    if len(usable) < MIN_HISTORY or any(v <= 0 for v in reduced if not np.isnan(v)):
        why = (f"{len(usable)} < {MIN_HISTORY} approved samples" if len(usable) < MIN_HISTORY
               else "a non-positive approved value")
        return outcome, Rule(rule.mode, {**params, "baseline": "golden"},
                             f"{rule.text} [rtol rule: the history has {why}]")
    # The candidate exactly as the summary check saw it: on the golden's grid, inside the judged
    # window, everything else NaN (so the check's own warm-up skip and window remove nothing more).
    judged = _window_mask(al, policy, ctx) & al.golden_row & al.actual_row
    candidate = MetricSeries(name, al.step[al.golden_row], np.where(judged, al.actual, np.nan)[al.golden_row])
    check = history_timing_check(candidate, usable, skip_warmup=policy.skip_warmup, window=window,
                                 reduce=policy.reduce, direction=policy.direction, min_history=MIN_HISTORY)
    n_problems = int(np.count_nonzero(_counted_problems(outcome.status, policy)))
    failing = (0 if check.passed else 1) + n_problems
    text = (("within the rule: " if failing == 0 else "out of tolerance: ") + check.text
            + f"; geometric mean {full_precision(check.baseline)}, golden {full_precision(outcome.golden_value)}")
    if n_problems:
        text += f"; {n_problems} steps missing or NaN in the window"
    side = "x <= exp(m + w)" if policy.direction == "increase_is_bad" else "x >= exp(m − w)"
    rule_text = (f"history bound over {check.n_history} approved goldens of this platform: {policy.reduce} of the "
                 f"window {side}, m = mean log, w = t(0.995, n−1)·s_log·√(1 + 1/n)")
    return (Outcome(failing > 0, outcome.status, failing, 0, outcome.total_steps, None, outcome.golden_value,
                    check.candidate, text),
            Rule(rule.mode, {**params, "baseline": "history", "bound": check.bound},
                 f"{rule_text} — {origin}" if origin else rule_text))


# ---------------------------------------------------------------- phases, resume, the whole result

def _scalar_series(name: str, value: float) -> MetricSeries:
    return MetricSeries(name, np.zeros(1, np.int64), np.array([value]))


def compare_phase(reference: Mapping[str, MetricSeries], candidate: Mapping[str, MetricSeries],
                  policies: PolicySet, ctx: Context, *, reference_scalars: Mapping[str, float] = {},
                  candidate_scalars: Mapping[str, float] = {}, reference_label: str | None = None,
                  history: Mapping[str, Sequence[MetricSeries]] | None = None) -> PhaseResult:
    """Every metric of one phase; metric order: the reference's, then the candidate's new ones.
    ``history``: the reference's approved versions per metric (None: not from a store)."""
    verdicts = []
    for name in [*reference, *(n for n in candidate if n not in reference)]:
        resolved = policies.resolve(name)
        verdicts.append(compare_metric(name, reference.get(name), candidate.get(name),
                                       resolved.policy, ctx, origin=resolved.origin,
                                       history=None if history is None else history.get(name, ())))
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


def same_platform(reference: Side, candidate: Side, regime: FingerprintCheck) -> bool:
    """Equal fingerprints imply one platform; else both sides must name the same platform."""
    if regime.reference is not None and regime.reference == regime.candidate:
        return True
    return reference.platform is not None and reference.platform == candidate.platform


def other_platform_reason(reference: Side, candidate: Side) -> str:
    """Why two sides do not count as one platform: a side that names none is not "another" one."""
    unknown = [label for label, side in (("reference", reference), ("candidate", candidate)) if side.platform is None]
    if unknown:
        return f"platform of the {' and the '.join(unknown)} unknown"
    return f"other platform: {reference.platform} vs {candidate.platform}"


def compare(reference: Side, candidate: Side, policies: PolicySet, *, force: str | None = None,
            case: str | None = None, env: str | None = None, platform: str | None = None,
            check_resume: bool = True, notes: tuple[str, ...] = ()) -> ComparisonResult:
    """The whole comparison: regime, every phase, the resume check, structural drift."""
    from .drift import structural_drift  # deepdiff is heavy; only here

    regime = decide_regime(reference, candidate, force)
    warnings: list[str] = list(notes)
    phases = []
    plat = same_platform(reference, candidate, regime)
    for number in sorted(set(reference.phases) | set(candidate.phases)):
        if number not in reference.phases:
            # structural_drift notes which side lacks a phase; this says what that means here
            resume_covers = number == 2 and check_resume and 1 in candidate.phases
            warnings.append(f"the candidate's phase {number} is not compared"
                            + (" (the resume check covers it)" if resume_covers else ""))
            continue
        ctx = Context(phase=number, exact=regime.exact_applied, same_platform=plat,
                      exact_reason=regime.reason, other_platform_reason=other_platform_reason(reference, candidate))
        phases.append(compare_phase(reference.phases[number], candidate.phases.get(number, {}), policies, ctx,
                                    reference_scalars=reference.scalars if number == 1 else {},
                                    candidate_scalars=candidate.scalars if number == 1 else {},
                                    reference_label=reference.phase_sources.get(number, reference.label),
                                    history=None if reference.history is None else reference.history.get(number, {})))
    resume = resume_check(candidate, policies) if check_resume else None
    drift = structural_drift(reference, candidate)
    failed = any(p.verdict == Verdict.FAIL for p in phases) or (resume is not None and not resume.passed)
    for p in phases:
        for v in p.metrics:
            if v.verdict == Verdict.SKIPPED and v.explanation.endswith(NOTHING_TO_JUDGE):
                warnings.append(f"phase {p.phase} {v.metric!r}: {v.explanation}")
    return ComparisonResult(case=case, env=env, platform=platform, reference=reference.label,
                            candidate=candidate.label, policy=policies.name,
                            verdict=Verdict.FAIL if failed else Verdict.PASS, fingerprint=regime,
                            phases=tuple(phases), drift=drift, resume=resume, warnings=tuple(warnings))

