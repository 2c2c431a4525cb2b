"""Read and write Megatron golden JSON (every historical variant) and the run artifact.

Readers return faithful data or raise ``FormatError`` naming the file and the key; they never
round. Writers emit the current Megatron layout (``json.dumps(indent=4)``, NaN as ``"nan"``),
so a canonical file re-writes byte-identical and a Megatron checkout can use what we write.
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import FormatError, NotATrainingGolden, StoreError
from ..core.model import (
    Artifact,
    GoldenKey,
    GoldenSet,
    InferenceGolden,
    MetricSeries,
    Phase,
    number_to_json,
    valued_span,
)
from .bounded import short

ARTIFACT_SCHEMA = "golden.artifact/1"
ARTIFACT_STATUSES = ("complete", "incomplete", "failed")
GRID_FIELDS = ("start_step", "end_step", "step_interval")
PRECISION_FIELD = "value_precision"  # Megatron PR #7087: per metric block, "full" or absent (legacy 5 decimals)
PRECISION_VALUES = ("full",)
_FILENAME = re.compile(r"^golden_values_(?P<env>[A-Za-z0-9]+)_(?P<platform>[A-Za-z0-9_.-]+?)(?P<second>_2nd)?\.json$")
_STEP_TEXT = re.compile(r"[0-9]+")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_NONFINITE_STRINGS = {"nan": math.nan, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf,
                      "infinity": math.inf, "-infinity": -math.inf}
# The spellings seen in files, looked up as written (fast); others go through strip().lower().
_NONFINITE_SPELLINGS = {**_NONFINITE_STRINGS, "NaN": math.nan, "Infinity": math.inf,
                        "-Infinity": -math.inf, "Inf": math.inf, "-Inf": -math.inf}


# ---------------------------------------------------------------- file names and raw JSON

def parse_golden_filename(path: str | Path) -> tuple[str, str, int] | None:
    """``golden_values_dev_dgx_h100_2nd.json`` → ("dev", "dgx_h100", 2); None if not a golden name."""
    m = _FILENAME.match(os.path.basename(path) if isinstance(path, str) else path.name)
    if not m:
        return None
    return m["env"], m["platform"], 2 if m["second"] else 1


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object hook: a key written twice is ambiguous (json.loads would keep the last silently)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def _lone_surrogate(doc: Any) -> str | None:
    """The first string (key or value) holding a lone surrogate — not text, and no file can hold it."""
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return item
    return None


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
    obj = _unique_keys(pairs)
    values = obj.get("values")
    if type(values) is dict and obj.keys() <= _METRIC_FIELDS:
        keys = list(values)
        steps = _fast_steps(keys)
        numbers = None if steps is None else _fast_values(list(values.values()))
        if numbers is not None:
            obj["values"] = StepValues(steps, numbers)
    return obj


def load_json_text(text: str, path: object = None, *, golden: bool = False) -> Any:
    """Parse JSON with a precise message for empty, truncated and ambiguous (duplicate-key) files.

    The bare literals ``NaN``/``Infinity`` that Python's json writes are accepted as floats; a
    ``\\ud800``-style escape that is not half of a surrogate pair is refused (it is not text).
    ``golden``: the document is a Megatron golden, read with each metric's values as arrays
    (``StepValues``) — what keeps a 300 MB golden within a few times its size in memory.
    """
    if not text.strip():
        raise FormatError("empty file (no JSON document)", path=path)
    doc = _parse_json(text, path, _golden_object if golden else _unique_keys)
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        bad = _lone_surrogate(doc)
        if bad is not None:
            raise FormatError(f"the string {bad[:40]!r} holds a lone surrogate escape: not Unicode text", path=path)
    return doc


def _parse_json(text: str, path: object, hook: Any) -> Any:
    try:
        return json.loads(text, object_pairs_hook=hook)
    except _DuplicateKey as exc:
        raise FormatError("key written twice in one object (ambiguous)", path=path, key=exc.key) from None
    except json.JSONDecodeError as exc:
        # An unterminated string always runs into the end of the text: the file was cut short.
        cut = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
        what = "truncated JSON" if cut else "malformed JSON"
        raise FormatError(f"{what} at line {exc.lineno} column {exc.colno}: {exc.msg}", path=path) from None
    except RecursionError:
        raise FormatError("JSON nested too deeply", path=path) from None
    except ValueError as exc:  # an integer literal longer than Python's int-digit limit
        raise FormatError(f"malformed JSON: {str(exc).split(';')[0]}", path=path) from None


def decode_text(data: bytes, path: object = None) -> str:
    """File bytes as UTF-8 text, or a FormatError naming where the first bad byte is."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"not UTF-8 text (byte {exc.start})", path=path) from None


