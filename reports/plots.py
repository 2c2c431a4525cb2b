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


def _band(ax, x, lower, upper, *, label: str | None = None) -> None:
    """Shade the allowed region; a one-sided band (inf on one side) is drawn as its limit line."""
    lower = np.where(np.isfinite(lower), lower, np.nan)
    upper = np.where(np.isfinite(upper), upper, np.nan)
    if np.isfinite(lower).any() and np.isfinite(upper).any():
        ax.fill_between(x, lower, upper, color="tab:green", alpha=0.18, linewidth=0, label=label)
        return
    for limit in (lower, upper):
        if np.isfinite(limit).any():
            ax.plot(x, limit, color="tab:green", linestyle="--", linewidth=1, label=label)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of True in ``mask``."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))


def metric_svg(verdict: MetricVerdict, *, salt: str) -> str | None:
    """One SVG with two panels (values with band; residual with band); None without step data.

    Per-step rules get a band around every golden step. A summary rule judges one reduced
    value, so it gets a band around the reduced golden, and the residual panel shows the
    reduced Δ against that band. Steps outside the judged window are shaded grey and the
    y-axes fit the judged steps (a warm-up spike would otherwise flatten the rest).
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
    reduced_golden = verdict.golden_value
    summary = (verdict.rule.mode == "summary" and reduced_golden is not None and math.isfinite(reduced_golden))

    # Fixed margins: constrained layout would double the drawing time for the same picture.
    with matplotlib.rc_context({"svg.hashsalt": salt, "svg.fonttype": "path", "font.size": 9}):
        fig = Figure(figsize=(7.2, 4.2))
        fig.subplots_adjust(left=0.12, right=0.98, top=0.97, bottom=0.11, hspace=0.08)
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
        if summary:
            band = tolerance_band(verdict.rule, np.full_like(golden, reduced_golden))
            top.axhline(reduced_golden, color="black", linewidth=0.8, linestyle=":", label="golden (reduced)")
            if verdict.actual_value is not None:
                top.axhline(verdict.actual_value, color="tab:blue", linewidth=0.8, linestyle=":",
                            label="actual (reduced)")
            if verdict.delta is not None:
                bottom.axhline(verdict.delta, color="tab:blue", linewidth=0.8, linestyle=":")
            centre, residual_centre = np.full_like(golden, reduced_golden), np.zeros_like(golden)
        else:
            band = tolerance_band(verdict.rule, golden)
            centre, residual_centre = golden, np.zeros_like(golden)
        if band is not None and (band.below.any() or band.above.any()):  # an exact rule has no band to draw
            # Only where the golden has a value: on the run's extra steps (a golden of every 5th
            # step against a run of every step) the NaN gaps would cut the band into invisible dots.
            at = np.isfinite(centre)
            below, above = band.below[at], band.above[at]
            _band(top, step[at], centre[at] - below, centre[at] + above, label="tolerance")
            _band(bottom, step[at], residual_centre[at] - below, residual_centre[at] + above)
        # Lines join the steps a side has (different grids or gaps would otherwise break them into dots).
        has_golden, has_actual, has_both = np.isfinite(golden), np.isfinite(actual), np.isfinite(residual)
        top.plot(step[has_golden], golden[has_golden], color="black", linewidth=1.4, label="golden")
        top.plot(step[has_actual], actual[has_actual], color="tab:blue", linewidth=1.0, linestyle="--", marker=".",
                 markersize=3, label="actual")
        bottom.axhline(0.0, color="black", linewidth=0.8)
        bottom.plot(step[has_both], residual[has_both], color="tab:blue", linewidth=1.0, marker=".", markersize=3)
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
        for first, last in _runs(skipped):
            for ax in (top, bottom):
                ax.axvspan(step[first] - 0.5, step[last] + 0.5, color="0.9", linewidth=0, zorder=0)
        judged = ~skipped
        if skipped.any() and judged.any():
            limits = []  # a summary rule's two limits are single numbers worth keeping in view
            if summary and band is not None:
                limits = [reduced_golden - band.below[0], reduced_golden + band.above[0]]
            reduced_delta = [verdict.delta] if summary and verdict.delta is not None else []
            _fit_y(top, golden[judged], actual[judged], [reduced_golden, *limits] if summary else [])
            _fit_y(bottom, residual[judged], [0.0], reduced_delta, [x - reduced_golden for x in limits])
        top.set_ylabel("value")
        bottom.set_ylabel("actual − golden")
        bottom.set_xlabel("step" + (" (grey: not judged)" if skipped.any() else ""))
        bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
        top.legend(loc="best", fontsize=8, frameon=False)
        for ax in (top, bottom):
            ax.grid(True, linewidth=0.4, alpha=0.5)
            ax.ticklabel_format(axis="y", useOffset=False)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]


def _fit_y(ax, *groups) -> None:
    """Set the y-range to the finite values of ``groups`` plus a margin (band may extend past it)."""
    values = np.concatenate([np.asarray(g, dtype=np.float64).ravel() for g in groups if len(g)])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return
    lo, hi = float(values.min()), float(values.max())
    pad = (hi - lo) * 0.15 or abs(hi) * 0.05 or 1.0
    ax.set_ylim(lo - pad, hi + pad)
