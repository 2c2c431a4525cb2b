"""The in-memory data model: metric series, golden sets, artifacts.

Values are float64 at full precision; NaN marks a step without a value (e.g. the steps a
resumed phase did not run). Steps are int64 and strictly increasing.
"""
from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class MetricSeries:
    """One metric over steps, plus the grid header the Megatron file declared for it."""

    name: str
    steps: np.ndarray  # int64, strictly increasing
    values: np.ndarray  # float64, NaN = missing
    start_step: int | None = None
    end_step: int | None = None
    step_interval: int | None = None
    # The block's ``value_precision`` marker as written (Megatron PR #7087: "full" = values at full
    # precision; None = absent, legacy 5-decimal data). Kept so every round trip writes it back.
    precision: str | None = None

    def __post_init__(self) -> None:
        steps = np.asarray(self.steps, dtype=np.int64)
        values = np.asarray(self.values, dtype=np.float64)
        if steps.ndim != 1 or values.shape != steps.shape:
            raise ValueError(f"metric {self.name!r}: steps and values must be 1-D of equal length")
        if steps.size > 1 and not (steps[1:] > steps[:-1]).all():  # slices: cheap on short series
            raise ValueError(f"metric {self.name!r}: steps must be strictly increasing")
        steps.flags.writeable = False
        values.flags.writeable = False
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "values", values)
        for grid_field in ("start_step", "end_step", "step_interval"):  # numpy ints → int (JSON-writable)
            value = getattr(self, grid_field)
            if value is not None:
                object.__setattr__(self, grid_field, operator.index(value))

    @classmethod
    def from_mapping(cls, name: str, values: Mapping[int, float], **grid: Any) -> MetricSeries:
        items = sorted(values.items())
        steps = np.fromiter((s for s, _ in items), dtype=np.int64, count=len(items))
        vals = np.fromiter((v for _, v in items), dtype=np.float64, count=len(items))
        return cls(name, steps, vals, **grid)

    def __len__(self) -> int:
        return int(self.steps.size)

    def __eq__(self, other: object) -> bool:
        """Bit-exact equality (NaN equals NaN): what a round trip must preserve."""
        if not isinstance(other, MetricSeries):
            return NotImplemented
        return (
            self.name == other.name
            and np.array_equal(self.steps, other.steps)
            and self.values.tobytes() == other.values.tobytes()
            and (self.start_step, self.end_step, self.step_interval, self.precision)
            == (other.start_step, other.end_step, other.step_interval, other.precision)
        )

    __hash__ = None  # type: ignore[assignment]  # equal by value, mutable arrays inside: unhashable

    def present(self) -> MetricSeries:
        """The steps that hold a value (NaN dropped)."""
        keep = ~np.isnan(self.values)
        return MetricSeries(self.name, self.steps[keep], self.values[keep],
                            self.start_step, self.end_step, self.step_interval, self.precision)

    def on_grid(self, steps: np.ndarray) -> np.ndarray:
        """The values placed on ``steps`` (sorted, holding every step of this series), NaN elsewhere."""
        out = np.full(steps.shape, np.nan)
        out[np.searchsorted(steps, self.steps)] = self.values
        return out

    def as_dict(self) -> dict[int, float]:
        return dict(zip(self.steps.tolist(), self.values.tolist(), strict=True))


def valued_span(values: np.ndarray) -> slice:
    """From the first to the last value that is not NaN (empty, at the end, when none is).

    NaN outside it is padding: a Megatron ``_2nd`` file lists the steps before the resume as
    "nan", and a run that stopped early may list the steps it never reached the same way.
    """
    valued = ~np.isnan(values)
    first = int(np.argmax(valued)) if valued.size else 0
    if not valued.size or not valued[first]:
        return slice(values.size, values.size)
    last = values.size - 1 - int(np.argmax(valued[::-1]))
    return slice(first, last + 1)


@dataclass(frozen=True)
class GoldenKey:
    """Which golden: a case on an environment (dev/lts) and platform (dgx_h100, cpu…), a phase."""

    case: str
    env: str
    platform: str
    phase: int = 1  # 2 = the resumed phase of a resume case (Megatron's ``_2nd`` file)

    def filename(self) -> str:
        suffix = "_2nd" if self.phase == 2 else ""
        return f"golden_values_{self.env}_{self.platform}{suffix}.json"


@dataclass(frozen=True)
class GoldenSet:
    """The metrics of one golden file: per-step series plus scalar entries kept as written."""

    metrics: dict[str, MetricSeries]
    scalars: dict[str, float] = field(default_factory=dict)
    key: GoldenKey | None = None
    source: str | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GoldenSet):
            return NotImplemented
        return (list(self.metrics) == list(other.metrics)
                and all(self.metrics[k] == other.metrics[k] for k in self.metrics)
                and list(self.scalars) == list(other.scalars)
                and all(np.float64(self.scalars[k]).tobytes() == np.float64(other.scalars[k]).tobytes()
                        for k in self.scalars))

    __hash__ = None  # type: ignore[assignment]  # equal by value, mutable arrays inside: unhashable


@dataclass(frozen=True, eq=False)
class InferenceGolden:
    """An inference golden: the top-level JSON object as written — request id → that request's record
    (generated tokens, logprobs, text, …) — plus run-level entries (``throughput``, memory)."""

    entries: dict[str, Any]
    source: str | None = None


@dataclass(frozen=True)
class Phase:
    """One phase of a run: phase 1 trains from scratch, phase 2 resumes from a checkpoint."""

    number: int
    metrics: dict[str, MetricSeries]
    first_step: int
    last_step: int
    resumed_from: int | None = None


@dataclass(frozen=True)
class Artifact:
    """What a run emits: metrics per phase plus the provenance that decides how to compare."""

    case: str
    run_id: str
    status: str  # complete | incomplete | failed
    provenance: dict[str, Any]
    phases: dict[int, Phase]
    error: str | None = None
    source: str | None = None

    @property
    def fingerprint(self) -> str | None:
        return self.provenance.get("fingerprint")

    @property
    def approvable(self) -> bool:
        return self.status == "complete"


def number_to_json(value: float) -> Any:
    """Megatron writes a missing value as the string "nan"; other numbers at full precision."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value
