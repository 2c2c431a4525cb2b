"""Per-metric plots for the HTML report: golden vs actual with the tolerance band, and the residual.

Each plot is a small inline SVG written here with numpy: two panels (values; actual − golden)
sharing the step axis, the band the rule allows, failing and missing steps marked, steps outside
the judged window shaded. matplotlib drew the same picture at ~0.2 s and ~80 kB per plot, which
put a 57-case report at 20 s and 9 MB; this takes about a millisecond and a few kB (see
``bench/bench_report.py``). matplotlib's tick locator still picks the tick values.

Input-derived names are never drawn into the SVG; the HTML captions carry them (escaped). Ids
inside one SVG (clip paths, markers) carry the caller's ``salt`` so several SVGs share one page.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from numpy.typing import ArrayLike

from goldens.core.precision import derived_precision
from goldens.core.result import STEP_STATUS_CODE, MetricVerdict, Rule, StepStatus

# Beyond this many steps a plot keeps an even stride plus every non-passing step: the picture
# (about 700 px wide) stays the same and the HTML stays small.
MAX_PLOTTED_STEPS = 2000

_FAIL = STEP_STATUS_CODE[StepStatus.FAIL]
_PASS = STEP_STATUS_CODE[StepStatus.PASS]
_MISSING = (STEP_STATUS_CODE[StepStatus.MISSING], STEP_STATUS_CODE[StepStatus.NAN_ACTUAL])
_SKIPPED = STEP_STATUS_CODE[StepStatus.SKIPPED]

# matplotlib's "tab" colours, so the plots read like every other plot of these metrics.
BLUE, RED, GREEN, ORANGE = "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e"
BAND_OPACITY = 0.18

# Geometry in SVG user units; the SVG is shown at half this size (two units per CSS pixel keep
# integer coordinates at half-pixel precision).
WIDTH, HEIGHT = 1440, 800
FONT = 20          # 10 px on screen
CHAR = 11.5        # average width of a digit at FONT
RIGHT = 20
TOP_PANEL = (44, 480)      # y range of the values panel (the legend is above it)
BOTTOM_PANEL = (506, 690)  # y range of the residual panel


@dataclass(frozen=True)
class Band:
    """Allowed deviation from the golden per step: ``below`` and ``above`` (inf = unbounded side)."""

    below: np.ndarray
    above: np.ndarray


def tolerance_band(rule: Rule, golden: np.ndarray) -> Band | None:
    """The band a rule allows around ``golden``, from its params; None when the rule has none.

    The policy's threshold ``max(atol, rtol·|g|)`` (floored for integer metrics, see
    ``goldens.core.policy``); exact mode is a zero-width band; ``direction`` opens the side that
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


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of True in ``mask``."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1  # every run has both
    return [(int(first), int(last)) for first, last in zip(starts, ends, strict=True)]


def _ticks(lo: float, hi: float, count: int, *, integer: bool = False) -> np.ndarray:
    """Round tick values inside [lo, hi] (matplotlib's locator: steps of 1, 2, 2.5, 5 × 10^k)."""
    from matplotlib.ticker import MaxNLocator

    locator = MaxNLocator(nbins=count, steps=[1, 2, 2.5, 5, 10], integer=integer)
    values = np.asarray(locator.tick_values(lo, hi), dtype=np.float64)
    return values[(values >= lo - 1e-9 * abs(hi - lo)) & (values <= hi + 1e-9 * abs(hi - lo))]


def tick_labels(ticks: Iterable[float]) -> list[str]:
    """The shortest labels that name every tick (``%.Ng`` with the least N that reads back to
    within a millionth of the tick spacing), free of float noise: 0.30000000000000004 reads 0.3."""
    values = [float(v) for v in ticks]
    if not values:
        return []
    spacing = min((abs(b - a) for a, b in pairwise(values)), default=0.0) or abs(values[0])
    for digits in range(1, 16):
        labels = [f"{v:.{digits}g}" for v in values]
        if all(abs(float(label) - v) <= 1e-6 * spacing for label, v in zip(labels, values, strict=True)):
            # 2.4e+10 or 24000000000, 0.3 or 3e-01: whichever is shorter
            return [min(label, derived_precision(float(label)), key=len) for label in labels]
    return [derived_precision(v) for v in values]


