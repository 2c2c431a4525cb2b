"""Tolerance policies as data: one policy per metric, defaults by metric kind, named presets.

A policy says how one metric is judged; it never lives in code as ``if name == ...``. It comes
from data in this order (later wins, stated once here):

1. the preset — ``default`` or ``megatron`` (or a policy file's ``preset:`` key);
2. the case's ``case.yaml`` ``metrics:`` section;
3. a policy file given on the command line (``--policy FILE``), its ``metrics:``/``kinds:``.

For one metric the first match wins: an entry under ``metrics:`` by exact name, then the first
kind whose glob patterns match the name (case-insensitive), then the preset's ``fallback``
(none in ``megatron``: Megatron judges only the metrics it has thresholds for).

A ``metrics:`` entry that names a ``mode`` replaces the kind's policy; one that does not
adjusts it (``lm loss: {rtol: 0.02}`` keeps everything else of the ``loss`` kind).

Policy keys (``MetricPolicy``)::

    mode           exact | approx | summary | band   (the table: goldens.core.modes.MODES)
    rtol, atol     per-step threshold = max(atol, rtol * |golden|)  (atol is a floor;
                   with atol 0 this is numpy.isclose(actual, golden, rtol, 0), Megatron's test)
    direction      both | increase_is_bad | decrease_is_bad
    skip_warmup    N: the golden's first N steps are not judged
    window         [first, last] inclusive steps (null = open), or rules chosen by the golden's
                   last step: [{max_last_step: 25, steps: [5, 20]}, {steps: [30, 45]}]
    reduce         none | median | mean | max | min | last   (summary mode reduces the window)
    max_failing_steps   N, or {fraction: f, at_least: a, at_most: b, rule: count | megatron} →
                   A = clamp(floor(f * T), a, b) with T the golden's judged steps. rule count (the
                   default): pass iff failing <= A, counted honestly. rule megatron: Megatron's own
                   test — all must pass when T == 1, else mean(step passes) >= 1 - A/T in float64,
                   which for T = 3, 7, 19, 27, … fails a run with exactly A failing steps
    integer        count metric: the threshold is whole (floor), values shown as integers
    deterministic  bit-exact when the environment fingerprints match: exact then replaces approx
    on_missing     fail | ignore   (golden steps / metrics the run lacks)
    on_nan         fail | ignore   (NaN on one side where the other has a value)
    on_empty       fail | ignore   (the golden holds no value to judge: Megatron's test fails there)
    only_on_same_platform   on another platform the metric is reported, not judged
    report_only    always reported, never judged
    round_decimals N: both sides rounded to N decimals (Python's round) before they are compared —
                   in the exact mode only where the golden's metric block is not marked
                   ``"value_precision": "full"`` (Megatron PR #7087; the megatron preset sets it
                   from the tree's generation, ``goldens.megatron``)
"""
from __future__ import annotations

import fnmatch
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import PolicyError
from .modes import MODES

if TYPE_CHECKING:
    from .megatron import Detection, MegatronCase
    from .modes.inference import InferenceRules

Direction = Literal["both", "increase_is_bad", "decrease_is_bad"]
Reduce = Literal["none", "median", "mean", "max", "min", "last"]
OnProblem = Literal["fail", "ignore"]
AllowanceRule = Literal["count", "megatron"]


# ---------------------------------------------------------------- one metric's policy

class Allowance(BaseModel):
    """Failing steps allowed as a share of the judged steps, clamped to [at_least, at_most];
    ``rule`` says how the count is held against it (honestly, or as Megatron's test does)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    fraction: float = Field(ge=0, le=1, allow_inf_nan=False)
    at_least: int = Field(default=0, ge=0)
    at_most: int | None = Field(default=None, ge=0)
    rule: AllowanceRule = "count"

    def allowed(self, total: int) -> int:
        share = max(_share(self.fraction, total), self.at_least)
        return share if self.at_most is None else min(share, self.at_most)

    def exceeded(self, failing: int, total: int) -> bool:
        """Whether ``failing`` of ``total`` judged steps is more than this allowance permits."""
        allowed = self.allowed(total)
        if self.rule == "count":
            return failing > allowed
        # Megatron's pipeline(): np.all when T == 1, else np.mean(is_close) >= 1 - allowed / T; the
        # mean of a bool array is (T - failing) / T, rounded once, exactly as this division.
        if total == 1:
            return failing > 0
        return not ((total - failing) / total >= 1 - allowed / total)

    def describe(self) -> str:
        text = f"floor({self.fraction:g}·T)"
        if self.at_least:
            text = f"max({text}, {self.at_least})"
        if self.at_most is not None:
            text = f"min({text}, {self.at_most})"
        if self.rule == "megatron":
            text += " (Megatron's rule: all when T = 1, else mean(pass) >= 1 - allowed/T in float64)"
        return text


@functools.lru_cache(maxsize=4096)
def _share(fraction: float, total: int) -> int:
    """floor(fraction · total), exactly: Fraction(str(x)) keeps 0.01 one hundredth, so floor(0.01·T) == T // 100."""
    return math.floor(Fraction(str(fraction)) * total)


