"""Repeated runs → per-step spread → recommended tolerances; history-aware timing checks.

Hand-picked tolerances are what make regression tests flaky; here they come from measured
run-to-run variation. Pure: artifacts and series in, frozen dataclasses out, no I/O.

Which statistic a metric gets follows the *shape* of its base policy (data from
``goldens.core.policy``), never its name:

- per-step, two-sided (loss, grad norm …): a t prediction interval per step,
  ``|x − μ| ≤ t(0.995, N−1)·s·√(1 + 1/N)`` around the mean of the N runs (the band), and for a
  check against ONE golden run the spread of a difference of two runs,
  ``|x − g| ≤ t(0.995, N−1)·s·√2``, as ``rtol`` (widest step);
- integer counts (``integer: true``, num-zeros): Tukey's IQR fences per step,
  ``[Q1 − 1.5·IQR, Q3 + 1.5·IQR]``, never narrower than ±1 count;
- reduced one-sided metrics (``mode: summary`` with a direction: iteration time, memory): each
  run is reduced like the check reduces it (median of the steady window …), and a one-sided
  log-normal bound on the ratio of two runs, ``x/g ≤ exp(t(0.995, N−1)·s_log·√2)``, gives
  ``rtol`` (a t bound on the raw values when some value is ≤ 0).

Floors: a spread of zero (bit-identical runs) must not switch a check off, nor leave a
threshold that floating-point noise trips; every half-width is at least
``4·ε₃₂·|μ|`` (ε₃₂ = 2⁻²³, four float32 ULPs: TensorBoard stores float32) and never zero.
"""
from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

from .errors import GoldenError
from .model import Artifact, MetricSeries

CONFIDENCE = 0.995
FLOAT_FLOOR_ULPS = 4
EPS32 = 2.0 ** -23
TINY32 = float(np.finfo(np.float32).tiny)  # the floor where μ = 0
IQR_FENCE = 1.5
COUNT_FLOOR = 1.0
MIN_HISTORY = 5

METHOD_T = "t_interval"
METHOD_IQR = "iqr"
METHOD_ONE_SIDED = "one_sided"
METHOD_NONE = "unmeasured"


def t_quantile(n: int, confidence: float = CONFIDENCE) -> float:
    """Student's t quantile with n − 1 degrees of freedom."""
    from scipy.stats import t  # scipy takes most of a second to import; only this quantile needs it

    return float(t.ppf(confidence, n - 1))


def float_floor(center: np.ndarray | float) -> np.ndarray:
    """The narrowest half-width we trust: four float32 ULPs of |μ|, and never zero."""
    return np.maximum(FLOAT_FLOOR_ULPS * EPS32 * np.abs(np.asarray(center, dtype=np.float64)), TINY32)


# ---------------------------------------------------------------- per-step spread

@dataclass(frozen=True, eq=False)
class MetricSpread:
    """One metric of one phase over N repeated runs: per-step statistics and the raw samples."""

    phase: int
    metric: str
    run_ids: tuple[str, ...]
    steps: np.ndarray    # int64, the union of the runs' steps
    samples: np.ndarray  # (runs, steps) float64, NaN where a run has no value

    @property
    def count(self) -> np.ndarray:
        return np.sum(~np.isnan(self.samples), axis=0)

    def _reduce(self, func: Any, **kw: Any) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN / one-sample columns → NaN
            return func(self.samples, axis=0, **kw)

    @property
    def min(self) -> np.ndarray:
        return self._reduce(np.nanmin)

    @property
    def max(self) -> np.ndarray:
        return self._reduce(np.nanmax)

    @property
    def mean(self) -> np.ndarray:
        return self._reduce(np.nanmean)

    @property
    def std(self) -> np.ndarray:
        """Sample standard deviation (ddof = 1); NaN below two samples."""
        return self._reduce(np.nanstd, ddof=1)

    @property
    def median(self) -> np.ndarray:
        return self._reduce(np.nanmedian)

    def quantile(self, q: float) -> np.ndarray:
        return self._reduce(np.nanquantile, q=q)

    def frame(self) -> Any:
        """One row per step: statistics, then one column per run (the raw samples)."""
        import pandas as pd  # heavy; only for notebooks and CSV

        columns = {"phase": self.phase, "metric": self.metric, "step": self.steps, "n": self.count,
                   "min": self.min, "max": self.max, "mean": self.mean, "std": self.std,
                   "median": self.median}
        columns.update({f"run:{rid}": row for rid, row in zip(self.run_ids, self.samples, strict=True)})
        return pd.DataFrame(columns)


