"""The inference checks, in one table beside ``MODES``: how a field of an inference golden (keyed by
request id, as Megatron's inference scripts write it) is judged against a run's.

A row is an ``InferenceCheck``: its name, the parameters it takes (with their validators), the
rule's human line, and its evaluator. A request-scoped check gets the golden's and the run's
records of one request; a run-scoped check gets the two top-level values. An evaluator returns
``None`` when the values pass, else one line saying what differs; the comparison
(``goldens.core.compare.inference``) applies the policy's rules (``InferenceRules``: data, from a
preset) to the fields the case checks. Pure Python on the parsed JSON: the values are compared as
Megatron's ``test_inference_regular_pipeline.py`` compares them, operation for operation.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Evaluator = Callable[[Any, Any, str, Mapping[str, Any]], "Checked"]


@dataclass(frozen=True)
class Checked:
    """One check's outcome: the failure line (None: passed) and, for run-scoped checks, the numbers."""

    failure: str | None
    golden: float | None = None
    actual: float | None = None


@dataclass(frozen=True)
class InferenceCheck:
    """One way to judge an inference field."""

    name: str
    scope: str  # "request" (each request's record) | "run" (a top-level value)
    evaluate: Evaluator
    params: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)  # value → value, or ValueError
    describe: Callable[[Mapping[str, Any]], str] = lambda params: ""


@dataclass(frozen=True)
class InferenceRule:
    """A field's rule in a policy: which check, with which parameters."""

    check: str
    params: Mapping[str, Any]

    def describe(self) -> str:
        return INFERENCE_CHECKS[self.check].describe(self.params)


@dataclass(frozen=True)
class InferenceRules:
    """The inference section of a policy: top-level keys that are not request ids, and one rule per field."""

    run_level: tuple[str, ...]
    fields: Mapping[str, InferenceRule]


def _field(record: Any, name: str) -> Any:
    """``record[name]`` as Megatron indexes it: a record that is not a mapping, or lacks the field, fails."""
    if not isinstance(record, Mapping):
        raise _Failed(f"the record is {type(record).__name__}, not an object")
    if name not in record:
        raise _Failed(f"the run has no {name!r}")
    return record[name]


class _Failed(Exception):
    """What Megatron's test would raise (an assert or an error): the check fails with this line."""


def _guarded(check: Callable[..., Checked]) -> Callable[..., Checked]:
    def run(*args: Any) -> Checked:
        try:
            return check(*args)
        except _Failed as exc:
            return Checked(str(exc))
        except (TypeError, ValueError, IndexError, KeyError, statistics.StatisticsError) as exc:
            return Checked(f"cannot be compared ({type(exc).__name__}: {exc})")
    return run


# ---------------------------------------------------------------- request-scoped checks

@_guarded
def _equal(golden: Any, run: Any, name: str, params: Mapping[str, Any]) -> Checked:
    """Python equality of the two values (token ids)."""
    g, a = golden[name], _field(run, name)
    if g == a:
        return Checked(None)
    if isinstance(g, list) and isinstance(a, list):
        at = next((i for i, (x, y) in enumerate(zip(g, a, strict=False)) if x != y), min(len(g), len(a)))
        if at < min(len(g), len(a)):
            return Checked(f"differs at index {at}: golden {g[at]!r}, run {a[at]!r}")
        return Checked(f"length {len(a)} where the golden has {len(g)}")
    return Checked(f"golden {g!r}, run {a!r}")


@_guarded
def _close_each(golden: Any, run: Any, name: str, params: Mapping[str, Any]) -> Checked:
    """Equal lengths, then ``math.isclose(g, a, rel_tol, abs_tol)`` element by element (logprobs)."""
    g, a = golden[name], _field(run, name)
    if len(g) != len(a):
        return Checked(f"length {len(a)} where the golden has {len(g)}")
    for i, (x, y) in enumerate(zip(g, a, strict=True)):
        if not math.isclose(x, y, rel_tol=params["rel_tol"], abs_tol=params["abs_tol"]):
            return Checked(f"differs at index {i}: golden {x!r}, run {y!r} "
                           f"(|Δ| {abs(y - x):.3g} > {params['abs_tol']:g})")
    return Checked(None)


@_guarded
def _common_prefix(golden: Any, run: Any, name: str, params: Mapping[str, Any]) -> Checked:
    """The shorter of the two texts is a prefix of the longer, and neither is empty."""
    g, a = golden[name], _field(run, name)
    n = min(len(g), len(a))
    if n == 0:
        return Checked("empty text on one side")
    if g[:n] != a[:n]:
        at = next(i for i in range(n) if g[i] != a[i])
        return Checked(f"differs at character {at} of the common {n}")
    return Checked(None)