class _Axes:
    """Maps steps and values of one panel to SVG coordinates."""

    def __init__(self, x_range: tuple[float, float], y_range: tuple[float, float], left: float,
                 panel: tuple[int, int]):
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        self.left, self.right = left, WIDTH - RIGHT
        self.top, self.bottom = panel

    def x(self, steps: ArrayLike) -> np.ndarray:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (np.asarray(steps, dtype=np.float64) - self.x0) / span * (self.right - self.left)

    def y(self, values: ArrayLike) -> np.ndarray:
        span = (self.y1 - self.y0) or 1.0
        y = self.bottom - (np.asarray(values, dtype=np.float64) - self.y0) / span * (self.bottom - self.top)
        return np.clip(y, -1e5, 1e5)  # far outside the panel: clipped anyway, and never an overflow


def _path(xs: np.ndarray, ys: np.ndarray, *, close: bool = False, vertices: bool = False) -> str:
    """Path data through the finite points, joined (a gap or another grid never breaks a line into
    dots): one absolute move, then relative integer steps (small numbers, small files). Without
    ``vertices`` (no markers drawn on them), runs of collinear steps are merged — the same line."""
    ok = np.isfinite(xs) & np.isfinite(ys)
    xi, yi = np.rint(xs[ok]).astype(np.int64), np.rint(ys[ok]).astype(np.int64)
    if xi.size == 0:
        return ""
    dx, dy = np.diff(xi), np.diff(yi)
    if not vertices and dx.size > 1:
        same = (dx[1:] * dy[:-1] == dy[1:] * dx[:-1]) & (dx[1:] * dx[:-1] + dy[1:] * dy[:-1] > 0)
        starts = np.flatnonzero(np.r_[True, ~same])
        dx, dy = np.add.reduceat(dx, starts), np.add.reduceat(dy, starts)
    moves = " ".join(map("{},{}".format, dx.tolist(), dy.tolist()))
    return f"M{xi[0]},{yi[0]}" + (f"l{moves}" if moves else "") + ("z" if close else "")


def _line(xs, ys, colour: str, width: float, extra: str = "", *, dots: str = "") -> str:
    data = _path(xs, ys, vertices=bool(dots))
    return f'<path d="{data}" fill="none" stroke="{colour}" stroke-width="{width}"{extra}{dots}/>' if data else ""


