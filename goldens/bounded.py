"""Bounded parsing of hostile input: every YAML and JSON document a pull request or a CI server
controls (``case.yaml``, ``model_config.yaml``, API answers) is read here, within limits on size,
nesting depth, aliases, keys per mapping and digits of a number, checked *while* it is parsed —
a 497-byte YAML "billion laughs" is refused after a few hundred nodes, never expanded.

A refusal is one ``FormatError`` line naming the file, the key (``METRICS[3]``) and the bound; no
message formats an unbounded value (``short`` cuts any value shown to a few dozen characters).
YAML goes through PyYAML's safe loader only (no object construction from tags).
"""
from __future__ import annotations

import json
import reprlib
from dataclasses import dataclass
from typing import Any

from .errors import FormatError

_INT_TAG, _FLOAT_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"


@dataclass(frozen=True, kw_only=True)
class Bounds:
    """Limits for one kind of document. ``max_nodes`` counts nodes as if every alias were expanded,
    so alias growth is bounded however the aliases nest."""

    max_bytes: int = 4 << 20
    max_depth: int = 64
    max_aliases: int = 64
    max_nodes: int = 200_000
    max_keys: int = 100_000
    max_digits: int = 64

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_depth", "max_aliases", "max_nodes", "max_keys", "max_digits"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"Bounds.{name} must be a non-negative integer")


CONFIG_BOUNDS = Bounds()  # case.yaml, model_config.yaml, policy files: a few kilobytes in practice
API_BOUNDS = Bounds(max_bytes=32 << 20, max_depth=32, max_aliases=0, max_nodes=10_000_000, max_keys=100_000,
                    max_digits=64)  # one page of a CI API

_short = reprlib.Repr()
_short.maxstring, _short.maxother, _short.maxlist, _short.maxdict, _short.maxlevel = 40, 40, 4, 4, 2


def short(value: Any) -> str:
    """``repr`` of a value cut to a few dozen characters and two levels, whatever its size or sharing."""
    return _short.repr(value)