def read_text(path: str | Path) -> str:
    p = Path(path)
    return decode_text(_file_bytes(p), p)


def read_json(path: str | Path, *, golden: bool = False) -> Any:
    """A JSON file's document, with the precise messages of ``read_text`` and ``load_json_text``."""
    return load_json_text(read_text(path), path, golden=golden)


# ---------------------------------------------------------------- numbers and step grids

MAX_GRID_STEPS = 2**24  # steps one metric's grid may be padded to: 16.7 M, 128 MiB of int64


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


MAX_STEP = 2**53  # far beyond any training run; keeps steps exact in int64 and float64
MAX_STEP_DIGITS = len(str(MAX_STEP))
MAX_METRICS = 1000  # entries of one training golden; comparing is not linear in them, and real ones hold ~10


def _to_step(raw: Any, *, path: object, key: str) -> int:
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


# ---------------------------------------------------------------- Megatron golden JSON

_INFERENCE_FIELDS = frozenset({"generated_text", "logprobs", "input_prompt", "generated_tokens", "prompt"})


def _looks_like_inference(doc: Mapping[str, Any]) -> bool:
    """Inference goldens are keyed by request id, each entry a dict of generated text/logprobs.

    Newer ones carry extra top-level entries (e.g. a throughput list), so only the dict
    entries are looked at: none is a metric object and at least one is a request record.
    """
    records = [v for v in doc.values() if isinstance(v, dict)]
    return (bool(records) and not any("values" in v for v in records)
            and any(_INFERENCE_FIELDS & v.keys() for v in records))


def _fast_steps(keys: list[str]) -> np.ndarray | None:
    """Step keys ("1", "5", …) as int64 when all are ASCII digits within 2**53 (else None)."""
    joined = "".join(keys)
    if joined.isascii() and joined.isdigit() and all(keys) and max(map(len, keys), default=0) <= 16:
        steps = np.fromiter(map(int, keys), dtype=np.int64, count=len(keys))  # ≤ 16 digits: no overflow
        if not steps.size or int(steps.max()) <= MAX_STEP:
            return steps
    return None


def _fast_values(raw: list[Any]) -> np.ndarray | None:
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


def _step_array(keys: list[str], *, path: object, key: str) -> np.ndarray:
    """Step keys ("1", "5", …) as int64; the common all-ASCII-digits case without a Python loop."""
    steps = _fast_steps(keys)
    if steps is not None:
        return steps
    return np.array([_to_step(s, path=path, key=key) for s in keys], dtype=np.int64)


