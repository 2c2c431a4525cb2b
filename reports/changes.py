"""The golden-change report: how far did the goldens move between two revisions?

This is the table Megatron maintainers build by hand for every golden refresh: per
(file, metric) the signed mean relative difference over the steps both revisions hold, then
per metric the median and maximum of its magnitude and a decade histogram, so a reviewer
sees at once whether a refresh is numerical noise (≤ 1e-6) or a real shift (≥ 1e-2).

Pure: golden sets in, frames out. Reading revisions (git refs, store versions) lives in
``reports.revisions``.

Sign convention: ``(new − old) / |old|``, so a positive value means the new golden is larger
(the same direction as Δ = actual − golden in the comparison report). Megatron's script
prints ``(old − new) / old``; the magnitudes agree, the sign is flipped.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from goldens.core.model import GoldenSet, MetricSeries

# A step whose old value is this close to zero has no meaningful relative difference
# (num-zeros at step 0 of a dense model, memory before allocation); Megatron skips it too.
OLD_MAGNITUDE_FLOOR = 1e-12

# Upper edges of the magnitude buckets after the exact-zero bucket; the last bucket is ≥ 1e-1.
DECADE_EDGES = (1e-6, 1e-4, 1e-3, 1e-2, 1e-1)
BUCKETS = ("== 0", "< 1e-6", "< 1e-4", "< 1e-3", "< 1e-2", "< 1e-1", "≥ 1e-1")

ROW_COLUMNS = ["file", "metric", "n_steps", "mean_rel_diff"]
SUMMARY_COLUMNS = ["metric", "files", "median_abs", "max_abs", *BUCKETS]


@dataclass(frozen=True)
class MetricDiff:
    """The signed mean relative difference of one metric over its usable shared steps."""

    mean_rel_diff: float  # NaN when no step is usable
    n_steps: int


@dataclass(frozen=True)
class GoldenChanges:
    """Everything the change report shows, as frames and lists (rendered by markdown/html)."""

    base_label: str
    head_label: str
    rows: pd.DataFrame  # ROW_COLUMNS: one row per (changed file, shared metric) with usable steps
    summary: pd.DataFrame  # SUMMARY_COLUMNS: one row per metric
    added: tuple[str, ...]  # files only in head
    removed: tuple[str, ...]  # files only in base
    unchanged: tuple[str, ...]  # files bit-identical in both
    notes: tuple[str, ...]  # metrics added/removed, steps or grid changed, no usable shared step
    grid_only: tuple[str, ...] = ()  # changed files whose shared values are all equal: only steps/grid moved

    @property
    def changed_files(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.rows["file"]))


def metric_diff(old: MetricSeries, new: MetricSeries) -> MetricDiff:
    """Mean of (new − old)/|old| over steps both hold with finite values and |old| ≥ the floor."""
    _, old_at, new_at = np.intersect1d(old.steps, new.steps, assume_unique=True, return_indices=True)
    old_values = old.values[old_at]
    new_values = new.values[new_at]
    usable = np.isfinite(old_values) & np.isfinite(new_values) & (np.abs(old_values) >= OLD_MAGNITUDE_FLOOR)
    if not usable.any():
        return MetricDiff(float("nan"), 0)
    old_values, new_values = old_values[usable], new_values[usable]
    relative = (new_values - old_values) / np.abs(old_values)
    return MetricDiff(float(np.mean(relative)), int(usable.sum()))


def values_moved(old: MetricSeries, new: MetricSeries) -> bool:
    """Whether any value the two revisions share a step for differs ("nan" equal to "nan")."""
    _, old_at, new_at = np.intersect1d(old.steps, new.steps, assume_unique=True, return_indices=True)
    return not np.array_equal(old.values[old_at], new.values[new_at], equal_nan=True)


def _steps_text(steps: np.ndarray) -> str:
    shown = ", ".join(str(int(s)) for s in steps[:3])
    return f"step {shown}" if steps.size == 1 else f"{steps.size} steps ({shown}{', …' if steps.size > 3 else ''})"


def step_change(old: MetricSeries, new: MetricSeries) -> str | None:
    """What changed in a metric's steps and grid header, in words; None if nothing did.

    The relative difference covers the shared steps only, so a refresh that only drops a
    leading "nan" (Megatron #6539), turns a value into "nan", extends a run or changes the
    logging interval would otherwise show as a changed file whose every difference is 0.
    """
    parts = []
    dropped, added = np.setdiff1d(old.steps, new.steps), np.setdiff1d(new.steps, old.steps)
    if dropped.size:
        parts.append(f"{_steps_text(dropped)} dropped")
    if added.size:
        parts.append(f"{_steps_text(added)} added")
    shared, old_at, new_at = np.intersect1d(old.steps, new.steps, assume_unique=True, return_indices=True)
    old_nan, new_nan = np.isnan(old.values[old_at]), np.isnan(new.values[new_at])
    if (became := shared[new_nan & ~old_nan]).size:
        parts.append(f"{_steps_text(became)} now nan")
    if (filled := shared[old_nan & ~new_nan]).size:
        parts.append(f"{_steps_text(filled)} no longer nan")
    for field in ("start_step", "end_step", "step_interval"):
        before, after = getattr(old, field), getattr(new, field)
        if before != after:
            parts.append(f"{field} {before} → {after}")
    return "; ".join(parts) or None


def decade_bucket(magnitudes: ArrayLike) -> np.ndarray:
    """Index into BUCKETS for each magnitude: 0 for exactly zero, then one bucket per decade edge."""
    values = np.asarray(magnitudes, dtype=np.float64)
    # side="right": a magnitude equal to an edge belongs to the next bucket ("< 1e-6" excludes 1e-6).
    index = 1 + np.searchsorted(np.asarray(DECADE_EDGES), values, side="right")
    return np.where(values == 0, 0, index)


def _series_of(golden: GoldenSet) -> dict[str, MetricSeries]:
    """Per-step metrics plus scalar entries (e.g. iteration_timing_avg) as one-value series."""
    series = dict(golden.metrics)
    for name, value in golden.scalars.items():
        series[name] = MetricSeries(name, np.array([0]), np.array([value]))
    return series


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Per metric: how many files, median and max of |mean_rel_diff|, and the decade histogram."""
    records = []
    for metric, group in rows.groupby("metric", sort=False):
        magnitudes = group["mean_rel_diff"].abs().to_numpy()
        counts = np.bincount(decade_bucket(magnitudes), minlength=len(BUCKETS))
        records.append([metric, len(group), float(np.median(magnitudes)), float(np.max(magnitudes)),
                        *(int(c) for c in counts)])
    return pd.DataFrame.from_records(records, columns=SUMMARY_COLUMNS)


def compare_revisions(base: Mapping[str, GoldenSet], head: Mapping[str, GoldenSet], *,
                      base_label: str, head_label: str) -> GoldenChanges:
    """Compare two revisions of a set of golden files keyed by a stable name (e.g. their path)."""
    rows: list[tuple[str, str, int, float]] = []
    notes: list[str] = []
    unchanged: list[str] = []
    grid_only: list[str] = []
    for name in sorted(base.keys() & head.keys()):
        old_golden, new_golden = base[name], head[name]
        if old_golden == new_golden:
            unchanged.append(name)
            continue
        old_series, new_series = _series_of(old_golden), _series_of(new_golden)
        if old_series.keys() == new_series.keys() and not any(values_moved(old_series[m], new_series[m])
                                                              for m in old_series):
            grid_only.append(name)  # e.g. only a leading "nan" step dropped (Megatron #6539)
        for metric in old_series.keys() - new_series.keys():
            notes.append(f"{name}: metric {metric!r} removed")
        for metric in new_series.keys() - old_series.keys():
            notes.append(f"{name}: metric {metric!r} added")
        for metric in (m for m in old_series if m in new_series):
            changed_steps = step_change(old_series[metric], new_series[metric])
            if changed_steps:
                notes.append(f"{name}: metric {metric!r} steps changed: {changed_steps}")
            diff = metric_diff(old_series[metric], new_series[metric])
            if diff.n_steps == 0:
                notes.append(f"{name}: metric {metric!r} has no shared step with a usable value")
                continue
            rows.append((name, metric, diff.n_steps, diff.mean_rel_diff))
    frame = pd.DataFrame.from_records(rows, columns=ROW_COLUMNS).astype(
        {"file": object, "metric": object, "n_steps": "int64", "mean_rel_diff": "float64"})
    return GoldenChanges(
        base_label=base_label, head_label=head_label, rows=frame, summary=summarize(frame),
        added=tuple(sorted(head.keys() - base.keys())), removed=tuple(sorted(base.keys() - head.keys())),
        unchanged=tuple(unchanged), notes=tuple(sorted(notes)), grid_only=tuple(grid_only))
