"""What every comparison mode shares: the engine's context, the outcome a mode returns, and the
per-step helpers (the judged window, the statuses that do not depend on tolerance, thresholds).

A mode's evaluator is ``(Aligned, PolicyView, Context) -> Outcome``. A mode only reads a policy:
``PolicyView`` names what it reads, so the modes never import ``goldens.core.policy``, whose parser
reads their table (``goldens.core.policy.schema.MetricPolicy`` is the one implementation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..align import Aligned
from ..model import valued_span
from ..result import STEP_STATUS_CODE, StepStatus

CODE = {s: np.int8(STEP_STATUS_CODE[s]) for s in StepStatus}
NOTHING_TO_JUDGE = "no golden values in the judged window"


class PolicyView(Protocol):
    """What a mode reads of one metric's policy (the keys are explained in ``goldens.core.policy.schema``)."""

    @property
    def mode(self) -> str: ...
    @property
    def rtol(self) -> float: ...
    @property
    def atol(self) -> float: ...
    @property
    def direction(self) -> str: ...
    @property
    def skip_warmup(self) -> int: ...
    @property
    def window(self) -> object: ...
    @property
    def reduce(self) -> str: ...
    @property
    def integer(self) -> bool: ...
    @property
    def on_missing(self) -> str: ...
    @property
    def on_nan(self) -> str: ...
    @property
    def on_empty(self) -> str: ...
    @property
    def model_extra(self) -> dict[str, Any] | None: ...  # the keys only one mode understands (band, fallback_steps)

    def window_for(self, last_golden_step: int | None) -> tuple[int | None, int | None]: ...
    def allowed_failing(self, total: int) -> int: ...
    def too_many_failing(self, failing: int, total: int) -> bool: ...


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


def window_mask(al: Aligned, policy: PolicyView, ctx: Context) -> np.ndarray:
    """The steps the policy judges: its window (picked by the golden's last step), after warm-up."""
    last = None
    if policy.window is not None:
        listed = al.golden_row[::-1]
        at = int(np.argmax(listed)) if listed.size else 0
        last = int(al.step[al.step.size - 1 - at]) if listed.size and listed[at] else None
    lo, hi = policy.window_for(last)
    mask = np.ones(al.step.shape, dtype=bool)
    if lo is not None:
        mask &= al.step >= lo
    if hi is not None:
        mask &= al.step <= hi
    if policy.skip_warmup:
        # A resumed phase warms up again after loading the checkpoint: count its warm-up from
        # the first step it ran, not from the padding before it.
        golden_steps = al.step[al.golden_row]
        ran = golden_steps[valued_span(al.golden[al.golden_row]).start:] if ctx.phase == 2 else golden_steps
        cut = ran[policy.skip_warmup] if ran.size > policy.skip_warmup else None
        mask &= (al.step >= cut) if cut is not None else False
    return mask


def base_status(al: Aligned, in_window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Statuses that do not depend on tolerance; returns (status, both_valued)."""
    g_nan, a_nan = np.isnan(al.golden), np.isnan(al.actual)
    if al.golden_row is al.actual_row and not (g_nan.any() or a_nan.any()) and al.golden_row.all():
        # One grid and a value on every step of both sides (the common case): a pass where judged.
        status = np.full(al.step.shape, CODE[StepStatus.PASS], dtype=np.int8)
        status[~in_window] = CODE[StepStatus.SKIPPED]
        return status, in_window.copy()
    g_val, a_val = al.golden_row & ~g_nan, al.actual_row & ~a_nan
    both = g_val & a_val
    status = np.full(al.step.shape, CODE[StepStatus.EMPTY], dtype=np.int8)
    status[both] = CODE[StepStatus.PASS]
    status[g_val & ~al.actual_row] = CODE[StepStatus.MISSING]
    status[g_val & al.actual_row & a_nan] = CODE[StepStatus.NAN_ACTUAL]
    status[a_val & al.golden_row & g_nan] = CODE[StepStatus.NAN_GOLDEN]
    status[a_val & ~al.golden_row] = CODE[StepStatus.EXTRA]
    status[~in_window] = CODE[StepStatus.SKIPPED]
    return status, both & in_window


def deviation(delta: np.ndarray | float, direction: str) -> Any:
    """How far off in the direction that is bad (both: the magnitude)."""
    if direction == "increase_is_bad":
        return delta
    if direction == "decrease_is_bad":
        return -delta
    return np.abs(delta)


def magnitude(delta: np.ndarray, direction: str) -> np.ndarray:
    """``deviation`` of a per-step array the caller no longer needs: computed in its place."""
    if direction == "both":
        return np.abs(delta, out=delta)
    if direction == "decrease_is_bad":
        return np.negative(delta, out=delta)
    return delta


def threshold(golden: np.ndarray | float, policy: PolicyView, exact: bool) -> Any:
    """max(atol, rtol·|golden|), floored for counts; zero in the exact regime."""
    if exact:
        return np.zeros_like(golden) if isinstance(golden, np.ndarray) else 0.0
    if isinstance(golden, np.ndarray):
        thr = np.abs(golden)
        thr *= policy.rtol  # rtol·|g|, in place
    else:
        thr = policy.rtol * np.abs(golden)
    if policy.atol:  # max(0, x) is x for x = rtol·|g| >= 0 (NaN stays NaN): no pass for it
        thr = np.maximum(policy.atol, thr)
    return np.floor(thr) if policy.integer else thr


def counted_problems(status: np.ndarray, policy: PolicyView) -> np.ndarray:
    """Per-step bool: missing/NaN steps that count as failing under on_missing / on_nan."""
    bad = np.zeros(status.shape, dtype=bool)
    if policy.on_missing == "fail":
        bad |= status == CODE[StepStatus.MISSING]
    if policy.on_nan == "fail":
        bad |= (status == CODE[StepStatus.NAN_ACTUAL]) | (status == CODE[StepStatus.NAN_GOLDEN])
    return bad


def pct_text(delta: float | None, golden: float | None) -> str:
    """" (+1.2 %)" for an explanation; empty when there is nothing to say."""
    if delta is None or golden is None:
        return ""
    if golden == 0:
        return "" if delta == 0 else " (Δ% undefined: golden is 0)"
    return f" ({100.0 * delta / abs(golden):+.4g} %)"