class WindowRule(BaseModel):
    """One window candidate: applies when the golden's last step is at most ``max_last_step``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    max_last_step: int | None = None
    steps: tuple[int | None, int | None]

    @field_validator("steps", mode="before")
    @classmethod
    def _pair(cls, value: Any) -> Any:
        return _step_pair(value)


def _step_pair(value: Any) -> tuple[int | None, int | None]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError("a window is [first_step, last_step] (null for open)")
    for v in value:
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise ValueError(f"window steps must be integers or null, got {v!r}")
    lo, hi = value
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"window [{lo}, {hi}] is empty (first > last)")
    return (lo, hi)


class MetricPolicy(BaseModel):
    """How one metric is judged (see the module docstring for each key)."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    mode: str = "approx"
    rtol: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    atol: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    direction: Direction = "both"
    skip_warmup: int = Field(default=0, ge=0)
    window: tuple[int | None, int | None] | tuple[WindowRule, ...] | None = None
    reduce: Reduce = "none"
    max_failing_steps: int | Allowance = 0
    integer: bool = False
    deterministic: bool = False
    on_missing: OnProblem = "fail"
    on_nan: OnProblem = "fail"
    on_empty: OnProblem = "ignore"
    only_on_same_platform: bool = False
    report_only: bool = False
    round_decimals: int | None = Field(default=None, ge=0, le=15)

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) for v in value):
            return tuple(WindowRule.model_validate(v) for v in value)
        return _step_pair(value)

    @field_validator("max_failing_steps", mode="before")
    @classmethod
    def _allowance(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("expected a count or {fraction, at_least, at_most}")
        if isinstance(value, int):
            if value < 0:
                raise ValueError("must be >= 0")
            return value
        if isinstance(value, dict):
            return Allowance.model_validate(value)
        if isinstance(value, Allowance):
            return value
        raise ValueError("expected a count or {fraction, at_least, at_most}")

    # --- derived
    def allowed_failing(self, total: int) -> int:
        allowance = self.max_failing_steps
        return allowance if isinstance(allowance, int) else allowance.allowed(total)

    def too_many_failing(self, failing: int, total: int) -> bool:
        """The per-step verdict: whether ``failing`` of ``total`` judged steps fails the metric."""
        allowance = self.max_failing_steps
        return failing > allowance if isinstance(allowance, int) else allowance.exceeded(failing, total)

    def window_for(self, last_golden_step: int | None) -> tuple[int | None, int | None]:
        """The inclusive step window; rule lists pick by the golden's last step."""
        if self.window is None:
            return (None, None)
        if isinstance(self.window[0], WindowRule):
            for rule in self.window:  # type: ignore[union-attr]
                if rule.max_last_step is None or (last_golden_step is not None
                                                  and last_golden_step <= rule.max_last_step):
                    return rule.steps
            return (None, None)
        return self.window  # type: ignore[return-value]

    def params(self) -> dict[str, Any]:
        """JSON-safe parameters for the result's ``Rule``."""
        return self.model_dump(mode="json")

    def describe(self) -> str:
        """One human line: what this policy checks."""
        spec = MODES.get(self.mode)
        if spec is not None and spec.describe is not None:
            text = spec.describe(self)
        elif self.mode == "exact":
            text = "exact (bit-equal)"
        else:
            tol = []
            if self.rtol:
                tol.append(f"{self.rtol:g}·|golden|")
            if self.atol or not self.rtol:
                tol.append(f"{self.atol:g}")
            bound = tol[0] if len(tol) == 1 else f"max({', '.join(reversed(tol))})"
            if self.integer:
                bound = f"floor({bound})"
            side = {"both": "|Δ|", "increase_is_bad": "Δ", "decrease_is_bad": "-Δ"}[self.direction]
            text = f"{self.mode} {side} <= {bound}"
            if self.mode == "summary":
                text = f"summary {self.reduce} of window: {side} <= {bound}"
        extras = []
        if self.window is not None and isinstance(self.window[0], WindowRule):
            extras.append("window " + "; ".join(
                _window_text(r.steps) + (f" if last step <= {r.max_last_step}" if r.max_last_step is not None else "")
                for r in self.window))  # type: ignore[union-attr]
        elif self.window is not None:
            extras.append("window " + _window_text(self.window))  # type: ignore[arg-type]
        if self.skip_warmup:
            extras.append(f"skip first {self.skip_warmup} steps")
        if spec is None or spec.per_step:
            allowance = self.max_failing_steps
            extras.append(f"<= {allowance if isinstance(allowance, int) else allowance.describe()} failing steps")
        if self.report_only:
            extras.append("report only")
        if self.round_decimals is not None:
            extras.append(f"both sides rounded to {self.round_decimals} decimals"
                          + (" unless the golden block is marked full" if self.mode == "exact" else ""))
        return ", ".join([text, *extras])


def _window_text(steps: tuple[int | None, int | None]) -> str:
    lo, hi = steps
    return f"[{'…' if lo is None else lo}, {'…' if hi is None else hi}]"


# ---------------------------------------------------------------- parsing with precise errors

def _error_text(where: str, exc: ValidationError, allowed: Sequence[str]) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown key {loc!r} (allowed: {', '.join(allowed)})"
    msg = err["msg"]
    if err["type"] == "literal_error":
        msg = f"invalid value {err.get('input')!r}: {msg}"
    elif err["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    elif _is_number_text(err.get("input")):  # YAML 1.1 reads 1e-5 (no '.') as a string
        msg = f"{msg}, got the text {err['input']!r} (YAML needs a '.' in an exponent number: write 1.0e-5)"
    return f"{where}: key {loc!r}: {msg}" if loc else f"{where}: {msg}"


def _is_number_text(value: Any) -> bool:
    try:
        return isinstance(value, str) and math.isfinite(float(value))
    except ValueError:
        return False


POLICY_KEYS = tuple(MetricPolicy.model_fields)


def parse_metric_policy(raw: Any, where: str, base: MetricPolicy | None = None) -> MetricPolicy:
    """A policy mapping → MetricPolicy; adjusts ``base`` unless ``raw`` names a mode."""
    if isinstance(raw, MetricPolicy):
        return raw
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: expected a mapping of policy keys, got {type(raw).__name__}")
    for key in raw:
        if not isinstance(key, str):
            raise PolicyError(f"{where}: policy keys must be strings, got {key!r}")
    merged: dict[str, Any] = {}
    if base is not None and "mode" not in raw:
        merged = base.model_dump()  # extras included
    merged.update(raw)
    mode = merged.get("mode", "approx")
    spec = MODES.get(mode) if isinstance(mode, str) else None
    if spec is None:
        raise PolicyError(f"{where}: key 'mode': invalid value {mode!r} (known modes: {', '.join(MODES)})")
    extras = {k: merged.pop(k) for k in list(merged) if k not in MetricPolicy.model_fields}
    allowed = (*POLICY_KEYS, *spec.extra_keys)
    for key, value in extras.items():
        if key not in spec.extra_keys:
            raise PolicyError(f"{where}: unknown key {key!r} (allowed: {', '.join(allowed)})")
        try:
            extras[key] = spec.extra_keys[key](value)
        except (ValueError, TypeError) as exc:
            raise PolicyError(f"{where}: key {key!r}: {exc}") from None
    try:
        policy = MetricPolicy.model_validate({**merged, **extras})
    except ValidationError as exc:
        raise PolicyError(_error_text(where, exc, allowed)) from None
    if spec.needs_reduce and policy.reduce == "none":
        raise PolicyError(f"{where}: key 'reduce': mode {mode!r} needs one of median, mean, max, min, last")
    if not spec.needs_reduce and policy.reduce != "none":
        raise PolicyError(f"{where}: key 'reduce': only mode 'summary' reduces a window (got mode {mode!r})")
    return policy


# ---------------------------------------------------------------- kinds and policy sets

@dataclass(frozen=True)
class Kind:
    """A family of metrics recognised by name patterns (globs, case-insensitive)."""

    name: str
    patterns: tuple[str, ...]
    policy: MetricPolicy

    def matches(self, metric: str) -> bool:
        lowered = metric.lower()
        return any(fnmatch.fnmatchcase(lowered, p.lower()) for p in self.patterns)


@dataclass(frozen=True)
class Resolved:
    """The policy chosen for one metric and where it came from (for the result's rule text)."""

    policy: MetricPolicy | None
    origin: str


RESUME_MODES = ("exact", "approx", "as_golden", "none")


@dataclass(frozen=True)
class CaseRegime:
    """Exact or approximate as the case itself decides it (Megatron's ENV_VARS), not fingerprints."""

    exact: bool
    origin: str


@dataclass(frozen=True)
class PolicySet:
    """All policies of one comparison: exact-name entries, kinds, fallback, resume rule — and, where a
    case decides them (a Megatron case's model_config.yaml), what it requires and how.

    ``resume``: ``exact`` (deterministic metrics bit-equal on every overlapping step), ``approx``
    (each metric's policy, approximate), ``as_golden`` (each metric's policy under the comparison's
    regime, as Megatron's resume test), ``none`` (no resume check).
    """

    name: str
    metrics: Mapping[str, MetricPolicy] = field(default_factory=dict)
    kinds: tuple[Kind, ...] = ()
    fallback: MetricPolicy | None = None
    resume: str = "exact"
    required: tuple[str, ...] = ()            # judged metrics each compared phase must hold (Megatron's METRICS)
    required_origin: str = ""
    regime: CaseRegime | None = None          # the case decides exact/approx (else: fingerprints)
    golden_phases: tuple[int, ...] | None = None  # phases compared with the golden (None: every phase)
    resume_after: int | None = None           # the resume check compares only the steps after this one
    resume_required: bool = False             # a run without a resumed phase fails the resume check
    inference: InferenceRules | None = None
    inference_checked: tuple[str, ...] | None = None  # the inference fields judged (None: every rule's)
    follows_model_config: bool = False        # a Megatron case's model_config.yaml decides (the megatron preset)
    choices: tuple[str, ...] = ()             # where each case-made choice came from (the result carries them)
    sources: Mapping[str, str] = field(default_factory=dict)  # "metrics:<name>" / "kind:<name>" / "fallback" →
    #                                           the file that set it (a case.yaml, a policy file), for the rule's origin

    @property
    def label(self) -> str:
        """The policy as a result names it: the preset, plus each file that changed it
        (``default + cases/x/case.yaml``)."""
        return " + ".join((self.name, *dict.fromkeys(self.sources.values())))

    @property
    def in_megatron_case(self) -> bool:
        """Applied to a Megatron case's model_config.yaml (``with_megatron_case``)."""
        return self.follows_model_config and self.golden_phases is not None

    def resolve(self, metric: str) -> Resolved:
        """The metric's policy and its origin: the file that set it (a case.yaml, a policy file), else
        the preset — a loosened check is never credited to the default."""
        if metric in self.metrics:
            return Resolved(self.metrics[metric], f"{self.sources.get('metrics:' + metric, self.name)}: "
                                                  f"metrics[{metric!r}]")
        for kind in self.kinds:
            if kind.matches(metric):
                return Resolved(kind.policy, f"{self.sources.get('kind:' + kind.name, self.name)}: kind {kind.name!r}")
        if self.fallback is not None:
            return Resolved(self.fallback, f"{self.sources.get('fallback', self.name)}: fallback")
        return Resolved(None, f"{self.name}: no policy for this metric")

    def base_for(self, metric: str) -> MetricPolicy | None:
        return self.resolve(metric).policy

    def with_document(self, doc: Mapping[str, Any], source: str) -> PolicySet:
        """Overlay a policy document's ``metrics`` / ``kinds`` / ``fallback`` / ``resume``."""
        if not isinstance(doc, Mapping):
            raise PolicyError(f"{source}: expected a mapping, got {type(doc).__name__}")
        unknown = set(doc) - {"preset", "metrics", "kinds", "fallback", "resume"}
        if unknown:
            raise PolicyError(f"{source}: unknown key {sorted(unknown)[0]!r} "
                              "(allowed: preset, metrics, kinds, fallback, resume)")
        kinds = self.kinds
        sources = dict(self.sources)
        if doc.get("kinds") is not None:
            added = parse_kinds(doc["kinds"], f"{source}: kinds", self)
            kinds = (*added, *kinds)
            sources.update({f"kind:{k.name}": source for k in added})
        interim = replace(self, kinds=kinds)
        metrics = dict(self.metrics)
        raw_metrics = doc.get("metrics")
        if raw_metrics is not None:
            if not isinstance(raw_metrics, Mapping):
                raise PolicyError(f"{source}: key 'metrics': expected a mapping of metric name to policy")
            for name, raw in raw_metrics.items():
                if not isinstance(name, str):
                    raise PolicyError(f"{source}: metric names must be strings, got {name!r}")
                metrics[name] = parse_metric_policy(raw, f"{source}: metrics[{name!r}]", interim.base_for(name))
                sources[f"metrics:{name}"] = source
        fallback = self.fallback
        if doc.get("fallback") is not None:
            fallback = parse_metric_policy(doc["fallback"], f"{source}: fallback", None)
            sources["fallback"] = source
        resume = doc.get("resume", self.resume)
        if resume not in RESUME_MODES:
            raise PolicyError(f"{source}: key 'resume': invalid value {resume!r} (allowed: {', '.join(RESUME_MODES)})")
        return replace(self, metrics=metrics, kinds=kinds, fallback=fallback, resume=resume, sources=sources)


def parse_kinds(raw: Any, where: str, base: PolicySet | None = None) -> tuple[Kind, ...]:
    if not isinstance(raw, list):
        raise PolicyError(f"{where}: expected a list of {{kind, match, policy}}")
    kinds = []
    for i, entry in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(entry, dict):
            raise PolicyError(f"{at}: expected a mapping with kind, match, policy")
        unknown = set(entry) - {"kind", "match", "policy"}
        if unknown:
            raise PolicyError(f"{at}: unknown key {sorted(map(str, unknown))[0]!r} (allowed: kind, match, policy)")
        name, patterns = entry.get("kind"), entry.get("match")
        if not isinstance(name, str) or not name:
            raise PolicyError(f"{at}: key 'kind': expected a name")
        if isinstance(patterns, str):
            patterns = [patterns]
        if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) for p in patterns):
            raise PolicyError(f"{at}: key 'match': expected a glob or a list of globs")
        if "policy" not in entry:
            raise PolicyError(f"{at}: key 'policy': missing")
        kinds.append(Kind(name, tuple(patterns), parse_metric_policy(entry["policy"], f"{at}.policy")))
    return tuple(kinds)


