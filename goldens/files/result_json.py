"""A comparison result as JSON text, written as it is made: the text of
``json.dumps(result.to_json(), indent=2, allow_nan=False)``, a piece at a time, the per-step columns a
block at a time, so memory stays flat however many steps the result holds (a 300 MB golden's diff is
millions of rows). The result's document itself (``ComparisonResult.to_json``) is the core's.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np

from ..core.model import number_to_json
from ..core.result import STEP_STATUS_NAMES, ComparisonResult, StepTable

ColumnKind = Literal["int", "float", "status"]


class _Column:
    """A per-step column for ``json_text``: its JSON text made a block at a time (``repr`` of each
    value, as json writes a float), never a Python list of a million objects."""

    BLOCK = 65536

    def __init__(self, values: np.ndarray, kind: ColumnKind):
        self.values, self.kind = values, kind

    def pieces(self, pad: str) -> Iterator[str]:
        separator = ",\n" + pad
        for start in range(0, self.values.size, self.BLOCK):
            block = self.values[start:start + self.BLOCK]
            if self.kind == "status":
                texts = [f'"{name}"' for name in STEP_STATUS_NAMES[block].tolist()]
            elif self.kind == "int":
                texts = list(map(str, block.tolist()))
            else:
                texts = list(map(repr, block.tolist()))
                for i in np.flatnonzero(~np.isfinite(block)).tolist():
                    texts[i] = f'"{number_to_json(float(block[i]))}"'
            yield (separator if start else "") + separator.join(texts)


def _columns(table: StepTable) -> dict[str, _Column]:
    """``table.to_json()`` for ``json_text``: the same document, each column written a block at a time."""
    return {"step": _Column(table.step, "int"), "golden": _Column(table.golden, "float"),
            "actual": _Column(table.actual, "float"), "status": _Column(table.status, "status")}


def json_text(doc: Any, indent: int = 2, level: int = 0) -> Iterator[str]:
    """``json.dumps(doc, indent=indent, allow_nan=False)``, a piece at a time; a ``_Column`` in the
    document is written a block at a time."""
    pad, inner = " " * (indent * level), " " * (indent * (level + 1))
    if isinstance(doc, _Column):
        if not doc.values.size:
            yield "[]"
            return
        yield "[\n" + inner
        yield from doc.pieces(inner)
        yield "\n" + pad + "]"
    elif isinstance(doc, dict) and doc:
        for i, (key, value) in enumerate(doc.items()):
            name = key if isinstance(key, str) else json.dumps(key)  # json's own text for a non-string key
            yield ("{\n" if i == 0 else ",\n") + inner + json.dumps(name) + ": "
            yield from json_text(value, indent, level + 1)
        yield "\n" + pad + "}"
    elif isinstance(doc, (list, tuple)) and doc:
        for i, value in enumerate(doc):
            yield ("[\n" if i == 0 else ",\n") + inner
            yield from json_text(value, indent, level + 1)
        yield "\n" + pad + "]"
    else:
        yield json.dumps(doc, allow_nan=False)


def result_json_chunks(result: ComparisonResult, indent: int = 2) -> Iterator[str]:
    """The text of ``json.dumps(result.to_json(), indent=indent, allow_nan=False)``, a piece at a time."""
    doc = result.to_json(steps=False)
    checks = [(doc["phases"][i]["metrics"], p.metrics) for i, p in enumerate(result.phases)]
    if result.resume is not None:
        checks.append((doc["resume"]["metrics"], result.resume.metrics))
    for docs, verdicts in checks:
        for m_doc, m in zip(docs, verdicts, strict=True):  # one document per verdict, in order
            m_doc["steps"] = None if m.steps is None else _columns(m.steps)
    return json_text(doc, indent)
