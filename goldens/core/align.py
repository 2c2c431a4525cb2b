"""Two series of one metric on one step grid: the shared first step of every comparison.

Pure numpy. The engine aligns golden and run; the modes judge the aligned rows; the review and
report code use the same union of steps.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import MetricSeries


@dataclass(frozen=True, eq=False)
class Aligned:
    """Both sides of one metric on the union of their steps (NaN + has_row=False where absent).
    On one grid (the same steps on both sides) ``golden_row`` and ``actual_row`` are one array."""

    step: np.ndarray
    golden: np.ndarray
    actual: np.ndarray
    golden_row: np.ndarray  # bool: the golden lists this step (its value may be NaN)
    actual_row: np.ndarray


def align(golden: MetricSeries | None, actual: MetricSeries | None) -> Aligned:
    """Both series on the union of their steps; an absent series is an empty one."""
    empty = MetricSeries("", np.empty(0, np.int64), np.empty(0))
    g, a = golden or empty, actual or empty
    if np.array_equal(g.steps, a.steps):
        rows = np.ones(g.steps.shape, dtype=bool)
        return Aligned(g.steps, g.values, a.values, rows, rows)
    for inner, outer, inner_is_golden in ((a, g, False), (g, a, True)):
        if outer.steps.size >= max(inner.steps.size, _LARGE):
            # One grid inside the other (a truncated run, a run with holes, a sparser golden): the
            # union is the larger grid; only the smaller side is placed (O(n), no sort, no search).
            inside = np.isin(outer.steps, inner.steps, assume_unique=True)
            if int(np.count_nonzero(inside)) == inner.steps.size:
                values = np.full(outer.steps.shape, np.nan)
                values[inside] = inner.values
                full = np.ones(outer.steps.shape, dtype=bool)
                if inner_is_golden:
                    return Aligned(outer.steps, values, outer.values, inside, full)
                return Aligned(outer.steps, outer.values, values, full, inside)
    steps, where = _union_positions(g.steps, a.steps)
    placed = []
    for series, idx in ((g, where[:g.steps.size]), (a, where[g.steps.size:])):
        values = np.full(steps.shape, np.nan)
        row = np.zeros(steps.shape, dtype=bool)
        values[idx] = series.values
        row[idx] = True
        placed.append((values, row))
    (gv, gr), (av, ar) = placed
    return Aligned(steps, gv, av, gr, ar)


_LARGE = 4096  # grids at least this long are checked for one inside the other (np.isin: a table, no sort)


def _union_positions(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted union of two strictly increasing arrays, and where each element of ``a`` then ``b``
    lands in it — from one stable sort of the two runs (a merge), without a search per element."""
    merged = np.concatenate([a, b])
    order = np.argsort(merged, kind="stable")
    ordered = merged[order]
    keep = np.empty(ordered.shape, dtype=bool)
    keep[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    where = np.empty(merged.shape, dtype=np.int64)
    where[order] = np.cumsum(keep) - 1
    return ordered[keep], where
