"""Bounded parsing of hostile input: every YAML and JSON document a pull request or a CI server
controls (``case.yaml``, ``model_config.yaml``, API answers) is read here, within limits on size,
nesting depth, aliases, keys per mapping and digits of a number, checked *while* it is parsed —
a 497-byte YAML "billion laughs" is refused after a few hundred nodes, never expanded.

A refusal is one ``FormatError`` line naming the file, the key (``METRICS[3]``) and the bound; no
message formats an unbounded value (``short`` cuts any value shown to a few dozen characters).
YAML goes through PyYAML's safe loader only (no object construction from tags), in C where built:
its event stream is checked against the bounds first, and only a document within them is composed.
"""
from __future__ import annotations

import json
import reprlib
from dataclasses import dataclass
from typing import Any

from ..core.errors import FormatError

_INT_TAG, _FLOAT_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"


@dataclass(frozen=True, kw_only=True)
class Bounds:
    """Limits for one kind of document. ``max_nodes`` counts nodes as if every alias were expanded,
    so alias growth is bounded however the aliases nest."""

    max_bytes: int = 1 << 20
    max_depth: int = 64
    max_aliases: int = 64
    max_nodes: int = 100_000
    max_keys: int = 100_000
    max_digits: int = 64

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_depth", "max_aliases", "max_nodes", "max_keys", "max_digits"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"Bounds.{name} must be a non-negative integer")


CONFIG_BOUNDS = Bounds(max_bytes=1 << 20, max_nodes=20_000)  # case.yaml, model_config.yaml, policies: ~300 nodes
API_BOUNDS = Bounds(max_bytes=32 << 20, max_depth=32, max_aliases=0, max_nodes=10_000_000, max_keys=100_000,
                    max_digits=64)  # one page of a CI API

_short = reprlib.Repr()
_short.maxstring, _short.maxother, _short.maxlist, _short.maxdict, _short.maxlevel = 60, 60, 20, 20, 3


def short(value: Any) -> str:
    """``repr`` of a value, whole when it is small (a METRICS list), else cut to a few hundred
    characters — read at most three levels and twenty items deep, whatever its size or sharing."""
    return cut(_short.repr(value), 300)


def cut(text: str, limit: int = 200) -> str:
    """``text`` as it is when short, else its first characters and an ellipsis."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


# ---------------------------------------------------------------- YAML

class _Frame:
    __slots__ = ("anchor", "count", "expect_key", "key", "label", "mapping", "start")

    def __init__(self, mapping: bool, start: int, anchor: str | None, label: str):
        self.mapping, self.start, self.anchor, self.label = mapping, start, anchor, label
        self.count, self.key, self.expect_key = 0, "?", True


def _check_events(text: str, bounds: Bounds, path: object, loader: type) -> None:
    """Walk the YAML event stream (libyaml where built: fast, with its own nesting limit, and it
    never expands an alias) and refuse the document at the first event past a bound, naming the
    key it is under."""
    import yaml

    resolver = yaml.resolver.Resolver()
    stack: list[_Frame] = []
    aliases = expanded = 0
    sizes: dict[str, int] = {}  # anchor → the nodes it stands for, expanded

    def refuse(message: str, label: str = "") -> FormatError:
        key = ("".join(f.label for f in stack) + label).lstrip(".") or None
        if key is not None and len(key) > 80:
            key = key[:60] + "…"
        return FormatError(message, path=path, key=key)

    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            frame = stack.pop()
            if frame.anchor is not None:
                sizes[frame.anchor] = expanded - frame.start
            continue
        if not isinstance(event, (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent, yaml.AliasEvent)):
            continue
        label, is_key = "", False
        if stack:
            parent = stack[-1]
            if not parent.mapping:
                label = f"[{parent.count}]"
                parent.count += 1
            elif parent.expect_key:
                is_key, parent.expect_key = True, False
                parent.key = event.value[:40] if isinstance(event, yaml.ScalarEvent) else "?"
            else:
                label, parent.expect_key = "." + parent.key, True
                parent.count += 1
                if parent.count > bounds.max_keys:
                    raise refuse(f"more than {bounds.max_keys:,} keys in one mapping; refused")
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > bounds.max_aliases:
                raise refuse(f"more than {bounds.max_aliases} YAML aliases; refused", label)
            anchor = event.anchor  # typed optional: an alias always names one
            expanded += 1 if anchor is None else sizes.get(anchor, 1)
        else:
            expanded += 1
        if expanded > bounds.max_nodes:
            raise refuse(f"more than {bounds.max_nodes:,} YAML nodes (aliases counted expanded); refused", label)
        if isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                sizes[event.anchor] = 1
            value = event.value
            if len(value) > bounds.max_digits:
                tag = event.tag if event.tag not in (None, "!") else (
                    resolver.resolve(yaml.ScalarNode, value, event.implicit) if event.implicit[0] else None)
                if tag in (_INT_TAG, _FLOAT_TAG):
                    raise refuse(f"a number of {len(value):,} characters (more than {bounds.max_digits}); refused",
                                 label)
        elif not isinstance(event, yaml.AliasEvent):
            if len(stack) >= bounds.max_depth:
                raise refuse(f"nested deeper than {bounds.max_depth} levels; refused", label)
            stack.append(_Frame(isinstance(event, yaml.MappingStartEvent), expanded - 1, event.anchor,
                                ".?" if is_key else label))


def yaml_document(text: str, path: object = None, bounds: Bounds = CONFIG_BOUNDS) -> tuple[Any, Any]:
    """``(document, node tree)`` of one YAML text: the document as ``yaml.safe_load`` gives it, the
    node tree as ``yaml.compose`` does (scalars as written). ``(None, None)`` for an empty text.
    The events are checked against ``bounds`` first; only then is anything composed."""
    import yaml

    if len(text) > bounds.max_bytes:
        raise FormatError(f"{len(text):,} characters, more than the {bounds.max_bytes:,} a YAML input may have; "
                          "refused", path=path)
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # safe_load, in C where built
    loader = None
    try:
        _check_events(text, bounds, path, loader_class)
        loader = loader_class(text)
        node = loader.get_single_node()
        if node is None:
            return None, None
        return loader.construct_document(node), node
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FormatError(f"invalid YAML{where}: {' '.join(str(problem).split())[:200]}", path=path) from None
    except (ValueError, OverflowError, RecursionError, MemoryError, TypeError) as exc:
        # a scalar the constructor cannot take
        raise FormatError(f"invalid YAML: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}",
                          path=path) from None
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
