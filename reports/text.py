"""Number and name formatting shared by the renderers.

Metric values are shown at full precision (``repr`` of the float64: the shortest text that
reads back to the same bits). Derived numbers (relative differences, Δ%) are shown to four
significant digits: they summarise, they are not data.
"""
from __future__ import annotations

import html
import math
import re

from goldens.result import full_precision

# Characters that can start emphasis, code, links, HTML or a table cell wherever they appear.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~<>&])")


def value(x: float | None) -> str:
    """A metric value at full precision, as the terminal shows it (``full_precision``: whole
    numbers such as num-zeros and byte counts without a '.0')."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return full_precision(x)


def signed(x: float | None) -> str:
    """A signed relative quantity in scientific notation: +1.234e-05, 0 for exactly zero."""
    if x is None or math.isnan(x):
        return "—"
    if x == 0:
        return "0"
    return f"{x:+.3e}"


def magnitude(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "—"
    return "0" if x == 0 else f"{x:.3e}"


def percent(x: float | None) -> str:
    """A signed percentage (Δ%), four significant digits."""
    if x is None or math.isnan(x):
        return "—"
    if math.isinf(x):
        return "+inf%" if x > 0 else "-inf%"
    return "0%" if x == 0 else f"{x:+.4g}%"


def md(text: object) -> str:
    """Input-derived text made inert in GitHub Markdown (tables, HTML, emphasis, links)."""
    flat = " ".join(str(text).split())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", flat)


def md_html(text: object) -> str:
    """Input-derived text inside a raw-HTML line of Markdown (``<summary>``): Markdown escapes
    are not processed there, so HTML-escape instead."""
    return html.escape(" ".join(str(text).split()))