def _value_array(raw: list[Any], labels: Iterable[str], *, path: object, key: str) -> np.ndarray:
    """JSON values as float64, exactly; the common cases (numbers, "nan" strings) in bulk.

    ``labels`` names each value in an error message (the step key or the list index).
    """
    fast = _fast_values(raw)
    if fast is not None:
        return fast
    return np.array([to_float(v, path=path, key=f"{key}{label}") for label, v in zip(labels, raw)],
                    dtype=np.float64)


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
        grid[field] = None if field not in raw else _to_step(raw[field], path=path, key=f"{name}.{field}")
    values = raw["values"]
    if isinstance(values, (dict, StepValues)):
        if isinstance(values, StepValues):
            steps_arr, vals_arr = values.steps, values.values
        else:
            keys = list(values)
            steps_arr = _step_array(keys, path=path, key=f"{name}.values")
            vals_arr = _value_array(list(values.values()), (f".{k}" for k in keys),
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
        vals_arr = _value_array(values, (f"[{i}]" for i in range(len(values))), path=path, key=f"{name}.values")
        steps_arr = start + interval * np.arange(len(values), dtype=np.int64)
    else:
        raise FormatError(f"'values' must be an object or a list, got {type(values).__name__}",
                          path=path, key=name)
    return MetricSeries(name, steps_arr, vals_arr, **grid, precision=precision)


def _shown(raw: Any) -> str:
    """A JSON value in a message, short (an object or list by its kind)."""
    return type(raw).__name__ if isinstance(raw, (dict, list, StepValues)) else json.dumps(raw)[:40]


def is_inference_doc(doc: Any) -> bool:
    """Whether a parsed golden document is an inference golden (possibly a JSON text inside a string,
    as some of Megatron's inference scripts write it)."""
    if isinstance(doc, str):
        try:
            doc = json.loads(doc)
        except ValueError:
            return False
    return isinstance(doc, dict) and _looks_like_inference(doc)


def parse_inference(doc: Any, *, path: object = None) -> InferenceGolden:
    """An inference golden as written: the top-level object keyed by request id (plus run-level
    entries such as ``throughput``); a JSON text inside a string is read once more, as Megatron's
    test reads it. Values are kept exactly as JSON gave them: the checks compare them as Megatron does."""
    if isinstance(doc, str):
        doc = load_json_text(doc, path)
    if not isinstance(doc, dict):
        raise FormatError(f"expected a JSON object keyed by request id, got {type(doc).__name__}", path=path)
    if not doc:
        raise FormatError("no requests in the inference golden (empty object)", path=path)
    return InferenceGolden(entries=doc, source=None if path is None else str(path))


def read_inference(path: str | Path) -> InferenceGolden:
    """Read one inference ``golden_values_*.json`` faithfully."""
    return parse_inference(read_json(path), path=Path(path))


def read_any_golden(path: str | Path, *, case: str | None = None) -> GoldenSet | InferenceGolden:
    """A golden file, training (``GoldenSet``) or inference (``InferenceGolden``), by its content."""
    p = Path(path)
    doc = read_json(p)
    if is_inference_doc(doc):
        return parse_inference(doc, path=p)
    parsed = parse_golden_filename(p)
    key = GoldenKey(case or p.parent.name, *parsed) if parsed else None
    return parse_golden(doc, path=p, key=key)


def parse_golden(doc: Any, *, path: object = None, key: GoldenKey | None = None) -> GoldenSet:
    """A parsed Megatron golden document → GoldenSet (raises FormatError on anything unfaithful)."""
    if isinstance(doc, str) and is_inference_doc(doc):
        raise NotATrainingGolden("not a training golden: an inference golden keyed by request id",
                                 path=path)
    if not isinstance(doc, dict):
        raise FormatError(f"expected a JSON object of metrics, got {type(doc).__name__}", path=path)
    if _looks_like_inference(doc):
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
    return parse_golden(load_json_text(decode_text(data, where), where, golden=True), path=where)


def read_golden(path: str | Path, *, case: str | None = None) -> GoldenSet:
    """Read one ``golden_values_*.json`` file faithfully."""
    p = Path(path)
    parsed = parse_golden_filename(p)
    key = None
    if parsed:
        env, platform, phase = parsed
        key = GoldenKey(case or p.parent.name, env, platform, phase)
    return parse_golden(read_json(p, golden=True), path=p, key=key)


def metric_to_json(series: MetricSeries) -> dict[str, Any]:
    present = series.steps
    out: dict[str, Any] = {}
    out["start_step"] = series.start_step if series.start_step is not None else (int(present[0]) if present.size else 0)
    out["end_step"] = series.end_step if series.end_step is not None else (int(present[-1]) if present.size else 0)
    out["step_interval"] = series.step_interval if series.step_interval is not None else step_interval_of(present)
    out["values"] = {str(s): number_to_json(v) for s, v in zip(series.steps.tolist(), series.values.tolist())}
    if series.precision is not None:
        out[PRECISION_FIELD] = series.precision
    return out


def step_interval_of(steps: np.ndarray, fallback: int = 1) -> int:
    """The ``step_interval`` Megatron's extraction declares for these steps: the gcd of the gaps
    between the steps after step 1 (1, 5, 10, …, 50 is every 5; 2, 4, …, 24 every 2), else ``fallback``."""
    later = np.asarray(steps, dtype=np.int64)
    later = later[later != 1]
    if later.size < 2:
        return fallback
    return int(np.gcd.reduce(np.diff(later))) or fallback


def golden_to_json(golden: GoldenSet) -> dict[str, Any]:
    doc: dict[str, Any] = {name: metric_to_json(s) for name, s in golden.metrics.items()}
    for name, value in golden.scalars.items():
        doc[name] = number_to_json(value)
    return doc


def dumps_golden(golden: GoldenSet) -> str:
    """The current Megatron layout, exactly as its tooling writes it (indent 4, no trailing newline)."""
    return json.dumps(golden_to_json(golden), indent=4, allow_nan=False)


# ---------------------------------------------------------------- the run artifact

def _require(mapping: Mapping[str, Any], field: str, types: type | tuple[type, ...], *, path: object, where: str) -> Any:
    if field not in mapping:
        raise FormatError(f"missing required field {field!r}", path=path, key=where or None)
    value = mapping[field]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,))):
        names = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        raise FormatError(f"expected {names}, got {type(value).__name__}", path=path,
                          key=f"{where}.{field}" if where else field)
    return value