# ---------------------------------------------------------------- presets (data)

# Defaults by metric kind, with the reasons in ../shared/DESIGN.md ("Tolerance policy").
DEFAULT_PRESET: dict[str, Any] = {
    "kinds": [
        # Loss: bit-exact on the same environment; otherwise Megatron's 5 % per-step backstop.
        # The result always carries the signed mean relative diff, which shows drift long before 5 %.
        {"kind": "loss", "match": ["*loss*"],
         "policy": {"mode": "approx", "rtol": 0.05, "deterministic": True}},
        # Count of zeros in gradients: integer; |x-g| <= max(0.20*|g|, 1) across environments.
        {"kind": "count", "match": ["num-zeros", "*num-zeros*", "*num_zeros*"],
         "policy": {"mode": "approx", "rtol": 0.20, "atol": 1, "integer": True, "deterministic": True}},
        # Step time: never per step; median of a steady window after warm-up; slower is bad;
        # only meaningful on the same platform.
        {"kind": "iteration-time", "match": ["iteration-time", "*iteration-time*", "*iteration_time*",
                                             "*iter-time*", "*step-time*", "*step_time*"],
         "policy": {"mode": "summary", "reduce": "median", "skip_warmup": 2, "rtol": 0.10,
                    "direction": "increase_is_bad", "only_on_same_platform": True}},
        # Memory (GPU allocator and CPU process RSS): peak over steps >= 2, growth is bad.
        {"kind": "memory", "match": ["mem-*", "*memory*", "*-bytes", "*_bytes", "*rss*"],
         "policy": {"mode": "summary", "reduce": "max", "skip_warmup": 1, "rtol": 0.05,
                    "direction": "increase_is_bad"}},
    ],
    # Any other metric (grad norm, learning rate, ...): bit-exact on the same environment,
    # else 5 % per step like the loss.
    "fallback": {"mode": "approx", "rtol": 0.05, "deterministic": True},
    "resume": "exact",
}