def _check_runs(artifacts: Sequence[Artifact]) -> None:
    if len(artifacts) < 2:
        raise GoldenError(f"stats need at least 2 runs, got {len(artifacts)}")
    cases = sorted({a.case for a in artifacts})
    if len(cases) > 1:
        raise GoldenError(f"runs are of different cases ({', '.join(cases)}): stats compare repeats of one case")
    for a in artifacts:
        if a.status != "complete":
            raise GoldenError(f"run {a.run_id} is {a.status}: stats need complete runs ({a.source or a.run_id})")
    ids = [a.run_id for a in artifacts]
    if len(set(ids)) != len(ids):
        raise GoldenError(f"the same run is given twice ({sorted(i for i in ids if ids.count(i) > 1)[0]})")


def spread(artifacts: Sequence[Artifact]) -> tuple[MetricSpread, ...]:
    """Every (phase, metric) of the runs, aligned on the union of their steps."""
    _check_runs(artifacts)
    run_ids = tuple(a.run_id for a in artifacts)
    result = []
    for phase in sorted({p for a in artifacts for p in a.phases}):
        names: dict[str, None] = {}
        for a in artifacts:
            if phase in a.phases:
                names.update(dict.fromkeys(a.phases[phase].metrics))
        for name in names:
            series = [a.phases[phase].metrics.get(name) if phase in a.phases else None for a in artifacts]
            steps = np.unique(np.concatenate([s.steps for s in series if s is not None]))
            samples = np.full((len(artifacts), steps.size), np.nan)
            for row, s in enumerate(series):
                if s is not None:
                    samples[row] = s.on_grid(steps)
            samples.flags.writeable = False
            result.append(MetricSpread(phase, name, run_ids, steps, samples))
    return tuple(result)


# ---------------------------------------------------------------- recommendations

@dataclass(frozen=True, eq=False)
class Band:
    """Per-step bounds a run must stay within (NaN bound = that side unchecked at that step)."""

    steps: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def to_json(self) -> dict[str, list]:
        def out(a: np.ndarray) -> list:
            return [None if math.isnan(v) else v for v in a.tolist()]

        return {"steps": self.steps.tolist(), "lower": out(self.lower), "upper": out(self.upper)}


@dataclass(frozen=True)
class Recommendation:
    """A recommended policy for one metric, with the formula and the numbers that gave it.

    ``policy`` holds only the keys to set: merged into the metric's kind policy (so e.g. the
    kind's ``deterministic`` and window survive), except a band, which names its mode.
    """

    metric: str
    phase: int
    method: str
    n_runs: int
    policy: Mapping[str, Any]
    formula: tuple[str, ...]   # the rule, symbolic
    worked: tuple[str, ...]    # the numbers at the deciding step / for the reduced values
    band: Band | None = None


def recommend(spread_: MetricSpread, base: Any | None) -> Recommendation:
    """The recommendation for one metric, by the shape of its base policy (MetricPolicy or None)."""
    if base is not None and getattr(base, "integer", False):
        return _recommend_counts(spread_)
    if base is not None and base.mode == "summary":
        return _recommend_reduced(spread_, base)
    return _recommend_t_interval(spread_)


def _judged(spread_: MetricSpread) -> np.ndarray:
    judged = spread_.count >= 2
    if not judged.any():
        raise GoldenError(f"metric {spread_.metric!r} (phase {spread_.phase}): no step has values "
                          "from two runs; nothing to measure a spread from")
    return judged


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _relative(width: np.ndarray, center: np.ndarray, judged: np.ndarray) -> tuple[float, float, int]:
    """(rtol, atol, deciding step index): rtol from steps with μ ≠ 0, atol from steps with μ = 0."""
    nonzero = judged & (center != 0)
    rel = np.full(width.shape, -np.inf)
    rel[nonzero] = width[nonzero] / np.abs(center[nonzero])
    at_zero = judged & (center == 0)
    atol = float(width[at_zero].max()) if at_zero.any() else 0.0
    if nonzero.any():
        widest = int(np.argmax(rel))
        return float(rel[widest]), atol, widest
    return 0.0, atol, int(np.flatnonzero(at_zero)[np.argmax(width[at_zero])])


