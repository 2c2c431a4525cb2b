"""Per-metric plots for the HTML report: golden vs actual with the tolerance band, and the residual.

matplotlib's object API (no pyplot, so no global backend state) renders straight to SVG,
which the HTML embeds inline: one self-contained file, crisp at any zoom, no network.
Input-derived names are never drawn into the SVG; the HTML captions carry them (escaped).
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

from goldens.result import STEP_STATUS_CODE, MetricVerdict, Rule, StepStatus

# Beyond this many steps a plot keeps an even stride plus every non-passing step: the picture
# stays the same and the HTML stays small.
MAX_PLOTTED_STEPS = 4000

_FAIL = STEP_STATUS_CODE[StepStatus.FAIL]
_PASS = STEP_STATUS_CODE[StepStatus.PASS]
_MISSING = (STEP_STATUS_CODE[StepStatus.MISSING], STEP_STATUS_CODE[StepStatus.NAN_ACTUAL])
_SKIPPED = STEP_STATUS_CODE[StepStatus.SKIPPED]


@dataclass(frozen=True)
class Band:
    """Allowed deviation from the golden per step: ``below`` and ``above`` (inf = unbounded side)."""

    below: np.ndarray
    above: np.ndarray


def tolerance_band(rule: Rule, golden: np.ndarray) -> Band | None:
    """The band a rule allows around ``golden``, from its params; None when the rule has none.

    The policy's threshold ``max(atol, rtol·|g|)`` (floored for integer metrics, see
    ``goldens.policy``); exact mode is a zero-width band; ``direction`` opens the side that
    is not bad.
    """
    params = rule.params
    if rule.mode == "exact":
        below = above = np.zeros_like(golden)
    elif "rtol" in params or "atol" in params:
        rtol = float(params.get("rtol") or 0.0)
        atol = float(params.get("atol") or 0.0)
        width = np.maximum(rtol * np.abs(golden), atol)
        below = above = np.floor(width) if params.get("integer") else width
    else:
        return None
    direction = params.get("direction", "both")
    if direction == "increase_is_bad":
        below = np.full_like(golden, np.inf)
    elif direction == "decrease_is_bad":
        above = np.full_like(golden, np.inf)
    return Band(np.asarray(below, dtype=np.float64), np.asarray(above, dtype=np.float64))


def _thin(n: int, status: np.ndarray) -> np.ndarray:
    """Indices to plot: all of them, or an even stride plus every step that did not pass."""
    if n <= MAX_PLOTTED_STEPS:
        return np.arange(n)
    stride = math.ceil(n / MAX_PLOTTED_STEPS)
    keep = np.zeros(n, dtype=bool)
    keep[::stride] = True
    keep[status != _PASS] = True
    keep[-1] = True
    return np.flatnonzero(keep)


def _fill(ax, x, lower, upper, **style) -> None:
    finite_lower = np.where(np.isfinite(lower), lower, np.nan)
    finite_upper = np.where(np.isfinite(upper), upper, np.nan)
    if np.isfinite(finite_lower).any() and np.isfinite(finite_upper).any():
        ax.fill_between(x, finite_lower, finite_upper, step=None, **style)
    for limit in (finite_lower, finite_upper):  # a one-sided band: draw its one limit
        if np.isfinite(limit).any() and not (np.isfinite(finite_lower).any() and np.isfinite(finite_upper).any()):
            ax.plot(x, limit, color=style.get("color", "tab:green"), linestyle="--", linewidth=1)


def metric_svg(verdict: MetricVerdict, *, salt: str) -> str | None:
    """One SVG with two panels (values with band; residual with band); None without step data.

    ``salt`` makes the SVG's internal ids unique within the page (several SVGs share one DOM).
    """
    table = verdict.steps
    if table is None or len(table) == 0:
        return None
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    pick = _thin(len(table), table.status)
    step = table.step[pick].astype(np.float64)
    golden, actual, status = table.golden[pick], table.actual[pick], table.status[pick]
    residual = actual - golden
    summary = verdict.rule.mode == "summary"
    band = None
    if summary and verdict.golden_value is not None and math.isfinite(verdict.golden_value):
        reduced = np.full_like(golden, verdict.golden_value)
        band = tolerance_band(verdict.rule, reduced)
    elif not summary:
        band = tolerance_band(verdict.rule, golden)

    # Fixed margins: constrained layout would double the drawing time for the same picture.
    with matplotlib.rc_context({"svg.hashsalt": salt, "svg.fonttype": "path", "font.size": 9}):
        fig = Figure(figsize=(7.2, 4.2))
        fig.subplots_adjust(left=0.12, right=0.98, top=0.97, bottom=0.11, hspace=0.08)
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
        if band is not None and (band.below.any() or band.above.any()):  # an exact rule has no band to draw
            centre = np.full_like(golden, verdict.golden_value) if summary else golden
            _fill(top, step, centre - band.below, centre + band.above, color="tab:green", alpha=0.18,
                  linewidth=0, label="tolerance")
            _fill(bottom, step, -band.below + (centre - golden), band.above + (centre - golden),
                  color="tab:green", alpha=0.18, linewidth=0)
        top.plot(step, golden, color="black", linewidth=1.4, label="golden")
        top.plot(step, actual, color="tab:blue", linewidth=1.0, linestyle="--", marker=".", markersize=3,
                 label="actual")
        if summary and verdict.actual_value is not None:
            top.axhline(verdict.actual_value, color="tab:blue", linewidth=0.8, linestyle=":",
                        label="actual (reduced)")
        failing = status == _FAIL
        if failing.any():
            top.plot(step[failing], actual[failing], linestyle="none", marker="x", color="tab:red",
                     markersize=6, label="failing step")
            bottom.plot(step[failing], residual[failing], linestyle="none", marker="x", color="tab:red", markersize=6)
        missing = np.isin(status, _MISSING)
        if missing.any():
            top.plot(step[missing], golden[missing], linestyle="none", marker="v", color="tab:orange",
                     markersize=5, label="no actual value")
        skipped = status == _SKIPPED
        if skipped.any():
            for ax in (top, bottom):
                ax.plot(step[skipped], np.zeros(int(skipped.sum())) + (np.nanmin(golden) if ax is top else 0.0),
                        linestyle="none", marker="|", color="0.6", markersize=6)
        bottom.axhline(0.0, color="black", linewidth=0.8)
        bottom.plot(step, residual, color="tab:blue", linewidth=1.0, marker=".", markersize=3)
        top.set_ylabel("value")
        bottom.set_ylabel("actual − golden")
        bottom.set_xlabel("step")
        bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
        top.legend(loc="best", fontsize=8, frameon=False)
        for ax in (top, bottom):
            ax.grid(True, linewidth=0.4, alpha=0.5)
            ax.ticklabel_format(axis="y", useOffset=False)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]