# Megatron-LM's functional-test rules at NVIDIA/Megatron-LM d98e8a64, reproduced as data (sources:
# tests/functional_tests/python_test_utils/, run_ci_test.sh; notes in docs/megatron.md):
#  - test_pretraining_regular_pipeline.py CHECK_THRESHOLDS, name by name: the losses, num-zeros,
#    generated_tokens and logprobs have a DeterministicTest (np.isclose with rtol = atol = 0 on every
#    step: ``deterministic`` here, applied in the exact regime) and an ApproximateTest; iteration-time
#    and the two memory metrics only the ApproximateTest. A metric without a threshold is not judged
#    (listed in METRICS, Megatron's test raises KeyError: a required metric without a rule fails).
#  - common.py pipeline(): the run's values on the golden's steps (a missing step is "nan"; every
#    string reads as inf, so "nan" matches "nan"); T = the golden's steps; np.isclose(actual,
#    golden, rtol, atol=0); all must pass when T == 1, else mean(is_close) >= 1 - A/T with
#    A = min(max(T // 100, 1), 50), float quirk included (``rule: megatron``); an empty golden fails.
#  - iteration-time: the median over the steady window steps 5..20 when the golden's last finite
#    step is <= 25, else 30..45; no finite golden step there: its first 4 finite steps from the
#    window's start; a missing run value enters the median as inf (mode ``steady_median``).
#  - Which metrics are judged: METRICS of the case's model_config.yaml, default lm loss and
#    num-zeros (``with_megatron_case``); without a Megatron case the default ones, the rest
#    reported only. The regime: ENV_VARS (a Megatron case), else fingerprints (or --exact/--approx).
#  - test_inference_regular_pipeline.py: the ``inference`` section.
_MEGATRON_ALLOWANCE = {"fraction": 0.01, "at_least": 1, "at_most": 50, "rule": "megatron"}
_EXACT_AND_APPROX = {"mode": "approx", "rtol": 0.05, "deterministic": True, "max_failing_steps": _MEGATRON_ALLOWANCE,
                     "on_empty": "fail"}