def _recommend_t_interval(sp: MetricSpread) -> Recommendation:
    judged = _judged(sp)
    n = sp.count
    mean, std = sp.mean, sp.std
    quantiles = {int(k): t_quantile(int(k)) for k in np.unique(n[judged])}
    t = np.array([quantiles.get(int(k), np.nan) for k in n])
    floor = float_floor(mean)
    with np.errstate(invalid="ignore"):
        band_half = np.maximum(t * std * np.sqrt(1.0 + 1.0 / n), floor)
        pair_half = np.maximum(t * std * math.sqrt(2.0), floor)
    band_half[~judged] = np.nan
    rtol, atol, i = _relative(pair_half, mean, judged)
    band = Band(sp.steps, mean - band_half, mean + band_half)
    nmax = int(n[judged].max())
    worked = (f"N = {int(n[i])}, t(0.995, {int(n[i]) - 1}) = {_fmt(t[i])}; widest at step {int(sp.steps[i])}: "
              f"μ = {_fmt(mean[i])}, s = {_fmt(std[i])}",
              f"golden check: half-width = max(t·s·√2, floor) = {_fmt(pair_half[i])} → rtol = {_fmt(rtol)}"
              + (f", atol = {_fmt(atol)} (steps with μ = 0)" if atol else ""),
              f"band at that step: [{_fmt(band.lower[i])}, {_fmt(band.upper[i])}]"
              + ("" if judged.all() else f"; {int((~judged).sum())} step(s) with < 2 runs left unchecked"))
    formula = ("band:  |x − μ| ≤ t(0.995, N−1)·s·√(1 + 1/N) per step (μ, s: mean and sample std of the runs)",
               "rtol:  |x − g| ≤ t(0.995, N−1)·s·√2 (g: one golden run), widest step relative to |μ|",
               "floor: half-width ≥ 4·ε₃₂·|μ| (ε₃₂ = 2⁻²³) so s = 0 still checks")
    policy = {"rtol": rtol, "atol": atol}
    return Recommendation(sp.metric, sp.phase, METHOD_T, nmax, policy, formula, worked, band)


def _recommend_counts(sp: MetricSpread) -> Recommendation:
    judged = _judged(sp)
    q1, q3, median = sp.quantile(0.25), sp.quantile(0.75), sp.median
    iqr = q3 - q1
    lower = np.minimum(q1 - IQR_FENCE * iqr, median - COUNT_FLOOR)
    upper = np.maximum(q3 + IQR_FENCE * iqr, median + COUNT_FLOOR)
    lower[~judged] = np.nan
    upper[~judged] = np.nan
    half = np.fmax(upper - median, median - lower)
    rtol, _, i = _relative(half, median, judged)
    worked = (f"N = {int(sp.count[i])}; widest at step {int(sp.steps[i])}: median = {_fmt(median[i])}, "
              f"Q1 = {_fmt(q1[i])}, Q3 = {_fmt(q3[i])}, IQR = {_fmt(iqr[i])}",
              f"fences [{_fmt(lower[i])}, {_fmt(upper[i])}] → half-width {_fmt(half[i])} → rtol = {_fmt(rtol)}, "
              f"atol = {_fmt(COUNT_FLOOR)}")
    formula = ("band:  Q1 − 1.5·IQR ≤ x ≤ Q3 + 1.5·IQR per step (Tukey's fences; quantiles interpolated)",
               "floor: at least ±1 count around the median",
               "rtol:  widest fence distance from the median, relative to |median|; atol 1 count")
    policy = {"rtol": rtol, "atol": COUNT_FLOOR}
    return Recommendation(sp.metric, sp.phase, METHOD_IQR, int(sp.count[judged].max()), policy, formula,
                          worked, Band(sp.steps, lower, upper))