def _band(axes: _Axes, x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> str:
    """Shade the allowed region; a one-sided band (inf on one side) is drawn as its limit line."""
    lower = np.where(np.isfinite(lower), lower, np.nan)
    upper = np.where(np.isfinite(upper), upper, np.nan)
    px = axes.x(x)
    if np.isfinite(lower).any() and np.isfinite(upper).any():
        both = np.isfinite(lower) & np.isfinite(upper)
        xs = np.concatenate([px[both], px[both][::-1]])
        ys = np.concatenate([axes.y(upper[both]), axes.y(lower[both])[::-1]])
        data = _path(xs, ys, close=True)
        return f'<path d="{data}" fill="{GREEN}" fill-opacity="{BAND_OPACITY}" stroke="none"/>' if data else ""
    return "".join(_line(px, axes.y(limit), GREEN, 2, ' stroke-dasharray="8,5"')
                   for limit in (lower, upper) if np.isfinite(limit).any())


def _crosses(axes: _Axes, steps: np.ndarray, values: np.ndarray) -> str:
    xs, ys = axes.x(steps), axes.y(values)
    ok = np.isfinite(xs) & np.isfinite(ys)
    data = "".join(f"M{x - 7:.0f},{y - 7:.0f}l14,14m0,-14l-14,14" for x, y in zip(xs[ok], ys[ok], strict=True))
    return f'<path d="{data}" stroke="{RED}" stroke-width="3" fill="none"/>' if data else ""


def _triangles(axes: _Axes, steps: np.ndarray, values: np.ndarray) -> str:
    xs, ys = axes.x(steps), axes.y(values)
    ok = np.isfinite(xs) & np.isfinite(ys)
    data = "".join(f"M{x - 7:.0f},{y - 6:.0f}h14l-7,12z" for x, y in zip(xs[ok], ys[ok], strict=True))
    return f'<path d="{data}" fill="{ORANGE}"/>' if data else ""


def _fit(*groups) -> tuple[float, float]:
    """A y-range holding the finite values of ``groups``, with a margin."""
    parts = [np.asarray(g, dtype=np.float64).ravel() for g in groups if len(g)]
    values = np.concatenate(parts) if parts else np.zeros(0)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return -1.0, 1.0
    lo, hi = float(values.min()), float(values.max())
    pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 1.0
    return lo - pad, hi + pad


def _y_axis(axes: _Axes, ticks: np.ndarray, labels: list[str], title: str) -> str:
    parts = []
    for value, label in zip(ticks, labels, strict=True):
        y = float(axes.y(value))
        parts.append(f'<path d="M{axes.left:.0f},{y:.0f}H{axes.right}" stroke="#d0d7de" stroke-width="1"/>'
                     f'<text x="{axes.left - 8:.0f}" y="{y + 7:.0f}" text-anchor="end">{label}</text>')
    middle = (axes.top + axes.bottom) / 2
    parts.append(f'<text transform="translate(18,{middle:.0f}) rotate(-90)" text-anchor="middle">{title}</text>')
    return "".join(parts)


def _legend(entries: list[tuple[str, str]]) -> str:
    """Fixed labels (never input names) in a row above the values panel, right-aligned."""
    parts: list[str] = []
    x: float = WIDTH - RIGHT
    for swatch, label in reversed(entries):
        x -= len(label) * CHAR + 12
        parts.append(f'<text x="{x:.0f}" y="{TOP_PANEL[0] - 14}">{label}</text>')
        x -= 34
        parts.append(swatch.format(x=x, y=TOP_PANEL[0] - 21))
        x -= 18
    return "".join(parts)


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
    pick = _thin(len(table), table.status)
    step = table.step[pick].astype(np.float64)
    golden, actual, status = table.golden[pick], table.actual[pick], table.status[pick]
    residual = actual - golden
    reduced_golden = verdict.golden_value
    if verdict.rule.mode != "summary" or reduced_golden is None or not math.isfinite(reduced_golden):
        reduced_golden = None  # a summary rule's reduced golden, or none to draw
    summary = reduced_golden is not None

    centre = np.full_like(golden, reduced_golden) if summary else golden
    band = tolerance_band(verdict.rule, centre)
    if band is not None and not (band.below.any() or band.above.any()):
        band = None  # an exact rule has no band to draw
    # Only where the golden has a value: on the run's extra steps (a golden of every 5th step
    # against a run of every step) the NaN gaps would cut the band into invisible dots.
    at = np.isfinite(centre)
    skipped = status == _SKIPPED
    judged = ~skipped if (skipped.any() and (~skipped).any()) else np.ones_like(skipped)
    limits = [] if band is None else [centre[at & judged] - band.below[at & judged],
                                      centre[at & judged] + band.above[at & judged]]
    reduced = [reduced_golden] + ([verdict.actual_value] if verdict.actual_value is not None else []) if summary else []
    top_range = _fit(golden[judged], actual[judged], reduced, *limits)
    residual_limits = [] if band is None else [-band.below[at & judged], band.above[at & judged]]
    reduced_delta = [verdict.delta] if summary and verdict.delta is not None else []
    bottom_range = _fit(residual[judged], [0.0], reduced_delta, *residual_limits)

    top_ticks, bottom_ticks = _ticks(*top_range, 5), _ticks(*bottom_range, 3)
    top_labels, bottom_labels = tick_labels(top_ticks), tick_labels(bottom_ticks)
    left = 44 + CHAR * max(len(label) for label in [*top_labels, *bottom_labels, "0"])
    x_range = (float(step.min()) - 0.5, float(step.max()) + 0.5)
    top, bottom = _Axes(x_range, top_range, left, TOP_PANEL), _Axes(x_range, bottom_range, left, BOTTOM_PANEL)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH // 2}" height="{HEIGHT // 2}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-size="{FONT}" font-family="system-ui, sans-serif" fill="#1f2328" '
           f'role="img" aria-label="golden and actual per step, and their difference">',
           f'<defs><marker id="{salt}-dot" viewBox="0 0 6 6" refX="3" refY="3" markerWidth="6" markerHeight="6" '
           f'markerUnits="userSpaceOnUse"><circle cx="3" cy="3" r="3" fill="{BLUE}"/></marker>']
    for name, axes in (("top", top), ("bottom", bottom)):
        out.append(f'<clipPath id="{salt}-{name}"><rect x="{axes.left:.0f}" y="{axes.top}" '
                   f'width="{axes.right - axes.left:.0f}" height="{axes.bottom - axes.top}"/></clipPath>')
    out.append("</defs>")

    for axes, ticks, labels, title in ((top, top_ticks, top_labels, "value"),
                                       (bottom, bottom_ticks, bottom_labels, "actual − golden")):
        for first, last in _runs(skipped):
            x0, x1 = axes.x([step[first] - 0.5, step[last] + 0.5])
            out.append(f'<rect x="{x0:.0f}" y="{axes.top}" width="{max(x1 - x0, 1):.0f}" '
                       f'height="{axes.bottom - axes.top}" fill="#e6e6e6"/>')
        out.append(_y_axis(axes, ticks, labels, title))

    dot = f' marker-start="url(#{salt}-dot)" marker-mid="url(#{salt}-dot)" marker-end="url(#{salt}-dot)"'
    dot = dot if len(step) <= 400 else ""  # beyond that the dots would only blur the line
    has_golden, has_actual, has_both = np.isfinite(golden), np.isfinite(actual), np.isfinite(residual)
    out.append(f'<g clip-path="url(#{salt}-top)">')
    if band is not None:
        out.append(_band(top, step[at], centre[at] - band.below[at], centre[at] + band.above[at]))
    if reduced_golden is not None:
        out.append(_line(top.x(x_range), top.y([reduced_golden] * 2), "#1f2328", 1.6, ' stroke-dasharray="3,4"'))
        if verdict.actual_value is not None:
            out.append(_line(top.x(x_range), top.y([verdict.actual_value] * 2), BLUE, 1.6, ' stroke-dasharray="3,4"'))
    out.append(_line(top.x(step[has_golden]), top.y(golden[has_golden]), "#1f2328", 2.8))
    out.append(_line(top.x(step[has_actual]), top.y(actual[has_actual]), BLUE, 2, ' stroke-dasharray="10,5"', dots=dot))
    failing, missing = status == _FAIL, np.isin(status, _MISSING)
    out.append(_crosses(top, step[failing], actual[failing]))
    out.append(_triangles(top, step[missing], golden[missing]))
    out.append("</g>")

    out.append(f'<g clip-path="url(#{salt}-bottom)">')
    if band is not None:
        out.append(_band(bottom, step[at], -band.below[at], band.above[at]))
    out.append(_line(bottom.x(x_range), bottom.y([0.0, 0.0]), "#1f2328", 1.6))
    if reduced_delta:
        out.append(_line(bottom.x(x_range), bottom.y(reduced_delta * 2), BLUE, 1.6, ' stroke-dasharray="3,4"'))
    out.append(_line(bottom.x(step[has_both]), bottom.y(residual[has_both]), BLUE, 2, dots=dot))
    out.append(_crosses(bottom, step[failing], residual[failing]))
    out.append("</g>")

    for axes in (top, bottom):
        out.append(f'<rect x="{axes.left:.0f}" y="{axes.top}" width="{axes.right - axes.left:.0f}" '
                   f'height="{axes.bottom - axes.top}" fill="none" stroke="#57606a" stroke-width="1.5"/>')
    x_ticks = _ticks(float(step.min()), float(step.max()), 8, integer=True)
    for value, label in zip(x_ticks, tick_labels(x_ticks), strict=True):
        x = float(bottom.x(value))
        out.append(f'<path d="M{x:.0f},{BOTTOM_PANEL[1]}v8" stroke="#57606a" stroke-width="1.5"/>'
                   f'<text x="{x:.0f}" y="{BOTTOM_PANEL[1] + 30}" text-anchor="middle">{label}</text>')
    out.append(f'<text x="{(left + WIDTH - RIGHT) / 2:.0f}" y="{HEIGHT - 36}" text-anchor="middle">step'
               f'{" (grey: not judged)" if skipped.any() else ""}</text>')

    entries = [('<path d="M{x},{y}h30" stroke="#1f2328" stroke-width="2.8"/>', "golden"),
               (f'<path d="M{{x}},{{y}}h30" stroke="{BLUE}" stroke-width="2" stroke-dasharray="10,5"/>', "actual")]
    if band is not None:
        entries.append((f'<rect x="{{x}}" y="{{y}}" transform="translate(0,-8)" width="30" height="16" '
                        f'fill="{GREEN}" fill-opacity="{BAND_OPACITY}"/>', "tolerance"))
    if failing.any():
        entries.append((f'<path d="M{{x}},{{y}}m8,-7l14,14m0,-14l-14,14" stroke="{RED}" stroke-width="3"/>',
                        "failing step"))
    if missing.any():
        entries.append((f'<path d="M{{x}},{{y}}m8,-6h14l-7,12z" fill="{ORANGE}"/>', "no actual value"))
    out.append(_legend(entries))
    out.append("</svg>")
    return "".join(out)