_APPROX_ONLY = {"mode": "approx", "rtol": 0.05, "max_failing_steps": _MEGATRON_ALLOWANCE, "on_empty": "fail",
                "report_only": True}
MEGATRON_PRESET: dict[str, Any] = {
    "metrics": {
        "iteration-time": {"mode": "steady_median", "rtol": 0.05, "fallback_steps": 4, "on_empty": "fail",
                           "report_only": True,
                           "window": [{"max_last_step": 25, "steps": [5, 20]}, {"steps": [30, 45]}]},
        "mem-allocated-bytes": _APPROX_ONLY,
        "mem-max-allocated-bytes": _APPROX_ONLY,
        "lm loss": _EXACT_AND_APPROX,
        "mtp_1 loss": {**_EXACT_AND_APPROX, "report_only": True},
        "mtp_2 loss": {**_EXACT_AND_APPROX, "report_only": True},
        "num-zeros": {**_EXACT_AND_APPROX, "rtol": 0.20},
        "generated_tokens": {**_EXACT_AND_APPROX, "report_only": True},
        "logprobs": {**_EXACT_AND_APPROX, "report_only": True},
        "total loss": {**_EXACT_AND_APPROX, "report_only": True},
    },
    "kinds": [],
    "fallback": None,
    "resume": "exact",
    "follows_model_config": True,
}

