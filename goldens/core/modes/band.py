"""The ``band`` policy mode: a run must stay inside a per-step band measured from repeated runs.

``golden stats --band`` writes the band into the policy file (``mode: band`` with
``band: {steps, lower, upper}``; a null bound leaves that side unchecked at that step). The band
replaces the golden as the yardstick — the golden's values are still shown beside it — and the
usual keys apply: ``direction`` (only ``upper`` for increase_is_bad, only ``lower`` for
decrease_is_bad), ``skip_warmup`` / ``window``, ``max_failing_steps``, ``on_missing`` /
``on_nan``, and ``deterministic`` (bit-exact against the golden when the fingerprints match).

One row of the mode table (``goldens.core.modes.MODES``): ``parse_band`` checks the policy key,
``describe_band`` is the rule's line, ``evaluate_band`` judges.
"""
from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from ..align import Aligned
from ..precision import full_precision
from ..result import StepStatus
from .common import CODE, Context, Outcome, PolicyView, counted_problems, pct_text, window_mask


def parse_band(raw: Any) -> dict[str, tuple]:
    """``{steps, lower, upper}`` → the same with tuples; ValueError says what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError("expected a mapping with steps, lower, upper")
    unknown = set(raw) - {"steps", "lower", "upper"}
    missing = {"steps", "lower", "upper"} - set(raw)
    if unknown or missing:
        which = f"unknown {sorted(map(str, unknown))[0]!r}" if unknown else f"missing {sorted(missing)[0]!r}"
        raise ValueError(f"expected exactly steps, lower, upper ({which})")
    steps = raw["steps"]
    if not isinstance(steps, list) or not steps \
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in steps):
        raise ValueError("steps must be a non-empty list of integers")
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise ValueError("steps must be strictly increasing")
    bounds = {}
    for side in ("lower", "upper"):
        values = raw[side]
        if not isinstance(values, list) or len(values) != len(steps):
            raise ValueError(f"{side} must be a list as long as steps ({len(steps)})")
        for i, v in enumerate(values):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise ValueError(f"{side}[{i}] must be a finite number or null, got {v!r}")
        bounds[side] = tuple(None if v is None else float(v) for v in values)
    for i, (lo, hi) in enumerate(zip(bounds["lower"], bounds["upper"], strict=True)):  # both as long as steps
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"at step {steps[i]} lower {lo!r} > upper {hi!r}")
    return {"steps": tuple(steps), **bounds}


def describe_band(policy: PolicyView) -> str:
    band = (policy.model_extra or {}).get("band") or {"steps": ()}
    steps = band["steps"]
    span = f"steps {steps[0]}..{steps[-1]}" if steps else "no steps"
    side = {"both": "lower <= x <= upper", "increase_is_bad": "x <= upper",
            "decrease_is_bad": "x >= lower"}[policy.direction]
    return f"band {side} per step ({len(steps)} bounds, {span})"


def _on_grid(band: dict[str, tuple], steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The band's bounds on the aligned steps (NaN where the band says nothing)."""
    lower = np.full(steps.shape, np.nan)
    upper = np.full(steps.shape, np.nan)
    band_steps = np.asarray(band["steps"], dtype=np.int64)
    idx = np.searchsorted(steps, band_steps)
    found = (idx < steps.size) & (steps[np.minimum(idx, steps.size - 1)] == band_steps) if steps.size else \
        np.zeros(band_steps.shape, dtype=bool)
    as_float = lambda side: np.array([np.nan if v is None else v for v in band[side]], dtype=np.float64)
    lower[idx[found]] = as_float("lower")[found]
    upper[idx[found]] = as_float("upper")[found]
    return lower, upper


def evaluate_band(al: Aligned, policy: PolicyView, ctx: Context) -> Outcome:
    """Every aligned step the band covers: the run's value inside [lower, upper] (by direction)."""
    lower, upper = _on_grid((policy.model_extra or {})["band"], al.step)  # a band policy has one (its parser's check)
    if policy.direction == "increase_is_bad":
        lower = np.full_like(lower, np.nan)
    elif policy.direction == "decrease_is_bad":
        upper = np.full_like(upper, np.nan)
    judged = window_mask(al, policy, ctx) & ~(np.isnan(lower) & np.isnan(upper))
    has_actual = al.actual_row & ~np.isnan(al.actual)
    with np.errstate(invalid="ignore"):
        above = np.where(np.isnan(upper), 0.0, al.actual - upper)
        below = np.where(np.isnan(lower), 0.0, lower - al.actual)
    excess = np.fmax(above, below)  # > 0: outside the band by this much
    fail = judged & has_actual & (excess > 0)

    status = np.full(al.step.shape, CODE[StepStatus.EMPTY], dtype=np.int8)
    status[(al.golden_row | al.actual_row) & ~judged] = CODE[StepStatus.SKIPPED]
    status[judged & has_actual] = CODE[StepStatus.PASS]
    status[fail] = CODE[StepStatus.FAIL]
    status[judged & ~al.actual_row] = CODE[StepStatus.MISSING]
    status[judged & al.actual_row & np.isnan(al.actual)] = CODE[StepStatus.NAN_ACTUAL]
    problems = counted_problems(status, policy)

    total = int(np.count_nonzero(judged))
    allowed = policy.allowed_failing(total)
    failing = int(np.count_nonzero(fail)) + int(np.count_nonzero(problems))
    if total == 0:
        return Outcome(False, status, 0, allowed, 0, None, None, None,
                       "the band covers no step in the judged window", judged=False)
    width = np.where(np.isnan(upper) | np.isnan(lower), np.abs(np.fmax(upper, lower)), upper - lower)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = excess / np.where(width > 0, width, 1.0)
    if fail.any():
        worst = int(np.argmax(np.where(fail, ratio, -np.inf)))
    elif problems.any():
        worst = int(np.argmax(problems))
    elif (judged & has_actual).any():
        worst = int(np.argmax(np.where(judged & has_actual, ratio, -np.inf)))  # closest to an edge
    else:
        worst = None
    parts = [f"{failing} of {total} steps outside the band ({allowed} allowed)" if failing
             else f"all {total} steps inside the band"]
    g = a = None
    if worst is not None:
        g = None if np.isnan(al.golden[worst]) else float(al.golden[worst])
        a = None if np.isnan(al.actual[worst]) else float(al.actual[worst])
        lo = "…" if np.isnan(lower[worst]) else full_precision(lower[worst])
        hi = "…" if np.isnan(upper[worst]) else full_precision(upper[worst])
        delta = None if a is None or g is None else a - g
        parts.append(f"worst step {int(al.step[worst])}: actual {full_precision(a)}, band [{lo}, {hi}], "
                     f"golden {full_precision(g)}{pct_text(delta, g)}")
    return Outcome(failing > allowed, status, failing, allowed, total,
                   None if worst is None else int(al.step[worst]), g, a, "; ".join(parts))
