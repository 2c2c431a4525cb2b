"""Inference goldens: Megatron's inference tests keep a JSON object keyed by request id (generated
text, tokens, logprobs), not metric series; they are read as written, and told apart from a
training golden by their content.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...core.errors import FormatError
from ...core.model import InferenceGolden
from .jsontext import load_json_text, read_json

_INFERENCE_FIELDS = frozenset({"generated_text", "logprobs", "input_prompt", "generated_tokens", "prompt"})


def looks_like_inference(doc: Mapping[str, Any]) -> bool:
    """Inference goldens are keyed by request id, each entry a dict of generated text/logprobs.

    Newer ones carry extra top-level entries (e.g. a throughput list), so only the dict
    entries are looked at: none is a metric object and at least one is a request record.
    """
    records = [v for v in doc.values() if isinstance(v, dict)]
    return (bool(records) and not any("values" in v for v in records)
            and any(_INFERENCE_FIELDS & v.keys() for v in records))


def is_inference_doc(doc: Any) -> bool:
    """Whether a parsed golden document is an inference golden (possibly a JSON text inside a string,
    as some of Megatron's inference scripts write it)."""
    if isinstance(doc, str):
        try:
            doc = json.loads(doc)
        except ValueError:
            return False
    return isinstance(doc, dict) and looks_like_inference(doc)


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