# test_inference_regular_pipeline.py, check by check. Top-level keys that are not request ids; a
# run-scoped field is checked when the golden has it and METRICS lists it, a request-scoped one for
# each request whose golden record has it; a request no listed field applies to fails ("No test
# performed"). Listing lifetime_prefill_token_count fails: the test calls list.pop(str) on METRICS.
INFERENCE_RULES: dict[str, Any] = {
    "run_level": ["throughput", "lifetime_prefill_token_count", "async_sched_step_count",
                  "async_sched_compaction_step_count", "mem-max-allocated-bytes"],
    "fields": {
        "generated_tokens": {"check": "equal"},
        "logprobs": {"check": "close_each", "abs_tol": 0.001, "rel_tol": 1e-9},
        "generated_text": {"check": "common_prefix"},
        "routing_indices": {"check": "sorted_rows_at", "index_field": "routing_indices_token_indices"},
        "throughput": {"check": "median_band", "low": 0.9, "high": 1.2, "high_open": True, "drop_first": "always",
                       "golden_positive": False, "nan_passes": False},
        "mem-max-allocated-bytes": {"check": "median_band", "low": 0.95, "high": 1.05, "high_open": False,
                                    "drop_first": "if_several", "golden_positive": True, "nan_passes": True},
        "lifetime_prefill_token_count": {"check": "refused",
                                         "why": "Megatron's test calls list.pop(str) on METRICS (TypeError)"},
    },
}
MEGATRON_PRESET["inference"] = INFERENCE_RULES
DEFAULT_PRESET["inference"] = INFERENCE_RULES  # the only inference rules there are: Megatron's

