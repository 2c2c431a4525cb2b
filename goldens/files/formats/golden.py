"""Megatron golden JSON (``golden_values_<env>_<platform>[_2nd].json``), every historical variant.

The reader returns faithful data or raises ``FormatError`` naming the file and the key; it never
rounds. The writer emits the current Megatron layout (``json.dumps(indent=4)``, NaN as ``"nan"``),
so a canonical file re-writes byte-identical and a Megatron checkout can use what we write.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import FormatError, NotATrainingGolden
from ...core.model import GoldenKey, GoldenSet, InferenceGolden, MetricSeries, number_to_json
from .inference import is_inference_doc, looks_like_inference, parse_inference
from .jsontext import decode_text, load_json_text, read_json, unique_keys
from .numeric import (
    MAX_STEP,
    fast_steps,
    fast_values,
    step_array,
    step_interval_of,
    to_float,
    to_step,
    value_array,
)

GRID_FIELDS = ("start_step", "end_step", "step_interval")
PRECISION_FIELD = "value_precision"  # Megatron PR #7087: per metric block, "full" or absent (legacy 5 decimals)
PRECISION_VALUES = ("full",)
_FILENAME = re.compile(r"^golden_values_(?P<env>[A-Za-z0-9]+)_(?P<platform>[A-Za-z0-9_.-]+?)(?P<second>_2nd)?\.json$")
MAX_METRICS = 1000  # entries of one training golden; comparing is not linear in them, and real ones hold ~10


def parse_golden_filename(path: str | Path) -> tuple[str, str, int] | None:
    """``golden_values_dev_dgx_h100_2nd.json`` → ("dev", "dgx_h100", 2); None if not a golden name."""
    m = _FILENAME.match(os.path.basename(path) if isinstance(path, str) else path.name)
    if not m:
        return None
    return m["env"], m["platform"], 2 if m["second"] else 1


class StepValues:
    """A metric's step-keyed ``values`` object as the golden reader keeps it: two arrays (steps in
    the order written, values as float64) instead of a dict of millions of Python objects."""

    __slots__ = ("steps", "values")

    def __init__(self, steps: np.ndarray, values: np.ndarray):
        self.steps, self.values = steps, values

    def __len__(self) -> int:
        return int(self.steps.size)

    def __repr__(self) -> str:
        return f"<values of {self.steps.size} steps>"


_METRIC_FIELDS = frozenset({"values", "start_step", "end_step", "step_interval", PRECISION_FIELD})


def _golden_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object hook for golden documents: a key written twice is refused, and a metric
    object's ``values`` is turned into arrays the moment the object is read — so memory holds one
    metric's dict at a time, not the whole file's. Values the fast path cannot take stay a dict
    (``parse_metric`` then gives its precise message)."""
    obj = unique_keys(pairs)
    values = obj.get("values")
    if type(values) is dict and obj.keys() <= _METRIC_FIELDS:
        steps = fast_steps(list(values))
        numbers = None if steps is None else fast_values(list(values.values()))
        if steps is not None and numbers is not None:
            obj["values"] = StepValues(steps, numbers)
    return obj


def load_golden_text(text: str, path: object = None) -> Any:
    """A golden document's JSON, each metric's values read as arrays (``StepValues``) the moment its
    object is parsed — what keeps a 300 MB golden within a few times its size in memory."""
    return load_json_text(text, path, object_pairs_hook=_golden_object)


def read_golden_json(path: str | Path) -> Any:
    """A golden file's JSON document, as ``load_golden_text`` reads it."""
    return read_json(path, object_pairs_hook=_golden_object)


def parse_metric(name: str, raw: Any, *, path: object = None) -> MetricSeries:
    """One Megatron metric object: values as a step-keyed dict (current) or a list (older)."""
    if not isinstance(raw, dict):
        raise FormatError(f"expected a metric object with 'values', got {type(raw).__name__}",
                          path=path, key=name)
    if "values" not in raw:
        raise FormatError("metric object has no 'values'", path=path, key=name)
    unknown = set(raw) - _METRIC_FIELDS
    if unknown:
        raise FormatError(f"unknown field(s) {sorted(unknown)} in metric object", path=path, key=name)
    precision = raw.get(PRECISION_FIELD)
    if PRECISION_FIELD in raw and precision not in PRECISION_VALUES:
        raise FormatError(f"{PRECISION_FIELD} must be {' or '.join(map(repr, PRECISION_VALUES))} (or absent: legacy "
                          f"5-decimal values), got {_shown(precision)}", path=path, key=f"{name}.{PRECISION_FIELD}")
    grid: dict[str, int | None] = {}
    for field in GRID_FIELDS:
        grid[field] = None if field not in raw else to_step(raw[field], path=path, key=f"{name}.{field}")
    values = raw["values"]
    if isinstance(values, (dict, StepValues)):
        if isinstance(values, StepValues):
            steps_arr, vals_arr = values.steps, values.values
        else:
            keys = list(values)
            steps_arr = step_array(keys, path=path, key=f"{name}.values")
            vals_arr = value_array(list(values.values()), (f".{k}" for k in keys),
                                    path=path, key=f"{name}.values")
        if steps_arr.size > 1 and not (steps_arr[1:] > steps_arr[:-1]).all():
            order = np.argsort(steps_arr, kind="stable")
            steps_arr, vals_arr = steps_arr[order], vals_arr[order]
            repeated = steps_arr[1:][np.diff(steps_arr) == 0]
            if repeated.size:
                raise FormatError(f"step {int(repeated[0])} written twice (e.g. '1' and '01')",
                                  path=path, key=f"{name}.values")
    elif isinstance(values, list):
        start, interval = grid["start_step"], grid["step_interval"]
        if start is None or interval is None:
            raise FormatError("values given as a list need 'start_step' and 'step_interval'",
                              path=path, key=name)
        if interval <= 0:
            raise FormatError(f"step_interval must be positive, got {interval}", path=path, key=f"{name}.step_interval")
        if values and start + interval * (len(values) - 1) > MAX_STEP:
            raise FormatError(f"{len(values)} values from start_step {start} every {interval} run past step 2**53",
                              path=path, key=f"{name}.values")
        vals_arr = value_array(values, (f"[{i}]" for i in range(len(values))), path=path, key=f"{name}.values")
        steps_arr = start + interval * np.arange(len(values), dtype=np.int64)
    else:
        raise FormatError(f"'values' must be an object or a list, got {type(values).__name__}",
                          path=path, key=name)
    return MetricSeries(name, steps_arr, vals_arr, **grid, precision=precision)