def cut(text: str, limit: int = 200) -> str:
    """``text`` as it is when short, else its first characters and an ellipsis."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


# ---------------------------------------------------------------- YAML

def _loader_class() -> type:
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        """The safe loader, counting while it composes: depth, aliases, expanded nodes, keys, digits."""

        def __init__(self, stream: str, bounds: Bounds, path: object):
            super().__init__(stream)
            self.bounds, self.path = bounds, path
            self.depth = self.aliases = self.expanded = 0
            self.sizes: dict[str, int] = {}  # anchor → nodes it stands for, expanded
            self.where: list[str] = []

        def refuse(self, message: str) -> FormatError:
            key = "".join(self.where).lstrip(".") or None
            if key is not None and len(key) > 80:
                key = key[:60] + "…"
            return FormatError(message, path=self.path, key=key)

        def grow(self, nodes: int) -> None:
            self.expanded += nodes
            if self.expanded > self.bounds.max_nodes:
                raise self.refuse(f"more than {self.bounds.max_nodes:,} YAML nodes (aliases counted expanded); "
                                  "refused")

        def compose_node(self, parent: Any, index: Any) -> Any:
            label = self._label(parent, index)
            if label is not None:
                self.where.append(label)
            try:
                return self._bounded_node(parent, index)
            finally:
                if label is not None:
                    self.where.pop()

        def _label(self, parent: Any, index: Any) -> str | None:
            if isinstance(parent, yaml.MappingNode) and index is not None:  # a value; index is its key node
                if len(parent.value) >= self.bounds.max_keys:
                    raise self.refuse(f"more than {self.bounds.max_keys:,} keys in one mapping; refused")
                text = getattr(index, "value", "?")
                return "." + (text[:40] if isinstance(text, str) else "?")
            if isinstance(parent, yaml.SequenceNode):
                return f"[{index}]"
            return None

        def _bounded_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > self.bounds.max_aliases:
                    raise self.refuse(f"more than {self.bounds.max_aliases} YAML aliases; refused")
                self.grow(self.sizes.get(event.anchor, 1))
                return super().compose_node(parent, index)
            self.depth += 1
            if self.depth > self.bounds.max_depth:
                raise self.refuse(f"nested deeper than {self.bounds.max_depth} levels; refused")
            before = self.expanded
            self.grow(1)
            node = super().compose_node(parent, index)
            self.depth -= 1
            anchor = getattr(event, "anchor", None)
            if anchor is not None:
                self.sizes[anchor] = self.expanded - before
            if node.id == "scalar" and node.tag in (_INT_TAG, _FLOAT_TAG) and len(node.value) > self.bounds.max_digits:
                raise self.refuse(f"a number of {len(node.value):,} characters (more than "
                                  f"{self.bounds.max_digits}); refused")
            return node

    return BoundedLoader


_LOADER: type | None = None


def yaml_document(text: str, path: object = None, bounds: Bounds = CONFIG_BOUNDS) -> tuple[Any, Any]:
    """``(document, node tree)`` of one YAML text: the document as ``yaml.safe_load`` gives it, the
    node tree as ``yaml.compose`` does (scalars as written). ``(None, None)`` for an empty text."""
    import yaml

    global _LOADER
    if _LOADER is None:
        _LOADER = _loader_class()
    if len(text) > bounds.max_bytes:
        raise FormatError(f"{len(text):,} characters, more than the {bounds.max_bytes:,} a YAML input may have; "
                          "refused", path=path)
    loader = None
    try:
        loader = _LOADER(text, bounds, path)  # the reader refuses control characters here already
        node = loader.get_single_node()
        if node is None:
            return None, None
        return loader.construct_document(node), node
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FormatError(f"invalid YAML{where}: {' '.join(str(problem).split())[:200]}", path=path) from None
    except (ValueError, OverflowError, RecursionError, MemoryError) as exc:  # a scalar the constructor cannot take
        raise FormatError(f"invalid YAML: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}", path=path) from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml_text(text: str, path: object = None, bounds: Bounds = CONFIG_BOUNDS) -> Any:
    """The document of one YAML text (``yaml.safe_load``), within ``bounds``."""
    return yaml_document(text, path, bounds)[0]


# ---------------------------------------------------------------- JSON

def _depth_over(doc: Any, limit: int) -> bool:
    """Whether a parsed document nests deeper than ``limit`` containers (iterative: no recursion)."""
    stack = [(doc, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))
    return False


def load_json_bytes(data: bytes | str, path: object = None, bounds: Bounds = API_BOUNDS) -> Any:
    """One JSON document within ``bounds`` (size, depth, digits of a number, keys per object); a key
    written twice keeps the last, as ``json.loads`` does. Refusals are one ``FormatError`` line."""
    if len(data) > bounds.max_bytes:
        raise FormatError(f"{len(data):,} bytes, more than the {bounds.max_bytes:,} a JSON answer may have; refused",
                          path=path)
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"not UTF-8 text (byte {exc.start})", path=path) from None

    def number(text: str) -> Any:
        if len(text) > bounds.max_digits:
            raise FormatError(f"a number of {len(text):,} characters (more than {bounds.max_digits}); refused",
                              path=path)
        return float(text) if any(c in text for c in ".eE") else int(text)

    def obj(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len(pairs) > bounds.max_keys:
            raise FormatError(f"an object of more than {bounds.max_keys:,} keys; refused", path=path)
        return dict(pairs)

    try:
        doc = json.loads(data, parse_int=number, parse_float=number, object_pairs_hook=obj)
    except RecursionError:
        raise FormatError(f"JSON nested deeper than {bounds.max_depth} levels; refused", path=path) from None
    except json.JSONDecodeError as exc:
        raise FormatError(f"not JSON (line {exc.lineno} column {exc.colno}: {exc.msg})", path=path) from None
    except (ValueError, OverflowError) as exc:
        raise FormatError(f"not JSON: {' '.join(str(exc).split())[:120]}", path=path) from None
    if _depth_over(doc, bounds.max_depth):
        raise FormatError(f"JSON nested deeper than {bounds.max_depth} levels; refused", path=path)
    return doc
