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
    """Both sides of one metric on the union of their steps (NaN + has_row=False where absent)."""

    step: np.ndarray
    golden: np.ndarray
    actual: np.ndarray
    golden_row: np.ndarray  # bool: the golden lists this step (its value may be NaN)
    actual_row: np.ndarray


def sorted_union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union of two strictly increasing arrays in linear time: a stable sort (timsort) of two
    sorted runs is a merge; np.union1d would hash or sort from scratch."""
    merged = np.concatenate([a, b])
    merged.sort(kind="stable")
    keep = np.empty(merged.shape, dtype=bool)
    keep[:1] = True
    np.not_equal(merged[1:], merged[:-1], out=keep[1:])
    return merged[keep]


def align(golden: MetricSeries | None, actual: MetricSeries | None) -> Aligned:
    """Both series on the union of their steps; an absent series is an empty one."""
    empty = MetricSeries("", np.empty(0, np.int64), np.empty(0))
    g, a = golden or empty, actual or empty
    if np.array_equal(g.steps, a.steps):
        rows = np.ones(g.steps.shape, dtype=bool)
        return Aligned(g.steps, g.values, a.values, rows, rows)
    steps = sorted_union(g.steps, a.steps)

    def place(series: MetricSeries) -> tuple[np.ndarray, np.ndarray]:
        values = np.full(steps.shape, np.nan)
        row = np.zeros(steps.shape, dtype=bool)
        idx = np.searchsorted(steps, series.steps)
        values[idx] = series.values
        row[idx] = True
        return values, row

    gv, gr = place(g)
    av, ar = place(a)
    return Aligned(steps, gv, av, gr, ar)