def reduce_window(steps: np.ndarray, values: np.ndarray, *, skip_warmup: int = 0,
                  window: tuple[int | None, int | None] = (None, None), reduce: str = "median") -> float:
    """A series reduced as a summary check reduces it: drop the first ``skip_warmup`` steps, keep
    the inclusive window, ignore NaN, then median/mean/max/min/last. NaN when nothing is left."""
    keep = ~np.isnan(values)
    keep[:skip_warmup] = False
    lo, hi = window
    if lo is not None:
        keep &= steps >= lo
    if hi is not None:
        keep &= steps <= hi
    chosen = values[keep]
    if chosen.size == 0:
        return math.nan
    reducers: dict[str, Callable[[np.ndarray], Any]] = {"median": np.median, "mean": np.mean, "max": np.max,
                                                       "min": np.min, "last": lambda a: a[-1]}
    if reduce not in reducers:
        raise GoldenError(f"cannot reduce by {reduce!r} (one of {', '.join(reducers)})")
    return float(reducers[reduce](chosen))


def _one_sided_rtol(values: np.ndarray, direction: str) -> tuple[float, list[str], str]:
    """rtol on the ratio of two runs from N reduced values; log-normal when all are positive."""
    n = values.size
    t = t_quantile(n)
    if np.all(values > 0):
        logs = np.log(values)
        s_log = float(np.std(logs, ddof=1))
        width = t * s_log * math.sqrt(2.0)
        rtol = math.expm1(width) if direction != "decrease_is_bad" else -math.expm1(-width)
        worked = [f"N = {n}, t(0.995, {n - 1}) = {_fmt(t)}, s_log = {_fmt(s_log)} "
                  f"(geometric mean {_fmt(math.exp(logs.mean()))})",
                  f"rtol = {'exp' if direction != 'decrease_is_bad' else '1 − exp(−'}"
                  f"(t·s_log·√2){'' if direction != 'decrease_is_bad' else ')'}"
                  f"{' − 1' if direction != 'decrease_is_bad' else ''} = {_fmt(rtol)}"]
        formula = "log-normal: x/g ≤ exp(t(0.995, N−1)·s_log·√2), s_log the std of log of the reduced values"
    else:
        mean, s = float(values.mean()), float(np.std(values, ddof=1))
        rtol = t * s * math.sqrt(2.0) / abs(mean) if mean else math.inf
        worked = [f"N = {n}, t(0.995, {n - 1}) = {_fmt(t)}, mean = {_fmt(mean)}, s = {_fmt(s)}",
                  f"rtol = t·s·√2/|mean| = {_fmt(rtol)}"]
        formula = "t bound (a value ≤ 0, so not log-normal): |x − g| ≤ t(0.995, N−1)·s·√2"
    return rtol, worked, formula


def _recommend_reduced(sp: MetricSpread, base: Any) -> Recommendation:
    window = base.window_for(int(sp.steps[-1])) if sp.steps.size else (None, None)
    reduced = np.array([reduce_window(sp.steps, row, skip_warmup=base.skip_warmup, window=window,
                                      reduce=base.reduce) for row in sp.samples])
    present = reduced[~np.isnan(reduced)]
    if present.size < 2:
        raise GoldenError(f"metric {sp.metric!r} (phase {sp.phase}): fewer than 2 runs have values in "
                          f"the {base.reduce} window; nothing to measure a spread from")
    rtol, worked, formula = _one_sided_rtol(present, base.direction)
    floor = FLOAT_FLOOR_ULPS * EPS32
    if rtol < floor:
        worked.append(f"floored to 4·ε₃₂ = {_fmt(floor)}")
        rtol = floor
    side = {"increase_is_bad": "one-sided (slower/larger is bad)",
            "decrease_is_bad": "one-sided (smaller is bad)", "both": "two-sided"}[base.direction]
    worked.insert(0, f"each run reduced to the {base.reduce} of steps "
                     f"{_describe_window(base.skip_warmup, window)}: "
                     + ", ".join(_fmt(v) for v in reduced))
    formula_lines = (f"{side} on each run's {base.reduce} over the judged window", formula,
                     "floor: rtol ≥ 4·ε₃₂")
    return Recommendation(sp.metric, sp.phase, METHOD_ONE_SIDED, int(present.size), {"rtol": rtol},
                          formula_lines, tuple(worked))