def _check_target_name(value: Any, field: str, *, path: object) -> None:
    from .case import check_name

    if not isinstance(value, str):
        raise FormatError(f"expected a string, got {type(value).__name__}", path=path, key=f"provenance.{field}")
    try:
        check_name(value, field)
    except StoreError as exc:
        raise FormatError(str(exc), path=path, key=f"provenance.{field}") from None


def check_run_id(run_id: str, *, path: object = None) -> str:
    """A run id names a folder under runs/ and a ledger field printed one entry a line: no
    separators, no control characters (no length cap: it embeds the case name)."""
    if not run_id.isprintable() or "/" in run_id or "\\" in run_id or run_id.strip(".") == "":
        raise FormatError(f"invalid run id {run_id!r}: it must be printable, without '/' or '\\', "
                          f"and not only dots", path=path, key="run_id")
    return run_id


def parse_artifact(doc: Any, *, path: object = None) -> Artifact:
    if not isinstance(doc, dict):
        raise FormatError("expected an artifact object", path=path)
    schema = _require(doc, "schema", str, path=path, where="")
    if schema != ARTIFACT_SCHEMA:
        raise FormatError(f"unsupported schema {schema!r} (this version reads {ARTIFACT_SCHEMA!r})",
                          path=path, key="schema")
    case = _require(doc, "case", str, path=path, where="")
    run_id = check_run_id(_require(doc, "run_id", str, path=path, where=""), path=path)
    status = _require(doc, "status", str, path=path, where="")
    if status not in ARTIFACT_STATUSES:
        raise FormatError(f"status must be one of {', '.join(ARTIFACT_STATUSES)}, got {status!r}",
                          path=path, key="status")
    provenance = _require(doc, "provenance", dict, path=path, where="")
    for field in ("env", "platform"):  # they name the golden file the run is compared with and staged for
        if provenance.get(field) is not None:
            _check_target_name(provenance[field], field, path=path)
    raw_phases = _require(doc, "phases", dict, path=path, where="")
    phases: dict[int, Phase] = {}
    for label, raw in raw_phases.items():
        where = f"phases.{label}"
        number = _to_step(label, path=path, key="phases")
        if number not in (1, 2):
            raise FormatError(f"phase must be 1 or 2, got {label!r}", path=path, key="phases")
        if not isinstance(raw, dict):
            raise FormatError("expected a phase object", path=path, key=where)
        raw_metrics = _require(raw, "metrics", dict, path=path, where=where)
        steps = _require(raw, "steps", list, path=path, where=where)
        if len(steps) != 2:
            raise FormatError("steps must be [first, last]", path=path, key=f"{where}.steps")
        first, last = (_to_step(s, path=path, key=f"{where}.steps") for s in steps)
        if first > last:
            raise FormatError(f"steps must be [first, last] with first ≤ last, got {steps}", path=path,
                              key=f"{where}.steps")
        resumed = raw.get("resumed_from")
        for name in raw_metrics:  # a run's names become golden keys, printed one per line
            if not name.strip() or not name.isprintable():
                raise FormatError("a metric name must be printable text, not empty or holding control "
                                  "characters", path=path, key=name)
        metrics = {name: parse_metric(name, m, path=path) for name, m in raw_metrics.items()}
        phases[number] = Phase(number, metrics, first, last,
                               None if resumed is None else _to_step(resumed, path=path, key=f"{where}.resumed_from"))
    error = doc.get("error")
    return Artifact(case, run_id, status, provenance, dict(sorted(phases.items())),
                    error=error if isinstance(error, str) else None,
                    source=None if path is None else str(path))