@_guarded
def _sorted_rows_at(golden: Any, run: Any, name: str, params: Mapping[str, Any]) -> Checked:
    """The run's rows at the golden's token indices, each row sorted, equal to the golden's (MoE routing)."""
    indices = golden.get(params["index_field"])
    current = np.array(_field(run, name))
    if indices is None:
        return Checked(f"the golden has no {params['index_field']!r}")
    current = np.sort(current[indices], axis=-1)
    expected = np.sort(np.array(golden[name]), axis=-1)
    if not np.array_equal(expected, current):
        return Checked("routing differs (rows sorted, at the golden's token indices)")
    return Checked(None)


# ---------------------------------------------------------------- run-scoped checks

def _median_of(value: Any, drop_first: str) -> float:
    """``always``: the median of ``value[1:]`` (a list); ``if_several``: a scalar as it is, a list
    without its first element when it has more than one — the two ways Megatron reduces them."""
    if drop_first == "always":
        return statistics.median(value[1:])
    if isinstance(value, list):
        if not value:
            raise _Failed("an empty list")
        values = [float(v) for v in value]
        return float(statistics.median(values[1:] if len(values) > 1 else values))
    return float(value)


@_guarded
def _median_band(golden: Any, run: Any, name: str, params: Mapping[str, Any]) -> Checked:
    """The run's median within [low·g, high·g] of the golden's (``high_open``: below high·g)."""
    g = _median_of(golden, params["drop_first"])
    if run is _ABSENT:
        return Checked(f"the run has no {name!r}", g)
    a = _median_of(run, params["drop_first"])
    if params["golden_positive"] and not g > 0:
        return Checked(f"the golden's median must be > 0, got {g!r}", g, a)
    low, high = params["low"] * g, params["high"] * g
    if params["nan_passes"]:  # written as "fail if below / above": a NaN median is neither
        outside = a < low or (a >= high if params["high_open"] else a > high)
    else:  # written as "assert at least low and below high": a NaN median is not
        outside = not (a >= low and (a < high if params["high_open"] else a <= high))
    if outside:
        bound = "[" + f"{params['low']:g}·g, {params['high']:g}·g" + (")" if params["high_open"] else "]")
        return Checked(f"median {a!r} outside {bound} of the golden's {g!r}", g, a)
    return Checked(None, g, a)


def _refused(golden: Any, run: Any, name: str, params: Mapping[str, Any]) -> Checked:
    return Checked(params["why"])


_ABSENT = object()  # a run-scoped value the run does not have


def absent() -> Any:
    """The value a run-scoped evaluator receives for a field the run lacks."""
    return _ABSENT


# ---------------------------------------------------------------- parameters

def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"expected a number >= 0, got {value!r}")
    return float(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _choice(*allowed: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {value!r}")
        return value
    return check


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a text, got {value!r}")
    return value


_DROPPED = {"always": "after the first value", "if_several": "first value dropped when several"}  # drop_first: its text

INFERENCE_CHECKS: Mapping[str, InferenceCheck] = {check.name: check for check in (
    InferenceCheck("equal", "request", _equal, describe=lambda p: "equal, request by request"),
    InferenceCheck("close_each", "request", _close_each, {"abs_tol": _number, "rel_tol": _number},
                   lambda p: f"same length, each |Δ| <= max({p['abs_tol']:g}, {p['rel_tol']:g}·max(|g|, |a|)), "
                             "request by request"),
    InferenceCheck("common_prefix", "request", _common_prefix,
                   describe=lambda p: "the shorter text a prefix of the longer, request by request"),
    InferenceCheck("sorted_rows_at", "request", _sorted_rows_at, {"index_field": _text},
                   lambda p: f"rows sorted and equal at the golden's {p['index_field']}, request by request"),
    InferenceCheck("median_band", "run", _median_band,
                   {"low": _number, "high": _number, "high_open": _flag, "drop_first": _choice(*_DROPPED),
                    "golden_positive": _flag, "nan_passes": _flag},
                   lambda p: f"median ({_DROPPED[p['drop_first']]}) within [{p['low']:g}, {p['high']:g}"
                             f"{')' if p['high_open'] else ']'} × the golden's"),
    InferenceCheck("refused", "run", _refused, {"why": _text}, lambda p: f"fails when listed: {p['why']}"),
)}