def _shown(raw: Any) -> str:
    """A JSON value in a message, short (an object or list by its kind)."""
    return type(raw).__name__ if isinstance(raw, (dict, list, StepValues)) else json.dumps(raw)[:40]


def parse_golden(doc: Any, *, path: object = None, key: GoldenKey | None = None) -> GoldenSet:
    """A parsed Megatron golden document → GoldenSet (raises FormatError on anything unfaithful)."""
    if isinstance(doc, str) and is_inference_doc(doc):
        raise NotATrainingGolden("not a training golden: an inference golden keyed by request id",
                                 path=path)
    if not isinstance(doc, dict):
        raise FormatError(f"expected a JSON object of metrics, got {type(doc).__name__}", path=path)
    if looks_like_inference(doc):
        raise NotATrainingGolden("not a training golden: an inference golden keyed by request id",
                                 path=path)
    if len(doc) > MAX_METRICS:
        raise FormatError(f"{len(doc):,} entries, more than the {MAX_METRICS:,} metrics a golden may hold "
                          "(Megatron's hold a handful); refused", path=path)
    metrics: dict[str, MetricSeries] = {}
    scalars: dict[str, float] = {}
    for name, raw in doc.items():
        if isinstance(raw, StepValues):
            raise FormatError(f"expected a metric object (with 'values') or a number, got an object of {len(raw)} "
                              f"step values", path=path, key=name)
        if isinstance(raw, dict):
            metrics[name] = parse_metric(name, raw, path=path)
        elif isinstance(raw, (int, float, str)) and not isinstance(raw, bool):
            scalars[name] = to_float(raw, path=path, key=name)
        else:
            raise FormatError(f"expected a metric object (with 'values') or a number, got {json.dumps(raw)[:40]}",
                              path=path, key=name)
    if not metrics and not scalars:
        raise FormatError("no metrics in file (empty object)", path=path)
    return GoldenSet(metrics=metrics, scalars=scalars, key=key, source=None if path is None else str(path))


def parse_golden_bytes(data: bytes, where: object) -> GoldenSet:
    """A golden file's bytes from somewhere other than a plain file (a store blob, a git revision)."""
    return parse_golden(load_golden_text(decode_text(data, where), where), path=where)


def read_golden(path: str | Path, *, case: str | None = None) -> GoldenSet:
    """Read one ``golden_values_*.json`` file faithfully."""
    p = Path(path)
    parsed = parse_golden_filename(p)
    key = None
    if parsed:
        env, platform, phase = parsed
        key = GoldenKey(case or p.parent.name, env, platform, phase)
    return parse_golden(read_golden_json(p), path=p, key=key)


def read_any_golden(path: str | Path, *, case: str | None = None) -> GoldenSet | InferenceGolden:
    """A golden file, training (``GoldenSet``) or inference (``InferenceGolden``), by its content."""
    p = Path(path)
    doc = read_json(p)
    if is_inference_doc(doc):
        return parse_inference(doc, path=p)
    parsed = parse_golden_filename(p)
    key = GoldenKey(case or p.parent.name, *parsed) if parsed else None
    return parse_golden(doc, path=p, key=key)


def metric_to_json(series: MetricSeries) -> dict[str, Any]:
    present = series.steps
    out: dict[str, Any] = {}
    out["start_step"] = series.start_step if series.start_step is not None else (int(present[0]) if present.size else 0)
    out["end_step"] = series.end_step if series.end_step is not None else (int(present[-1]) if present.size else 0)
    out["step_interval"] = series.step_interval if series.step_interval is not None else step_interval_of(present)
    steps, values = series.steps.tolist(), series.values.tolist()
    out["values"] = {str(s): number_to_json(v) for s, v in zip(steps, values, strict=True)}
    if series.precision is not None:
        out[PRECISION_FIELD] = series.precision
    return out


def golden_to_json(golden: GoldenSet) -> dict[str, Any]:
    doc: dict[str, Any] = {name: metric_to_json(s) for name, s in golden.metrics.items()}
    for name, value in golden.scalars.items():
        doc[name] = number_to_json(value)
    return doc


def dumps_golden(golden: GoldenSet) -> str:
    """The current Megatron layout, exactly as its tooling writes it (indent 4, no trailing newline)."""
    return json.dumps(golden_to_json(golden), indent=4, allow_nan=False)
