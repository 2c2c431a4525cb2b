"""Mode ``summary``: reduce each side over the judged window (median, mean, max, …) and compare the
two numbers — step time and memory, where single steps are noise and the level is the signal."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..align import Aligned
from ..precision import derived_precision, full_precision
from ..result import StepStatus
from .common import (
    CODE,
    NOTHING_TO_JUDGE,
    Context,
    Outcome,
    PolicyView,
    base_status,
    counted_problems,
    deviation,
    pct_text,
    threshold,
    window_mask,
)

REDUCERS: dict[str, Callable[[np.ndarray], float]] = {
    "median": lambda v: float(np.median(v)), "mean": lambda v: float(np.mean(v)),
    "max": lambda v: float(np.max(v)), "min": lambda v: float(np.min(v)), "last": lambda v: float(v[-1]),
}


def evaluate_summary(al: Aligned, policy: PolicyView, ctx: Context) -> Outcome:
    """summary: reduce each side over the window (on the golden's grid), compare the two numbers."""
    window = window_mask(al, policy, ctx)
    # The run's steps the golden lacks never count; they keep their own status (extra), not
    # "skipped", which means outside the judged window.
    status, both = base_status(al, window)
    in_window = window & al.golden_row
    status[both] = CODE[StepStatus.REDUCED]
    g_vals = al.golden[in_window & ~np.isnan(al.golden)]
    a_vals = al.actual[in_window & al.actual_row & ~np.isnan(al.actual)]
    problems = counted_problems(status, policy)
    total = int(np.count_nonzero(in_window))
    n_problems = int(np.count_nonzero(problems))
    if g_vals.size == 0:
        return Outcome(False, status, 0, 0, total, None, None, None, NOTHING_TO_JUDGE, judged=False)
    reduce = REDUCERS[policy.reduce]
    G = reduce(g_vals)
    if a_vals.size == 0:
        return Outcome(policy.on_missing == "fail", status, n_problems, 0, total, None, G, None,
                       f"the run has no values in the window ({policy.reduce} of golden "
                       f"{(derived_precision if policy.reduce in ('median', 'mean') else full_precision)(G)})")
    A = reduce(a_vals)
    with np.errstate(invalid="ignore", over="ignore"):
        dev = deviation(A - G, policy.direction)
        ok = bool(A == G or (np.isfinite(A) and np.isfinite(G)
                             and dev <= threshold(G, policy, policy.mode == "exact")))
    failing = (0 if ok else 1) + n_problems
    shown = derived_precision if policy.reduce in ("median", "mean") else full_precision  # computed, or one step's
    text = (f"{policy.reduce} over {total} steps: golden {shown(G)}, "
            f"actual {shown(A)}{pct_text(A - G, G)}")
    if n_problems:
        text += f"; {n_problems} steps missing or NaN in the window"
    text = ("within the rule: " if failing == 0 else "out of tolerance: ") + text
    return Outcome(failing > 0, status, failing, 0, total, None, G, A, text)
