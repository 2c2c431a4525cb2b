"""Write dialects: how a golden file is written into a tree, so the tree's own readers accept it.

- ``full`` (our own store): every value at full precision, the current Megatron layout
  (``formats.golden.dumps_golden``).
- ``megatron`` (a Megatron-LM checkout's ``tests/functional_tests/test_cases``): each value as
  Megatron's extraction writes it in the tree's generation (``goldens.megatron``) — the float32
  TensorBoard holds, ``round(x, 5)`` before PR #7087, at full precision with
  ``"value_precision": "full"`` on every metric block written since — only the steps
  that hold a value, the grid header as the extraction computes it (first and last step, the gcd of
  the gaps after step 1), and each file's existing layout (one line or indented, separators, a
  trailing newline, key order) kept. A metric whose values did not change keeps its exact text, and
  a file whose content did not change is not written at all. Megatron's CI compares a golden with
  its extraction of a run *exactly* when the case is deterministic, so anything else fails there.

The store detects the dialect from its tree — Megatron case folders (``model_config.yaml``) and no
``case.yaml`` make a Megatron tree — unless it is set explicitly (``$GOLDEN_DIALECT``, ``--dialect``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.errors import FormatError, StoreError
from ..core.megatron import LEGACY, Generation
from ..core.model import GoldenSet, MetricSeries, number_to_json
from ..files.formats.golden import dumps_golden, metric_to_json, parse_golden_bytes, parse_metric
from ..files.formats.jsontext import load_json_text
from ..files.formats.numeric import step_interval_of
from ..files.validate import MEGATRON_CASE_FILE

FULL = "full"
MEGATRON = "megatron"
DIALECTS = (FULL, MEGATRON)
DIALECT_ENV = "GOLDEN_DIALECT"
DECIMALS = 5  # Megatron's extraction: round(value, 5)


def check_dialect(name: str) -> str:
    if name not in DIALECTS:
        raise StoreError(f"unknown write dialect {name!r}: use {' or '.join(DIALECTS)}")
    return name


def detect_dialect(definitions: list[str | None]) -> tuple[str, str]:
    """(dialect, why) from the case definitions a tree holds (one per case folder)."""
    megatron = sum(d == MEGATRON_CASE_FILE for d in definitions)
    ours = sum(d is not None and d != MEGATRON_CASE_FILE for d in definitions)
    if megatron and not ours:
        return MEGATRON, f"detected: {megatron} Megatron case folders ({MEGATRON_CASE_FILE}), no case.yaml"
    return FULL, ("detected: case.yaml case folders" if ours else "detected: no Megatron case folders")


@dataclass(frozen=True, slots=True)
class Layout:
    """How a JSON file is laid out: what ``json.dumps`` needs to write it the same way again."""

    indent: int | None
    item_separator: str
    key_separator: str
    trailing_newline: bool

    def dumps(self, doc: Any) -> bytes:
        text = json.dumps(doc, indent=self.indent, separators=(self.item_separator, self.key_separator),
                          allow_nan=False)
        return (text + ("\n" if self.trailing_newline else "")).encode("utf-8")


NEW_MEGATRON_FILE = Layout(4, ",", ": ", False)  # what the extraction writes: indent 4, no newline at the end


def detect_layout(data: bytes) -> Layout:
    """The layout of an existing file (one line, or indented by N spaces)."""
    text = data.decode("utf-8", "replace")
    body = text.rstrip("\n")
    key_separator = ": " if '": ' in body else ":"
    if "\n" in body:
        second = body.split("\n", 2)[1]
        indent = len(second) - len(second.lstrip(" "))
        item_separator = ", " if ", \n" in body else ","
        return Layout(indent, item_separator, key_separator, text.endswith("\n"))
    item_separator = ", " if ', "' in body else ","
    return Layout(None, item_separator, key_separator, text.endswith("\n"))


def megatron_value(value: float, decimals: int | None = DECIMALS) -> float:
    """A value as Megatron's extraction writes it: the float32 TensorBoard stores, rounded to
    ``decimals`` (None: at full precision, as since PR #7087)."""
    single = float(np.float32(value))
    return single if decimals is None else round(single, decimals)


def megatron_series(series: MetricSeries, *, fallback_interval: int | None = None,
                    generation: Generation = LEGACY) -> MetricSeries:
    """The steps that hold a value, each value as the generation's extraction writes it, the header
    it computes, and its marker."""
    keep = ~np.isnan(series.values)
    steps = series.steps[keep]
    decimals = generation.written_decimals
    with np.errstate(over="ignore"):
        values = np.array([megatron_value(v, decimals) for v in series.values[keep].tolist()], dtype=np.float64)
    marker = generation.marker[1] if generation.marker is not None else None
    if not steps.size:
        return MetricSeries(series.name, steps, values, series.start_step, series.end_step, series.step_interval,
                            marker)
    interval = step_interval_of(steps, fallback_interval or series.step_interval or 1)
    return MetricSeries(series.name, steps, values, int(steps[0]), int(steps[-1]), interval, marker)


def _old_document(existing: bytes | None) -> dict[str, Any]:
    if existing is None:
        return {}
    try:
        doc = load_json_text(existing.decode("utf-8"))
    except (FormatError, UnicodeDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _old_series(name: str, raw: Any) -> MetricSeries | None:
    try:
        return parse_metric(name, raw)
    except FormatError:
        return None


def _metric_json(series: MetricSeries, old: Any) -> dict[str, Any]:
    """A metric object in the old object's key order (start_step, end_step, step_interval, values when new)."""
    made = metric_to_json(series)
    if not isinstance(old, dict):
        return made
    order = [k for k in old if k in made] + [k for k in made if k not in old]
    return {k: made[k] for k in order}


def render_megatron(golden: GoldenSet, existing: bytes | None, generation: Generation = LEGACY) -> bytes | None:
    """The file's new bytes in Megatron's dialect of ``generation``; None when its content would not change."""
    old = _old_document(existing)
    names = [n for n in old if n in golden.metrics or n in golden.scalars]
    names += [n for n in (*golden.metrics, *golden.scalars) if n not in names]
    doc: dict[str, Any] = {}
    for name in names:
        raw = old.get(name)
        if name in golden.scalars:
            value = golden.scalars[name]
            same = isinstance(raw, (int, float)) and not isinstance(raw, bool) \
                and np.float64(raw).tobytes() == np.float64(value).tobytes()
            doc[name] = raw if same else number_to_json(value)
            continue
        series = golden.metrics[name]
        before = _old_series(name, raw) if raw is not None else None
        if before is not None and before == series:
            doc[name] = raw  # unchanged: kept exactly as written
            continue
        written = megatron_series(series, fallback_interval=before.step_interval if before is not None else None,
                                  generation=generation)
        doc[name] = raw if before is not None and before == written else _metric_json(written, raw)
    if existing is not None and doc == old and list(doc) == list(old):
        return None
    layout = detect_layout(existing) if existing is not None and old else NEW_MEGATRON_FILE
    return layout.dumps(doc)


def render(golden: GoldenSet, dialect: str, existing: bytes | None, generation: Generation = LEGACY) -> bytes | None:
    """A golden file's bytes in ``dialect``; None when a Megatron-dialect file would not change."""
    if dialect == MEGATRON:
        return render_megatron(golden, existing, generation)
    return dumps_golden(golden).encode("utf-8")


def written_golden(data: bytes, where: str) -> GoldenSet:
    """What a rendered file holds, parsed back (the store validates what it will write)."""
    return parse_golden_bytes(data, where)