def read_artifact(path: str | Path) -> Artifact:
    """Read ``artifact.json`` (or a run directory holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "artifact.json"
    return parse_artifact(read_json(p), path=p)


MEGATRON_RUN_SOURCE = "megatron golden file"


def megatron_run(path: str | Path, *, case: str | None = None, env: str | None = None,
                 platform: str | None = None) -> Artifact:
    """A golden_values file as Megatron's CI writes it — with its ``_2nd`` pair when there is one —
    as a candidate run: what ``golden diff``, ``pending`` and ``approve`` accept where a run is asked.

    Env and platform come from the file name unless given; the case is the folder's name unless
    given; the run id is the file's name plus a hash of the content, so the same files are the same
    candidate whatever target they are approved for. Phase 2 is the ``_2nd`` file from its first value on (the steps it ran).
    A candidate has no fingerprint: it is judged in the approximate regime unless forced.
    """
    import hashlib

    given = Path(path)
    parsed = parse_golden_filename(given)
    if parsed is None:
        raise FormatError("not a golden_values_<env>_<platform>[_2nd].json file", path=given)
    file_env, file_platform, phase = parsed
    first = given if phase == 1 else given.with_name(GoldenKey("", file_env, file_platform, 1).filename())
    second = first.with_name(GoldenKey("", file_env, file_platform, 2).filename())
    files = [f for f in (first, second) if f.is_file()]
    if given not in files:
        files.insert(0, given)  # raises the precise read error below
    phases: dict[int, Phase] = {}
    digest = hashlib.sha256()
    for number, file in ((1, first), (2, second)):
        if file not in files:
            continue
        data = _file_bytes(file)  # read once: parsed and hashed
        doc = load_json_text(decode_text(data, file), file)
        golden = parse_golden(doc, path=file, key=GoldenKey(case or file.parent.name, file_env, file_platform, number))
        digest.update(data)
        if golden.scalars:
            raise FormatError(f"scalar entries ({', '.join(golden.scalars)}) cannot be a candidate run: only "
                              f"per-step metrics", path=file)
        metrics = dict(golden.metrics)
        if number == 2:  # the steps before the resume are padding, not steps this phase ran
            metrics = {name: _trimmed(series) for name, series in metrics.items()}
        spans = [(s.steps, valued_span(s.values)) for s in metrics.values()]
        spans = [(steps, span) for steps, span in spans if span.start < span.stop]
        if not spans:
            raise FormatError("no metric has a value at any step", path=file)
        lo = min(int(steps[span.start]) for steps, span in spans)
        hi = max(int(steps[span.stop - 1]) for steps, span in spans)
        phases[number] = Phase(number, metrics, lo, hi, lo - 1 if number == 2 else None)
    run_env, run_platform = env or file_env, platform or file_platform
    resolved = [f.resolve() for f in files]
    provenance = {"source": MEGATRON_RUN_SOURCE, "env": run_env, "platform": run_platform,
                  "files": [str(f) for f in resolved]}
    return Artifact(case=case or (resolved[0] if files[0] == first else first.resolve()).parent.name,
                    run_id=f"{first.stem}-{digest.hexdigest()[:12]}", status="complete",
                    provenance=provenance, phases=phases, source=str(first if first.is_file() else given))


def _file_bytes(path: Path) -> bytes:
    """A file's bytes, or a FormatError saying in one line why they cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FormatError("no such file", path=path) from None
    except IsADirectoryError:
        raise FormatError("is a directory, expected a JSON file", path=path) from None
    except OSError as exc:
        raise FormatError(f"cannot read: {exc.strerror}", path=path) from None