def _describe_window(skip_warmup: int, window: tuple[int | None, int | None]) -> str:
    lo, hi = window
    text = f"[{lo if lo is not None else '…'}, {hi if hi is not None else '…'}]"
    return text + (f" after the first {skip_warmup}" if skip_warmup else "")


def recommend_all(spreads: Iterable[MetricSpread], policies: Any) -> tuple[Recommendation, ...]:
    """One recommendation per metric, from its lowest phase (the from-scratch run: a resumed
    phase repeats its steps). ``policies`` is a goldens.core.policy.PolicySet (base per metric)."""
    chosen: dict[str, MetricSpread] = {}
    for sp in sorted(spreads, key=lambda s: s.phase):
        chosen.setdefault(sp.metric, sp)
    recommendations = []
    for name, sp in chosen.items():
        try:
            recommendations.append(recommend(sp, policies.base_for(name)))
        except GoldenError as exc:  # e.g. a metric only one run logged: say so, keep the others
            recommendations.append(Recommendation(name, sp.phase, METHOD_NONE, int(sp.count.max(initial=0)),
                                                  {}, (), (f"no recommendation: {exc}",)))
    return tuple(recommendations)


# ---------------------------------------------------------------- the policy document

def policy_document(recommendations: Sequence[Recommendation], *, with_band: bool = False,
                    base_policies: Any | None = None) -> dict[str, Any]:
    """The ``metrics:`` document of a policy file (goldens.core.policy format).

    Without a band each entry only adjusts its kind's policy (rtol/atol). With ``with_band`` a
    per-step metric becomes ``mode: band`` with its bounds, keeping the kind's ``deterministic``.
    """
    metrics: dict[str, Any] = {}
    for rec in recommendations:
        if rec.method == METHOD_NONE:
            continue
        if with_band and rec.band is not None:
            entry: dict[str, Any] = {"mode": "band"}
            base = base_policies.base_for(rec.metric) if base_policies is not None else None
            if base is not None:
                for key in ("deterministic", "integer", "direction", "skip_warmup"):
                    value = getattr(base, key)
                    if value != type(base).model_fields[key].default:
                        entry[key] = value
            entry["band"] = rec.band.to_json()
            metrics[rec.metric] = entry
        else:
            metrics[rec.metric] = dict(rec.policy)
    return {"metrics": metrics}


def render_policy_yaml(recommendations: Sequence[Recommendation], *, case: str, run_ids: Sequence[str],
                       preset: str = "default", with_band: bool = False, base_policies: Any | None = None) -> str:
    """The policy file a person reviews: each metric's entry under the formula that produced it."""
    doc = policy_document(recommendations, with_band=with_band, base_policies=base_policies)
    lines = [f"# Recommended tolerances for case {_comment_safe(case)} from {len(run_ids)} repeated runs:",
             f"#   {', '.join(map(_comment_safe, run_ids))}",
             "# Written by `golden stats`. Review, then commit beside the case or pass with --policy.",
             f"# Entries without 'mode' adjust the {preset!r} preset's policy of the metric's kind.",
             f"preset: {preset}", "metrics:"]
    for rec in recommendations:
        lines.append(f"  # --- {_comment_safe(rec.metric)} (phase {rec.phase}, {rec.method}, N = {rec.n_runs})")
        lines += [f"  #   {line}" for line in rec.formula]
        lines += [f"  #   {line}" for line in rec.worked]
        if rec.metric not in doc["metrics"]:
            continue
        entry = yaml.safe_dump({rec.metric: doc["metrics"][rec.metric]}, sort_keys=False,
                               default_flow_style=None, allow_unicode=True, width=1 << 30)
        lines += ["  " + line for line in entry.rstrip("\n").split("\n")]
    return "\n".join(lines) + "\n"