PRESETS: dict[str, Mapping[str, Any]] = {"default": DEFAULT_PRESET, "megatron": MEGATRON_PRESET}
_PARSED: dict[str, PolicySet] = {}


def preset(name: str) -> PolicySet:
    """A named preset as a PolicySet (parsed once per process: a bulk run asks for it per case)."""
    if name not in PRESETS:
        raise PolicyError(f"unknown policy preset {name!r} (known: {', '.join(PRESETS)})")
    if name not in _PARSED:
        doc = PRESETS[name]
        where = f"preset {name!r}"
        fallback = doc.get("fallback")
        base = PolicySet(name=name, kinds=parse_kinds(doc.get("kinds", []), f"{where}: kinds"),
                         fallback=None if fallback is None else parse_metric_policy(fallback, f"{where}: fallback"),
                         resume=doc.get("resume", "exact"), follows_model_config=bool(doc.get("follows_model_config")),
                         inference=None if doc.get("inference") is None
                         else parse_inference_rules(doc["inference"], f"{where}: inference"))
        # the preset's own entries are credited to the preset (by its name), not to a file
        _PARSED[name] = replace(base.with_document({"metrics": doc.get("metrics")}, where), sources={}) \
            if doc.get("metrics") else base
    return _PARSED[name]


def parse_inference_rules(raw: Any, where: str) -> InferenceRules:
    """An ``inference`` section: ``run_level`` keys and ``fields: {name: {check, params…}}``."""
    from .modes.inference import INFERENCE_CHECKS, InferenceRule, InferenceRules

    if not isinstance(raw, Mapping) or set(raw) - {"run_level", "fields"}:
        raise PolicyError(f"{where}: expected a mapping with run_level and fields")
    run_level = raw.get("run_level") or []
    if not isinstance(run_level, list) or not all(isinstance(k, str) for k in run_level):
        raise PolicyError(f"{where}: key 'run_level': expected a list of top-level keys")
    fields: dict[str, InferenceRule] = {}
    for name, entry in (raw.get("fields") or {}).items():
        at = f"{where}: fields[{name!r}]"
        if not isinstance(entry, Mapping) or entry.get("check") not in INFERENCE_CHECKS:
            raise PolicyError(f"{at}: key 'check': expected one of {', '.join(INFERENCE_CHECKS)}")
        spec = INFERENCE_CHECKS[entry["check"]]
        params = {k: v for k, v in entry.items() if k != "check"}
        if set(params) != set(spec.params):
            raise PolicyError(f"{at}: check {spec.name!r} takes {', '.join(spec.params) or 'no parameters'}")
        try:
            params = {k: spec.params[k](v) for k, v in params.items()}
        except ValueError as exc:
            raise PolicyError(f"{at}: {exc}") from None
        if (spec.scope == "run") != (name in run_level):
            raise PolicyError(f"{at}: check {spec.name!r} is for {'top-level' if spec.scope == 'run' else 'request'} "
                              f"fields")
        fields[name] = InferenceRule(spec.name, params)
    return InferenceRules(tuple(run_level), fields)


