"""The comparison modes, in one table: what the policy language accepts and how each mode judges.

A row is a ``Mode``: its name, whether it judges step by step (so a failing-step allowance
applies), whether it reduces a window (``reduce:``), the policy keys only it understands (with
their validators), the rule's human line, and the evaluator
``(Aligned, PolicyView, Context) -> Outcome``. ``goldens.core.policy`` reads the table to parse
policies, the engine to judge (a mode only reads a policy, through ``PolicyView``: this package never
imports the policy schema, which stands above it); adding a mode is one evaluator module and one row here.
Inference goldens (keyed by request id, not by step) have their own table beside this one:
``goldens.core.modes.inference.INFERENCE_CHECKS``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..align import Aligned
from .band import describe_band, evaluate_band, parse_band
from .common import Context, Outcome, PolicyView
from .per_step import evaluate_per_step
from .steady import describe_steady, evaluate_steady, parse_fallback_steps
from .summary import evaluate_summary


@dataclass(frozen=True)
class Mode:
    """One comparison mode: its policy-language spec and its evaluator, side by side."""

    name: str
    per_step: bool
    evaluate: Callable[[Aligned, PolicyView, Context], Outcome]
    needs_reduce: bool = False
    extra_keys: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)  # value → value, or ValueError
    required_keys: tuple[str, ...] = ()  # of its extra keys, those a policy of this mode must give
    describe: Callable[[PolicyView], str] | None = None  # the rule's line, for modes with keys of their own
    # Whether the golden and actual values a verdict shows are computed from several steps (a median
    # or mean: float noise is the computation's, not the data's) — given the rule's parameters.
    computes_values: Callable[[Mapping[str, Any]], bool] = lambda params: False


MODES: Mapping[str, Mode] = {mode.name: mode for mode in (
    Mode("exact", per_step=True, evaluate=evaluate_per_step),
    Mode("approx", per_step=True, evaluate=evaluate_per_step),
    Mode("summary", per_step=False, evaluate=evaluate_summary, needs_reduce=True,
         computes_values=lambda params: params.get("reduce") in ("median", "mean")),
    Mode("band", per_step=True, evaluate=evaluate_band, extra_keys={"band": parse_band}, required_keys=("band",),
         describe=describe_band),
    Mode("steady_median", per_step=False, evaluate=evaluate_steady, extra_keys={"fallback_steps": parse_fallback_steps},
         describe=describe_steady, computes_values=lambda params: True),
)}