def _comment_safe(text: str) -> str:
    """A name inside a YAML comment: escaped, so a hostile name cannot end the comment line."""
    return json.dumps(text, ensure_ascii=False) if not text.isprintable() or '"' in text else text


# ---------------------------------------------------------------- history-aware timing

@dataclass(frozen=True)
class TimingCheck:
    """A one-sided timing verdict and why: against the history, or the rtol rule below it."""

    passed: bool
    method: str          # "history" (≥ MIN_HISTORY samples) or "rtol"
    candidate: float     # the candidate run reduced (e.g. median of the steady window)
    bound: float         # the largest (or smallest, for decrease_is_bad) value that passes
    baseline: float      # geometric mean of the history, or the golden's reduced value
    n_history: int
    text: str


def history_timing_check(candidate: MetricSeries, history: Sequence[MetricSeries],
                         golden: MetricSeries | None = None, *, rtol: float = 0.10,
                         skip_warmup: int = 0, window: tuple[int | None, int | None] = (None, None),
                         reduce: str = "median", direction: str = "increase_is_bad",
                         min_history: int = MIN_HISTORY, confidence: float = CONFIDENCE) -> TimingCheck:
    """Judge a run's step time against the approved history of its platform.

    The caller passes the ledger's approved iteration-time series recorded on the SAME platform
    as the candidate. Each is reduced like the check reduces (default: median of the window).
    With at least ``min_history`` values: a one-sided log-normal prediction bound,
    ``x ≤ exp(mean(log y) + t(confidence, n−1)·s_log·√(1 + 1/n))`` (mirrored for
    decrease_is_bad), never tighter than float resolution. Below that: the rtol rule against
    the golden (or the latest history entry when no golden is given).
    """
    if direction not in ("increase_is_bad", "decrease_is_bad"):
        raise GoldenError(f"a timing check is one-sided: direction must be increase_is_bad or "
                          f"decrease_is_bad, got {direction!r}")

    def reduced(series: MetricSeries) -> float:
        return reduce_window(series.steps, series.values, skip_warmup=skip_warmup, window=window, reduce=reduce)

    x = reduced(candidate)
    if math.isnan(x):
        raise GoldenError(f"{candidate.name}: the candidate has no values in the judged window")
    past = np.array([v for v in map(reduced, history) if not math.isnan(v)])
    slower_is_bad = direction == "increase_is_bad"
    if past.size >= min_history and np.all(past > 0):
        logs = np.log(past)
        t = t_quantile(past.size, confidence)
        s_log = float(np.std(logs, ddof=1))
        width = max(t * s_log * math.sqrt(1.0 + 1.0 / past.size), FLOAT_FLOOR_ULPS * EPS32)
        center = float(logs.mean())
        bound = math.exp(center + width) if slower_is_bad else math.exp(center - width)
        passed = x <= bound if slower_is_bad else x >= bound
        text = (f"history of {past.size} approved runs: {reduce} {_fmt(x)} "
                f"{'<=' if slower_is_bad else '>='} {_fmt(bound)} = exp(mean log + "
                f"{'' if slower_is_bad else '−'}t({confidence}, {past.size - 1})·s_log·√(1+1/n)), "
                f"s_log = {_fmt(s_log)}")
        return TimingCheck(bool(passed), "history", x, bound, math.exp(center), int(past.size), text)
    reference = golden if golden is not None else (history[-1] if history else None)
    if reference is None:
        raise GoldenError(f"{candidate.name}: no golden and no history to judge the timing against")
    g = reduced(reference)
    if math.isnan(g):
        raise GoldenError(f"{candidate.name}: the golden has no values in the judged window")
    bound = g * (1.0 + rtol) if slower_is_bad else g * (1.0 - rtol)
    passed = x <= bound if slower_is_bad else x >= bound
    why = (f"history has {past.size} < {min_history} usable runs" if past.size < min_history
           else "history holds a non-positive value")
    text = (f"rtol rule ({why}): {reduce} {_fmt(x)} {'<=' if slower_is_bad else '>='} "
            f"{_fmt(bound)} = {_fmt(g)}·(1 {'+' if slower_is_bad else '−'} {rtol:g})")
    return TimingCheck(bool(passed), "rtol", x, bound, g, int(past.size), text)
