"""The policy language: how one metric is judged (``MetricPolicy``), metric kinds, the policy set of
one comparison (``PolicySet``), and their parsing with precise errors (``parse_metric_policy``,
``parse_kinds``, ``parse_inference_rules``). Which keys a mode may add, and how it reads them, is the
mode table's (``goldens.core.modes.MODES``); the precedence of presets, case and policy files is
``goldens.core.policy``'s.

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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import PolicyError
from ..modes import MODES
from ..modes.inference import INFERENCE_CHECKS, InferenceRule, InferenceRules

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
            for rule in self.window:
                if rule.max_last_step is None or (last_golden_step is not None
                                                  and last_golden_step <= rule.max_last_step):
                    return rule.steps
            return (None, None)
        return self.window

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
                for r in self.window))
        elif self.window is not None:
            extras.append("window " + _window_text(self.window))
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
    for key in spec.required_keys:
        if key not in extras:
            raise PolicyError(f"{where}: key {key!r}: mode {mode!r} needs it")
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



def parse_inference_rules(raw: Any, where: str) -> InferenceRules:
    """An ``inference`` section: ``run_level`` keys and ``fields: {name: {check, params…}}``."""
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
