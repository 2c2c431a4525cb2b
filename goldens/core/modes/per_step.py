"""Modes ``exact`` and ``approx``: every judged step against its threshold, failing steps counted
as integers and held against the allowance by its rule (honestly, or as Megatron's test does)."""
from __future__ import annotations

import numpy as np

from ..align import Aligned
from ..precision import full_precision
from ..result import StepStatus
from .common import (
    CODE,
    NOTHING_TO_JUDGE,
    Context,
    Outcome,
    PolicyView,
    base_status,
    counted_problems,
    magnitude,
    pct_text,
    threshold,
    window_mask,
)


def evaluate_per_step(al: Aligned, policy: PolicyView, ctx: Context) -> Outcome:
    """exact / approx: every judged step against the threshold, the failing ones against the allowance."""
    exact = policy.mode == "exact"
    in_window = window_mask(al, policy, ctx)
    status, both = base_status(al, in_window)
    with np.errstate(invalid="ignore", over="ignore"):
        thr = threshold(al.golden, policy, exact)
        dev = magnitude(al.actual - al.golden, policy.direction)
        # An infinity only matches itself (as in numpy.isclose): inf·rtol must not excuse it. A finite
        # golden has a finite threshold, which |inf - g| never meets; a one-sided deviation can be -inf.
        ok = dev <= thr
        ok &= np.isfinite(al.golden)
        if policy.direction != "both":
            ok &= np.isfinite(al.actual)
        ok |= al.actual == al.golden
    fail = both & ~ok
    status[fail] = CODE[StepStatus.FAIL]
    problems = counted_problems(status, policy)
    failing = int(np.count_nonzero(fail)) + int(np.count_nonzero(problems))
    total = int(np.count_nonzero(al.golden_row & in_window))
    allowed = policy.allowed_failing(total)
    worst = _worst(al, both, fail, problems, dev, thr)
    g = a = None
    if worst is not None:
        g, a = float(al.golden[worst]), float(al.actual[worst])
    word = "differ" if exact else "out of tolerance"
    if total == 0:
        if policy.on_empty == "fail":
            return Outcome(True, status, 0, allowed, 0, None, None, None,
                           "the golden has no values for this metric (on_empty: fail)")
        return Outcome(False, status, 0, allowed, 0, None, None, None, NOTHING_TO_JUDGE, judged=False)
    n_fail = int(np.count_nonzero(fail))
    parts = [f"{failing} of {total} steps {word}" if failing else f"all {total} steps within the rule"]
    if failing:
        detail = []
        if n_fail:
            detail.append(f"{n_fail} by value")
        for st, label in ((StepStatus.MISSING, "missing in the run"), (StepStatus.NAN_ACTUAL, "NaN in the run"),
                          (StepStatus.NAN_GOLDEN, "NaN in the golden")):
            k = int(np.count_nonzero(problems & (status == CODE[st])))
            if k:
                detail.append(f"{k} {label}")
        parts[0] += f" ({', '.join(detail)}; {allowed} allowed)"
    # Counted in T (Megatron's allowance counts every listed step), but nothing was compared
    # there: the "nan" padding of a _2nd file, or a golden's nan tail the run never reached.
    empty = int(np.count_nonzero(al.golden_row & in_window & (status == CODE[StepStatus.EMPTY])))
    if empty:
        parts.append(f"{empty} of the {total} with no value on either side (not compared)")
    if worst is not None:
        d = None if a is None or g is None or np.isnan(a) or np.isnan(g) else a - g
        shown = "absent" if status[worst] == CODE[StepStatus.MISSING] else full_precision(a)
        parts.append(f"worst step {int(al.step[worst])}: golden {full_precision(g)}, actual {shown}{pct_text(d, g)}")
    failed = policy.too_many_failing(failing, total)
    if failed and failing <= allowed:  # only Megatron's rule fails within the count
        parts.append("Megatron's rule: every step must pass when T = 1" if total == 1 else
                     f"Megatron's rule: mean {total - failing}/{total} < 1 - {allowed}/{total} in float64")
    return Outcome(failed, status, failing, allowed, total,
                   None if worst is None else int(al.step[worst]), g, a, "; ".join(parts))


def _worst(al: Aligned, both: np.ndarray, fail: np.ndarray, problems: np.ndarray,
           dev: np.ndarray, thr: np.ndarray) -> int | None:
    """Index of the worst step: the largest violation ratio; else the first counted missing/NaN
    step; else (all fine) the largest deviation. Ratios are computed on the failing steps only."""
    failing = np.flatnonzero(fail)
    if failing.size:
        d, t = dev[failing], thr[failing]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(t > 0, d / np.where(t > 0, t, 1.0), np.where(d > 0, np.inf, 0.0))
            ratio = np.where(np.isnan(ratio), np.inf, ratio)
            # Ties (every failing step is "infinitely" out under a zero threshold, as in exact mode):
            # the largest relative deviation among them, not simply the first.
            relative = np.abs(d) / np.abs(al.golden[failing])
        tied = ratio == ratio.max()
        return int(failing[np.argmax(np.where(tied, np.nan_to_num(relative, nan=np.inf), -np.inf))])
    if problems.any():
        return int(np.argmax(problems))
    if both.any():
        return int(np.argmax(np.where(both, np.abs(dev), -np.inf)))
    return None
