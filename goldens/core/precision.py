"""How a number reads as text, one rule for every report and message: a metric value at full
precision (``full_precision``: never rounded), a number computed from metric values without its
float noise (``derived_precision``)."""
from __future__ import annotations

import math


def full_precision(value: float | None) -> str:
    """A metric value as text, never rounded: the shortest repr that reads back to the same
    float64; whole numbers without '.0'; None (no value) as '—'."""
    if value is None:
        return "—"
    value = float(value)
    if math.isfinite(value) and abs(value) < 2**53 and value.is_integer():
        return str(int(value))
    return repr(value)


# float64 carries 15.95 significant decimal digits; arithmetic on it (a median of two steps, a
# difference, a ratio) leaves its rounding noise in the 16th and 17th.
DERIVED_DIGITS = 15


def derived_precision(value: float | None, scale: float | None = None) -> str:
    """A number computed from metric values (a median or mean of steps, a Δ, a ratio) as text:
    rounded to 15 significant digits of ``scale`` — the largest number it was computed from
    (default: itself) — then in its shortest form, so float noise never shows: 0.1 + 0.2 reads
    0.3, not 0.30000000000000004, and 7.046254800000001 − 6.52431 reads 0.5219448, not
    0.5219448000000009 (a difference keeps the noise of its operands, which sits at their 16th
    digit). Fifteen digits are more than any golden holds (Megatron writes float32 values rounded
    to 5 decimals), so nothing the inputs said is lost; a nonzero number below that resolution
    (operands a few bits apart) shows 3 significant digits, never 0. Metric values themselves
    are never rounded: they go through ``full_precision``. None (no value) is '—'."""
    if value is None:
        return "—"
    value = float(value)
    if not math.isfinite(value):
        return full_precision(value)
    scale = abs(value) if scale is None or not math.isfinite(scale) else max(abs(float(scale)), abs(value))
    if scale == 0:
        return "0"
    decimals = DERIVED_DIGITS - 1 - math.floor(math.log10(scale))
    rounded = round(value, decimals) + 0.0  # + 0.0: a rounded -0.0 reads 0
    if rounded == 0 and value != 0:
        # Below the operands' resolution (bit-level differences): still not zero, so never shown as 0.
        return f"{value:.3g}"
    return full_precision(rounded)