def _trimmed(series: MetricSeries) -> MetricSeries:
    """A ``_2nd`` series from its first value on, grid header kept."""
    span = slice(valued_span(series.values).start, None)
    return MetricSeries(series.name, series.steps[span], series.values[span], series.start_step, series.end_step,
                        series.step_interval, series.precision)


def read_run(path: str | Path, *, env: str | None = None, platform: str | None = None) -> Artifact:
    """A run as any command that takes one is given it: a run folder, its ``artifact.json``, or a
    Megatron golden_values file (``megatron_run``; ``env`` / ``platform`` override its file name's —
    a run artifact declares its own and keeps it)."""
    p = Path(path)
    if p.is_dir():
        return read_artifact(p)
    if parse_golden_filename(p) is not None:
        return megatron_run(p, env=env, platform=platform)
    return read_artifact(p)


def artifact_to_json(artifact: Artifact) -> dict[str, Any]:
    phases: dict[str, Any] = {}
    for number, phase in artifact.phases.items():
        entry: dict[str, Any] = {}
        if phase.resumed_from is not None:
            entry["resumed_from"] = phase.resumed_from
        entry["steps"] = [phase.first_step, phase.last_step]
        entry["metrics"] = {name: metric_to_json(s) for name, s in phase.metrics.items()}
        phases[str(number)] = entry
    doc: dict[str, Any] = {"schema": ARTIFACT_SCHEMA, "case": artifact.case, "run_id": artifact.run_id,
                           "status": artifact.status, "provenance": artifact.provenance, "phases": phases}
    if artifact.error:
        doc["error"] = artifact.error
    return doc


def dumps_artifact(artifact: Artifact) -> str:
    return json.dumps(artifact_to_json(artifact), indent=2, allow_nan=False) + "\n"


def artifact_phase_golden(artifact: Artifact, phase: int, *, span: tuple[int, int] | None = None) -> GoldenSet:
    """One phase as a Megatron golden set.

    Megatron's ``_2nd`` file spans the whole run (start 1 … end) with "nan" for the steps the
    resumed phase did not run; ``span`` pads the phase to that range the same way.
    """
    ph = artifact.phases[phase]
    metrics: dict[str, MetricSeries] = {}
    for name, series in ph.metrics.items():
        if span is None:
            metrics[name] = series
            continue
        lo, hi = span
        interval = series.step_interval or 1
        grid = np.union1d(megatron_grid(lo, hi, interval), series.steps)
        grid = grid[(grid >= lo) & (grid <= hi)]
        values = np.full(grid.shape, np.nan)
        idx = np.searchsorted(grid, series.steps)
        inside = (series.steps >= lo) & (series.steps <= hi)
        values[idx[inside]] = series.values[inside]
        metrics[name] = MetricSeries(name, grid, values, lo, hi, interval, series.precision)
    return GoldenSet(metrics=metrics)


def export_megatron(artifact: Artifact, directory: str | Path, env: str, platform: str) -> list[Path]:
    """Write the Megatron file pair (``golden_values_<env>_<platform>.json`` and ``_2nd.json``)."""
    from .atomic import atomic_write_text  # local: keeps formats import-light

    out = Path(directory)
    written = []
    first = artifact.phases.get(1)
    if first is None:
        raise FormatError("artifact has no phase 1 to export", path=artifact.source)
    key = GoldenKey(artifact.case, env, platform, 1)
    target = out / key.filename()
    atomic_write_text(target, dumps_golden(artifact_phase_golden(artifact, 1)))
    written.append(target)
    if 2 in artifact.phases:
        span = (first.first_step, artifact.phases[2].last_step)
        target = out / GoldenKey(artifact.case, env, platform, 2).filename()
        atomic_write_text(target, dumps_golden(artifact_phase_golden(artifact, 2, span=span)))
        written.append(target)
    return written
