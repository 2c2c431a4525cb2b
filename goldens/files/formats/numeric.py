"""Numbers, steps and step grids as the formats hold them: exact float64 values (NaN and inf as the
strings Megatron writes), integer steps within 2**53, and Megatron's ``start_step`` / ``end_step`` /
``step_interval`` grid — counted before it is made, so a header cannot ask for 2**53 steps.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from ...core.errors import FormatError
from ..bounded import short

_STEP_TEXT = re.compile(r"[0-9]+")
_NONFINITE_STRINGS = {"nan": math.nan, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf,
                      "infinity": math.inf, "-infinity": -math.inf}
# The spellings seen in files, looked up as written (fast); others go through strip().lower().
_NONFINITE_SPELLINGS = {**_NONFINITE_STRINGS, "NaN": math.nan, "Infinity": math.inf,
                        "-Infinity": -math.inf, "Inf": math.inf, "-Inf": -math.inf}
MAX_STEP = 2**53  # far beyond any training run; keeps steps exact in int64 and float64
MAX_STEP_DIGITS = len(str(MAX_STEP))
MAX_GRID_STEPS = 2**24  # steps one metric's grid may be padded to: 16.7 M, 128 MiB of int64


def to_float(raw: Any, *, path: object, key: str) -> float:
    """A JSON value as float64, exactly: numbers, and the strings Megatron writes for NaN/inf."""
    if isinstance(raw, bool) or raw is None:
        raise FormatError(f"expected a number, got {json.dumps(raw)}", path=path, key=key)
    if isinstance(raw, float):
        return raw
    if isinstance(raw, int):
        try:
            return float(raw)
        except OverflowError:
            raise FormatError("integer too large for a float64", path=path, key=key) from None
    if isinstance(raw, str):
        special = _NONFINITE_STRINGS.get(raw.strip().lower())
        if special is not None:
            return special
        raise FormatError(f"expected a number, got the string {short(raw)}", path=path, key=key)
    raise FormatError(f"expected a number, got {type(raw).__name__}", path=path, key=key)


def to_step(raw: Any, *, path: object, key: str) -> int:
    step: int | None = None
    if isinstance(raw, bool):
        step = None
    elif isinstance(raw, int):
        step = raw
    elif isinstance(raw, str) and _STEP_TEXT.fullmatch(raw):
        if len(raw.lstrip("0")) > MAX_STEP_DIGITS:  # int() of thousands of digits is refused by Python itself
            raise FormatError(f"step must be between 0 and 2**53, got a number of {len(raw):,} digits",
                              path=path, key=key)
        step = int(raw)
    elif isinstance(raw, float) and raw.is_integer():
        step = int(raw)
    if step is None:
        raise FormatError(f"step must be an integer, got {short(raw)}", path=path, key=key)
    if not 0 <= step <= MAX_STEP:
        raise FormatError(f"step must be between 0 and 2**53, got {step}", path=path, key=key)
    return step


def fast_steps(keys: list[str]) -> np.ndarray | None:
    """Step keys ("1", "5", …) as int64 when all are ASCII digits within 2**53 (else None)."""
    joined = "".join(keys)
    if joined.isascii() and joined.isdigit() and all(keys) and max(map(len, keys), default=0) <= 16:
        steps = np.fromiter(map(int, keys), dtype=np.int64, count=len(keys))  # ≤ 16 digits: no overflow
        if not steps.size or int(steps.max()) <= MAX_STEP:
            return steps
    return None


def fast_values(raw: list[Any]) -> np.ndarray | None:
    """JSON values as float64 when all are numbers or the usual NaN/inf spellings (else None)."""
    kinds = set(map(type, raw))
    try:
        if kinds <= {float, int}:
            return np.array(raw, dtype=np.float64)
        if kinds <= {float, int, str}:
            special = _NONFINITE_SPELLINGS
            return np.array([special[v] if type(v) is str else v for v in raw], dtype=np.float64)
    except (OverflowError, KeyError):
        pass  # an integer beyond float64, an odd spelling or a string that is no number
    return None


def step_array(keys: list[str], *, path: object, key: str) -> np.ndarray:
    """Step keys ("1", "5", …) as int64; the common all-ASCII-digits case without a Python loop."""
    steps = fast_steps(keys)
    if steps is not None:
        return steps
    return np.array([to_step(s, path=path, key=key) for s in keys], dtype=np.int64)


def value_array(raw: list[Any], labels: Iterable[str], *, path: object, key: str) -> np.ndarray:
    """JSON values as float64, exactly; the common cases (numbers, "nan" strings) in bulk.

    ``labels`` names each value in an error message (the step key or the list index).
    """
    fast = fast_values(raw)
    if fast is not None:
        return fast
    return np.array([to_float(v, path=path, key=f"{key}{label}") for label, v in zip(labels, raw, strict=True)],
                    dtype=np.float64)


def grid_size(start: int, end: int, interval: int) -> int:
    """How many steps ``megatron_grid`` declares, counted, not made (a header may say end_step 2**53)."""
    if interval <= 0 or end < start:
        return 1
    first_multiple = (start // interval + 1) * interval
    return 1 + (max(0, (end - first_multiple) // interval + 1) if end >= first_multiple else 0)


def grid_steps(start: int, interval: int, first: int, count: int) -> np.ndarray:
    """``count`` steps of the grid from its ``first``-th (0: ``start``), without making the ones before."""
    positions = np.arange(first, first + count, dtype=np.int64)
    first_multiple = (start // interval + 1) * interval
    return np.where(positions == 0, start, first_multiple + (positions - 1) * interval)


def megatron_grid(start: int, end: int, interval: int) -> np.ndarray:
    """The steps a Megatron grid header declares: ``start``, then each multiple of ``interval`` up to ``end``.

    That is how Megatron samples its logs: start 1, interval 5, end 100 → 1, 5, 10, …, 100.
    ``FormatError`` when that is more than ``MAX_GRID_STEPS`` steps (checked before anything is made).
    """
    size = grid_size(start, end, interval)
    if size > MAX_GRID_STEPS:
        raise FormatError(f"the grid start_step {start} … end_step {end} every {interval} has {size} steps, "
                          f"more than the {MAX_GRID_STEPS} a golden may hold")
    if interval <= 0 or end < start:
        return np.array([start], dtype=np.int64)
    return grid_steps(start, interval, 0, size)


def step_interval_of(steps: np.ndarray, fallback: int = 1) -> int:
    """The ``step_interval`` Megatron's extraction declares for these steps: the gcd of the gaps
    between the steps after step 1 (1, 5, 10, …, 50 is every 5; 2, 4, …, 24 every 2), else ``fallback``."""
    later = np.asarray(steps, dtype=np.int64)
    later = later[later != 1]
    if later.size < 2:
        return fallback
    return int(np.gcd.reduce(np.diff(later))) or fallback