def with_megatron_case(policies: PolicySet, case: MegatronCase) -> PolicySet:
    """A policy set that follows model_config.yaml, applied to one Megatron case as its CI applies it:
    the METRICS are judged and required (a listed metric missing from the golden or the run fails; one
    without a threshold fails, as Megatron's KeyError), the others reported only; the regime comes
    from ENV_VARS; the resume check runs for the resume test types, on the steps after
    train_iters // 2, with the golden's rules; the golden's ``_2nd`` file is not compared (Megatron's
    CI never reads it); a test type Megatron runs no check for compares nothing."""
    if not policies.follows_model_config:
        return policies
    key = (id(policies), id(case))
    hit = _OVERLAID.get(key)
    if hit is None or hit[0] is not policies or hit[1] is not case:
        if len(_OVERLAID) > 1024:
            _OVERLAID.clear()
        hit = _OVERLAID[key] = (policies, case, _overlaid(policies, case))  # once per case in a bulk run
    return hit[2]


_OVERLAID: dict[tuple[int, int], tuple[PolicySet, MegatronCase, PolicySet]] = {}
_GENERATIONS: dict[tuple[int, str], PolicySet] = {}


def with_generation(policies: PolicySet, detection: Detection) -> PolicySet:
    """The megatron preset as the tree's generation of Megatron's conventions judges (its row's
    rounding on every metric); made once per preset and row."""
    row = detection.generation
    key = (id(policies), row.name)
    hit = _GENERATIONS.get(key)
    if hit is None:
        update = row.rounding()
        metrics = {name: p.model_copy(update=update) for name, p in policies.metrics.items()} if update \
            else dict(policies.metrics)
        hit = _GENERATIONS[key] = replace(policies, metrics=metrics)
    return hit


def _overlaid(policies: PolicySet, case: MegatronCase) -> PolicySet:
    from .errors import GoldenError
    from .megatron import INFERENCE, REGULAR, RESUME

    if case.unsupported:
        raise GoldenError(case.unsupported)
    listed = {m for m in case.metrics if isinstance(m, str)}
    metrics = {name: p if p.report_only == (name not in listed) else p.model_copy(update={"report_only": name not in listed})
               for name, p in policies.metrics.items()}
    resume = RESUME in case.pipelines
    if resume and case.train_iters is None:
        raise GoldenError(f"{case.config}: MODEL_ARGS --train-iters is not a whole number (Megatron's resume test "
                          "cannot run)")
    return replace(
        policies, metrics=metrics, required=tuple(str(m) for m in case.metrics) if REGULAR in case.pipelines else (),
        required_origin=case.metrics_origin, regime=CaseRegime(not case.allow_nondeterministic, case.regime_origin),
        golden_phases=(1,) if REGULAR in case.pipelines or INFERENCE in case.pipelines else (),
        resume="as_golden" if resume else "none", resume_after=case.train_iters // 2 if resume else None,
        resume_required=resume,
        inference_checked=tuple(str(m) for m in case.metrics) if INFERENCE in case.pipelines else None,
        choices=case.choices)


def build_policies(*, preset_name: str | None = None, case_metrics: Any = None, case_source: str = "case.yaml",
                   document: Mapping[str, Any] | None = None, document_source: str = "policy file",
                   megatron_case: MegatronCase | None = None, base: PolicySet | None = None,
                   generation: Detection | None = None) -> PolicySet:
    """Compose the policies for one comparison (precedence: preset < its Megatron generation's row (a
    preset that follows model_config.yaml) < model_config.yaml < case.yaml < policy file).

    ``preset_name`` wins over the document's ``preset:`` key only when given explicitly; ``base``, a
    policy set built in Python, stands where the preset would.
    """
    name = preset_name or (document or {}).get("preset") or "default"
    if not isinstance(name, str):
        raise PolicyError(f"{document_source}: key 'preset': expected a name, got {name!r}")
    policies = base if base is not None else preset(name)
    if generation is not None and policies.follows_model_config:
        policies = with_generation(policies, generation)
    if megatron_case is not None:
        policies = with_megatron_case(policies, megatron_case)
    if generation is not None and policies.follows_model_config:
        policies = replace(policies, choices=(*policies.choices, generation.line))
    if case_metrics is not None:
        policies = policies.with_document({"metrics": case_metrics}, case_source)
    if document is not None:
        policies = policies.with_document({k: v for k, v in document.items() if k != "preset"}, document_source)
    return policies
