"""Number and name formatting shared by the renderers.

The rule for numbers, in one place:

- a metric value — what a golden or a run holds at a step, and a window's max, min or last,
  which is one of those — is shown at full precision (``value``: the shortest text that reads
  back to the same float64; whole numbers such as byte counts without '.0');
- a number computed from metric values — a median or mean over a window, Δ = actual − golden —
  is shown in its shortest faithful form (``derived``: 15 significant digits, so float noise
  such as 0.24371999999999994 reads 0.24372);
- relative quantities (Δ%, mean relative differences) summarise and are shown to four
  significant digits (``percent``, ``signed``, ``magnitude``);
- a failing sample (Megatron PR #7321) shows its values, errors and tolerance as they were compared:
  five decimals where both sides were rounded to five before comparing, full precision where they
  were compared exactly (``sample_row``).
"""
from __future__ import annotations

import html
import math
import re

from goldens.core import sanitize
from goldens.core.modes import MODES
from goldens.core.precision import derived_precision, full_precision
from goldens.core.result import MetricVerdict, Sample

# Characters that can start emphasis, code, links, HTML or a table cell wherever they appear.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~<>&])")


def value(x: float | None) -> str:
    """A metric value at full precision, as the terminal shows it (``full_precision``: whole
    numbers such as num-zeros and byte counts without a '.0')."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return full_precision(x)


def derived(x: float | None, scale: float | None = None) -> str:
    """A number computed from metric values (Δ, a median or mean), without float noise; ``scale``:
    the largest operand (see ``derived_precision``)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return derived_precision(x, scale)


def delta(m: MetricVerdict) -> str:
    """Δ = actual − golden, at the resolution of the larger of the two."""
    operands = [abs(v) for v in (m.golden_value, m.actual_value) if v is not None and math.isfinite(v)]
    return derived(m.delta, max(operands, default=None))


def reduced_by_arithmetic(m: MetricVerdict) -> bool:
    """Whether the verdict's golden and actual values were computed (a median or mean of the
    window) rather than read at a step — the mode says (``goldens.core.modes.Mode.computes_values``); a
    mode this version does not know (a result from elsewhere) shows its values as read."""
    mode = MODES.get(m.rule.mode)
    return mode is not None and mode.computes_values(m.rule.params)


def golden_actual(m: MetricVerdict) -> tuple[str, str]:
    """The verdict's golden and actual values as the rule above shows them."""
    show = derived if reduced_by_arithmetic(m) else value
    return show(m.golden_value), show(m.actual_value)


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
    """Input-derived text made inert in GitHub Markdown (tables, HTML, emphasis, links, escape
    sequences, workflow commands, ``@mentions``)."""
    flat = " ".join(sanitize.line(text).split())
    return sanitize.unmention(_MARKDOWN_SPECIAL.sub(r"\\\1", flat))


def md_html(text: object) -> str:
    """Input-derived text inside a raw-HTML line of Markdown (``<summary>``): Markdown escapes
    are not processed there, so HTML-escape instead."""
    return sanitize.unmention(html.escape(" ".join(sanitize.line(text).split())))


SAMPLE_HEADERS = ("step", "golden", "actual", "abs error", "rel error", "tolerance")


def sample_number(x: float | None, decimals: int | None, scale: float | None = None, *,
                  derived_from: bool = False) -> str:
    """A number of a failing sample: ``decimals`` fixed decimals (a rounded comparison); else a value at
    full precision, or — ``derived_from``: an error or tolerance computed from values of magnitude
    ``scale`` — in its shortest faithful form (``derived``)."""
    if x is None or math.isnan(x):
        return "—"
    if math.isinf(x):
        return full_precision(x)
    if decimals is not None:
        return f"{x:.{decimals}f}"
    return derived(x, scale) if derived_from else full_precision(x)


def sample_row(sample: Sample, decimals: int | None, *, exact: bool = False) -> tuple[str, ...]:
    """One failing sample as text, in ``SAMPLE_HEADERS`` order; an undefined relative error says why.
    ``exact``: an exact comparison, whose errors are shown at full precision too (a difference of two
    values that close is exact in float64)."""
    scale = max((abs(v) for v in (sample.golden, sample.actual) if v is not None and math.isfinite(v)), default=None)
    error = lambda x: sample_number(x, decimals, scale, derived_from=not exact)
    relative = (sample_number(sample.rel_error, decimals, derived_from=not exact) if sample.rel_error is not None
                else f"undefined ({sample.why_no_relative()})")
    actual = sample_number(sample.actual, decimals) if sample.status != "missing" else "absent"
    return (str(sample.step), sample_number(sample.golden, decimals), actual, error(sample.abs_error), relative,
            error(sample.tolerance))


def sample_rows(m: MetricVerdict) -> list[tuple[str, ...]]:
    """A verdict's failing samples as text (``sample_row``), by its comparison's precision."""
    return [sample_row(s, m.sample_decimals, exact=m.rule.mode == "exact") for s in m.samples]


def samples_caption(m: MetricVerdict) -> str:
    """What a failing-sample table shows: how many of the failing steps, at which precision."""
    how = (f"values rounded to {m.sample_decimals} decimals before comparing, shown so" if m.sample_decimals is not None
           else "compared and shown at full precision")
    listed = len(m.samples)
    more = f"the first {listed} of {m.failing_steps}" if m.failing_steps > listed else f"{listed}"
    return f"failing samples of {m.metric!r} (phase {m.phase}): {more}; {how}"
