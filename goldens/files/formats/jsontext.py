"""JSON text read as untrusted input, shared by every format: UTF-8 or a precise error, a key written
twice refused (``json.loads`` would keep the last silently), a lone surrogate escape refused, a
truncated file told from a malformed one — each a ``FormatError`` naming the file.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...core.errors import FormatError

PairsHook = Callable[[list[tuple[str, Any]]], Any]

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
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


def load_json_text(text: str, path: object = None, *, object_pairs_hook: PairsHook = unique_keys) -> Any:
    """Parse JSON with a precise message for empty, truncated and ambiguous (duplicate-key) files.

    The bare literals ``NaN``/``Infinity`` that Python's json writes are accepted as floats; a
    ``\\ud800``-style escape that is not half of a surrogate pair is refused (it is not text).
    ``object_pairs_hook`` builds each object; it must refuse a key written twice as ``unique_keys``
    does (a golden's reader turns metric values into arrays there: ``golden.load_golden_text``).
    """
    if not text.strip():
        raise FormatError("empty file (no JSON document)", path=path)
    doc = _parse_json(text, path, object_pairs_hook)
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        bad = _lone_surrogate(doc)
        if bad is not None:
            raise FormatError(f"the string {bad[:40]!r} holds a lone surrogate escape: not Unicode text", path=path)
    return doc


def _parse_json(text: str, path: object, hook: PairsHook) -> Any:
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
    return decode_text(file_bytes(p), p)


def file_bytes(path: Path) -> bytes:
    """A file's bytes, or a FormatError saying in one line why they cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FormatError("no such file", path=path) from None
    except IsADirectoryError:
        raise FormatError("is a directory, expected a JSON file", path=path) from None
    except OSError as exc:
        raise FormatError(f"cannot read: {exc.strerror}", path=path) from None


def read_json(path: str | Path, *, object_pairs_hook: PairsHook = unique_keys) -> Any:
    """A JSON file's document, with the precise messages of ``read_text`` and ``load_json_text``."""
    return load_json_text(read_text(path), path, object_pairs_hook=object_pairs_hook)
