"""Mode ``steady_median``: Megatron's iteration-time check — the median of a steady window, one
number against one number.

The window rule is picked by the golden's last *finite* step (a trailing "nan" does not move it);
with no finite golden step inside the window, the first ``fallback_steps`` finite golden steps
from the window's start stand in. The run's values are taken on those steps, a missing or NaN
one entering the median as +inf (Megatron reads every "nan" string as inf), so a few lost steps
pass while the median holds and more fail. Then ``isclose`` of the two medians.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..align import Aligned
from ..precision import derived_precision
from ..result import StepStatus
from .common import CODE, NOTHING_TO_JUDGE, Context, Outcome, PolicyView, base_status, deviation, pct_text, threshold


def parse_fallback_steps(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a whole number >= 0, got {value!r}")
    return value


def describe_steady(policy: PolicyView) -> str:
    side = {"both": "|Δ|", "increase_is_bad": "Δ", "decrease_is_bad": "-Δ"}[policy.direction]
    fallback = (policy.model_extra or {}).get("fallback_steps", 0)
    extra = f", else the first {fallback} finite golden steps from its start" if fallback else ""
    return (f"steady_median: median of the window (picked by the golden's last finite step{extra}; a missing "
            f"run step counts as +inf): {side} <= {policy.rtol:g}·|golden|")


def evaluate_steady(al: Aligned, policy: PolicyView, ctx: Context) -> Outcome:
    """The two medians of the steady window, compared like numpy.isclose."""
    finite = al.golden_row & np.isfinite(al.golden)
    finite_steps = al.step[finite]
    if not finite_steps.size:
        return _nothing(al, policy, "the golden has no finite value")
    lo, hi = policy.window_for(int(finite_steps[-1]))
    in_window = finite.copy()
    if lo is not None:
        in_window &= al.step >= lo
    if hi is not None:
        in_window &= al.step <= hi
    if not in_window.any():
        fallback = (policy.model_extra or {}).get("fallback_steps", 0)
        later = np.flatnonzero(finite & (al.step >= lo if lo is not None else True))[:fallback]
        in_window = np.zeros(al.step.shape, dtype=bool)
        in_window[later] = True
        if not later.size:
            return _nothing(al, policy, "the golden has no finite value from the window's start on")
    status, both = base_status(al, in_window)
    status[both] = CODE[StepStatus.REDUCED]
    golden = float(np.median(al.golden[in_window]))
    ran = al.actual_row & ~np.isnan(al.actual)
    lost = int(np.count_nonzero(in_window & ~ran))
    actual = float(np.median(np.where(ran, al.actual, np.inf)[in_window]))
    with np.errstate(invalid="ignore", over="ignore"):
        dev = deviation(actual - golden, policy.direction)
        ok = bool(actual == golden or (np.isfinite(actual) and np.isfinite(golden)
                                       and dev <= threshold(golden, policy, policy.mode == "exact")))
    total = int(np.count_nonzero(in_window))
    steps = al.step[in_window]
    text = (f"median over {total} steps {int(steps[0])}..{int(steps[-1])}: golden {derived_precision(golden)}, "
            f"actual {derived_precision(actual)}{pct_text(actual - golden, golden) if np.isfinite(actual) else ''}")
    if lost:
        text += f"; {lost} of them missing or NaN in the run (counted as +inf)"
    text = ("within the rule: " if ok else "out of tolerance: ") + text
    return Outcome(not ok, status, 0 if ok else 1, 0, total, None, golden, actual, text)


def _nothing(al: Aligned, policy: PolicyView, why: str) -> Outcome:
    status, _ = base_status(al, np.zeros(al.step.shape, dtype=bool))
    if policy.on_empty == "fail":
        return Outcome(True, status, 1, 0, 0, None, None, None, f"{why} (on_empty: fail)")
    return Outcome(False, status, 0, 0, 0, None, None, None, NOTHING_TO_JUDGE, judged=False)
