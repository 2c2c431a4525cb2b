"""Locate and read a case definition (``case.yaml``) — YAML via ``safe_load`` only.

The runner reads the training sections, the comparison engine the ``metrics`` section
(tolerance policies); this module only finds and parses the file.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..core.errors import FormatError, StoreError
from .bounded import load_yaml_text

CASE_FILE = "case.yaml"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
MAX_CASE_DEPTH = 8  # folders below the store root (Megatron: <model>/<case>)
MAX_CASE_PATH = 400  # characters


def check_name(name: str, what: str = "case") -> str:
    """Reject hostile names (path separators, '..', control characters) before touching disk."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name) or ".." in name:
        raise StoreError(f"invalid {what} name {name!r}: use letters, digits, '_', '-', '.'")
    return name


def check_case_path(ref: str, what: str = "case") -> str:
    """A case is its folder's path under the store (``gpt/gpt3_7b_tp1_pp4_memory_speed``; a flat
    store's cases are single names): posix, relative, each part a safe name, bounded in depth and
    length — refused before touching disk."""
    if not isinstance(ref, str) or not 0 < len(ref) <= MAX_CASE_PATH:
        raise StoreError(f"invalid {what} name {ref!r}: a case is its folder's path under the store "
                         f"(at most {MAX_CASE_PATH} characters)")
    parts = ref.split("/")
    if len(parts) > MAX_CASE_DEPTH or not all(SAFE_NAME.fullmatch(p) and ".." not in p for p in parts):
        raise StoreError(f"invalid {what} name {ref!r}: a case is its folder's path under the store, e.g. "
                         f"gpt/gpt3_7b (relative, '/' between parts, each of letters, digits, '_', '-', '.'; "
                         f"at most {MAX_CASE_DEPTH} parts)")
    return ref


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping file (``case.yaml``, ``model_config.yaml``, a policy), parsed within
    ``bounded.CONFIG_BOUNDS`` (size, depth, aliases, keys, digits) by the safe loader."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FormatError("no such file", path=p) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"cannot read: {exc}", path=p) from None
    doc = load_yaml_text(text, p)
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise FormatError(f"expected a mapping at the top level, got {type(doc).__name__}", path=p)
    return doc


def load_case(case_dir: str | Path) -> dict[str, Any]:
    """The parsed ``case.yaml`` of a case folder ({} when the folder has none, e.g. Megatron's)."""
    path = Path(case_dir) / CASE_FILE
    return load_yaml(path) if path.exists() else {}
