"""The comparison result: frozen dataclasses that reports render and CI archives.

This module is the contract between the engine (``goldens.core.compare``) and every renderer
(terminal, markdown, html, junit, json). It is stable: later versions only ADD fields.

Shape::

    ComparisonResult
      case, env, platform, reference, candidate, policy, verdict ("pass" | "fail")
      fingerprint: FingerprintCheck   (both hashes, differing fields, exact_applied, reason)
      phases: (PhaseResult(phase, verdict, metrics=(MetricVerdict, ...)), ...)
      resume: ResumeCheck | None      (phase 2 vs phase 1 on overlapping steps; own verdict)
      drift: StructuralDrift          (metrics added/removed, grid changes, model-arg changes)
      warnings: (str, ...)
      choices: (str, ...)             (where the case's choices came from: test type, metrics, regime)

    MetricVerdict: metric, phase, verdict (pass|fail|missing|new|skipped), passed (bool:
      does this verdict let the comparison pass), rule (Rule: mode, params, text), worst_step,
      golden_value, actual_value, delta (actual - golden), delta_pct, mean_rel_diff (signed),
      failing_steps, allowed_failing_steps, total_steps, step_counts {status: n},
      explanation (one line: why), steps (StepTable | None: the per-step rows),
      within_rule (bool | None: whether the values met the rule, also for a report-only metric,
      which cannot fail the comparison; None where no rule was evaluated),
      samples (Sample, ...: each failing step of a per-step rule out of it — step, golden, actual,
      absolute and relative error, tolerance — as Megatron PR #7321 explains a failure),
      sample_decimals (5: the values were rounded to 5 decimals before they were compared, and are
      shown so; None: compared and shown at full precision)

``.frame()`` gives one pandas row per (check, phase, metric, step); ``.to_json()`` /
``ComparisonResult.from_json()`` round-trip exactly (NaN/inf written as Megatron does, as the
strings "nan"/"inf"/"-inf"), so ``golden report RESULT.json`` renders what ``golden diff``
computed; ``goldens.files.result_json`` writes that document as text a piece at a time. How a
number reads as text is ``goldens.core.precision``'s. Only numpy is imported here; pandas (heavy, and
only for notebooks and CSV) is imported inside ``frame()``.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from .errors import FormatError
from .model import number_to_json

RESULT_SCHEMA = "golden.result/1"


class Verdict(StrEnum):
    """Per-metric verdict. ``missing``: the golden has the metric, the run does not;
    ``new``: the run has a metric the golden lacks; ``skipped``: reported, not judged
    (e.g. iteration-time on another platform)."""

    PASS = "pass"
    FAIL = "fail"
    MISSING = "missing"
    NEW = "new"
    SKIPPED = "skipped"


class StepStatus(StrEnum):
    """What happened at one step. Every aligned step gets exactly one status."""

    PASS = "pass"              # both sides have a value, within tolerance
    FAIL = "fail"              # both sides have a value, out of tolerance
    MISSING = "missing"        # golden has a value, the run has no such step
    EXTRA = "extra"            # the run has a value at a step the golden lacks
    NAN_ACTUAL = "nan_actual"  # golden has a value, the run wrote NaN
    NAN_GOLDEN = "nan_golden"  # the run has a value, the golden holds NaN
    EMPTY = "empty"            # neither side has a value (NaN/absent on both)
    SKIPPED = "skipped"        # outside the judged window (warm-up, window, first-step rules)
    REDUCED = "reduced"        # summary mode: fed into the window reduction, not judged alone


STEP_STATUSES: tuple[StepStatus, ...] = tuple(StepStatus)
STEP_STATUS_CODE: dict[StepStatus, int] = {s: i for i, s in enumerate(STEP_STATUSES)}
_SCAN_FROM = 1 << 16  # status codes counted by scans above this many steps, by bincount below
STEP_STATUS_NAMES = np.asarray([s.value for s in STEP_STATUSES], dtype=object)


# ---------------------------------------------------------------- JSON number helpers

def _num_out(value: float | None) -> Any:
    """Full precision out; non-finite as the strings Megatron uses; None stays null."""
    return None if value is None else number_to_json(float(value))


_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _num_in(raw: Any, key: str) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise FormatError(f"expected a number, got {raw!r}", key=key)
    if isinstance(raw, (int, float)):
        return float(raw)
    if isinstance(raw, str) and raw in _NONFINITE:
        return _NONFINITE[raw]
    raise FormatError(f"expected a number, got {raw!r}", key=key)


@contextmanager
def _reading(key: str | None = None, *, also: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """What a malformed result document raises while a section is rebuilt, as one FormatError
    naming the key: a missing field, or the first line of the value's complaint."""
    complaints: tuple[type[Exception], ...] = (ValueError, TypeError, *also)
    try:
        yield
    except KeyError as exc:
        raise FormatError(f"missing field {exc.args[0]!r}", key=key) from None
    except complaints as exc:
        raise FormatError(str(exc).splitlines()[0], key=key) from None


def _optional_text(doc: dict[str, Any], key: str) -> str | None:
    """Names the reports join and print: text or absent, never a list or a number."""
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise FormatError(f"expected a string, got {type(value).__name__}", key=key)
    return value


def _optional_bool(doc: dict[str, Any], name: str, key: str) -> bool | None:
    """A field later versions added: absent (an older result) reads as None."""
    value = doc.get(name)
    if value is not None and not isinstance(value, bool):
        raise FormatError(f"expected true, false or null, got {value!r}", key=key)
    return value


def _array_out(values: np.ndarray) -> list[Any]:
    finite = np.isfinite(values)
    if finite.all():
        return values.tolist()
    return [v if ok else _num_out(v) for v, ok in zip(values.tolist(), finite.tolist(), strict=True)]


def _array_in(raw: Any, key: str) -> np.ndarray:
    if not isinstance(raw, list):
        raise FormatError("expected a list", key=key)
    return np.asarray([math.nan if v is None else _num_in(v, key) for v in raw], dtype=np.float64)


# ---------------------------------------------------------------- per-step rows

@dataclass(frozen=True, eq=False)
class StepTable:
    """Aligned per-step rows of one metric: the union of both sides' steps.

    ``golden``/``actual`` hold NaN where a side has no value; ``status`` holds codes into
    ``STEP_STATUSES`` (int8, so a million steps stay a few MB).
    """

    step: np.ndarray    # int64
    golden: np.ndarray  # float64
    actual: np.ndarray  # float64
    status: np.ndarray  # int8 codes into STEP_STATUSES

    def __post_init__(self) -> None:
        n = np.asarray(self.step).shape
        for name in ("golden", "actual", "status"):
            if np.asarray(getattr(self, name)).shape != n:
                raise ValueError(f"StepTable.{name} must have the shape of step {n}")

    def __len__(self) -> int:
        return int(self.step.size)

    def statuses(self) -> np.ndarray:
        """Status names per step (object array of strings)."""
        return STEP_STATUS_NAMES[self.status]

    def counts(self) -> dict[str, int]:
        codes = np.asarray(self.status, dtype=np.int8)
        if codes.size > _SCAN_FROM:  # a scan per status: no int64 copy of a million codes
            found = [int(np.count_nonzero(codes == i)) for i in range(len(STEP_STATUSES))]
        else:
            found = np.bincount(codes.astype(np.intp), minlength=len(STEP_STATUSES)).tolist()
        return {s.value: n for s, n in zip(STEP_STATUSES, found, strict=True) if n}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StepTable):
            return NotImplemented
        return (np.array_equal(self.step, other.step)
                and self.golden.tobytes() == other.golden.tobytes()
                and self.actual.tobytes() == other.actual.tobytes()
                and np.array_equal(self.status, other.status))

    __hash__ = None  # type: ignore[assignment]  # equal by value, mutable arrays inside: unhashable

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step.tolist(), "golden": _array_out(self.golden),
                "actual": _array_out(self.actual),
                "status": self.statuses().tolist()}

    @classmethod
    def from_json(cls, doc: Any, key: str = "steps") -> StepTable:
        if not isinstance(doc, dict):
            raise FormatError("expected an object of per-step arrays", key=key)
        with _reading(key):
            codes = [STEP_STATUS_CODE[StepStatus(s)] for s in doc["status"]]
            return cls(step=np.asarray(doc["step"], dtype=np.int64),
                       golden=_array_in(doc["golden"], f"{key}.golden"),
                       actual=_array_in(doc["actual"], f"{key}.actual"),
                       status=np.asarray(codes, dtype=np.int8))


# ---------------------------------------------------------------- verdicts

MAX_SAMPLES = 50  # failing samples a verdict lists (the first ones by step); failing_steps counts them all


@dataclass(frozen=True)
class Sample:
    """One failing sample of a per-step rule (Megatron PR #7321): its step, both values as compared,
    the absolute error |actual − golden|, the relative error (absolute / |golden|; None where it is
    undefined: a golden of 0 with a nonzero error, or a side without a finite value), the tolerance
    at that step, and its step status."""

    step: int
    golden: float | None
    actual: float | None
    abs_error: float | None
    rel_error: float | None
    tolerance: float | None
    status: str

    def why_no_relative(self) -> str:
        """Why the relative error is undefined ('' when it is defined), made explicit for a reader."""
        if self.rel_error is not None:
            return ""
        if self.abs_error is None:
            return "no finite value on both sides"
        return "golden is 0"

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "golden": _num_out(self.golden), "actual": _num_out(self.actual),
                "abs_error": _num_out(self.abs_error), "rel_error": _num_out(self.rel_error),
                "tolerance": _num_out(self.tolerance), "status": self.status}

    @classmethod
    def from_json(cls, doc: Any, key: str) -> Sample:
        with _reading(key):
            return cls(step=int(doc["step"]), status=str(doc["status"]),
                       **{f: _num_in(doc.get(f), f"{key}.{f}")
                          for f in ("golden", "actual", "abs_error", "rel_error", "tolerance")})

@dataclass(frozen=True)
class Rule:
    """The policy that was applied: its mode, its parameters (JSON-safe), and a human line."""

    mode: str                      # exact | approx | summary | band | ...
    params: Mapping[str, Any]      # e.g. {"rtol": 0.05, "atol": 0.0, "direction": "both", ...}
    text: str                      # e.g. "approx |a-g| <= 0.05*|g| per step, <= 0 failing steps"

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "params": dict(self.params), "text": self.text}

    @classmethod
    def from_json(cls, doc: Any) -> Rule:
        return cls(mode=str(doc["mode"]), params=dict(doc.get("params") or {}), text=str(doc["text"]))


@dataclass(frozen=True)
class MetricVerdict:
    """One metric of one phase against its reference, with the reason."""

    metric: str
    phase: int
    verdict: Verdict
    passed: bool                   # whether this verdict lets the comparison pass
    rule: Rule
    explanation: str               # one line: why this verdict
    worst_step: int | None = None  # the step with the largest tolerance violation (or |Δ|)
    golden_value: float | None = None  # at worst_step (summary mode: the reduced golden)
    actual_value: float | None = None
    delta: float | None = None     # actual - golden
    delta_pct: float | None = None  # 100 * delta / |golden|
    mean_rel_diff: float | None = None  # signed mean of (actual-golden)/|golden| over compared steps
    failing_steps: int = 0
    allowed_failing_steps: int = 0
    total_steps: int = 0           # steps judged (or reduced) for this metric
    step_counts: Mapping[str, int] = field(default_factory=dict)  # StepStatus value -> count
    steps: StepTable | None = None
    # Whether the values met the rule. It equals ``passed`` for a judged metric; for a report-only
    # one (SKIPPED, always passed) it says whether it was out of tolerance, which a report must
    # name. None: no rule was evaluated (missing, new, no policy, nothing in the window).
    within_rule: bool | None = None
    samples: tuple[Sample, ...] = ()
    sample_decimals: int | None = None

    @property
    def report_only_out_of_tolerance(self) -> bool:
        """Reported, not judged, and outside its rule: passes, but a reader must see it."""
        return self.verdict == Verdict.SKIPPED and self.within_rule is False

    _FLOATS = ("golden_value", "actual_value", "delta", "delta_pct", "mean_rel_diff")

    def to_json(self, *, steps: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "metric": self.metric, "phase": self.phase, "verdict": self.verdict.value,
            "passed": self.passed, "rule": self.rule.to_json(), "explanation": self.explanation,
            "worst_step": self.worst_step,
        }
        for name in self._FLOATS:
            doc[name] = _num_out(getattr(self, name))
        doc.update(failing_steps=self.failing_steps, allowed_failing_steps=self.allowed_failing_steps,
                   total_steps=self.total_steps, step_counts=dict(self.step_counts),
                   within_rule=self.within_rule)
        doc["steps"] = self.steps.to_json() if (steps and self.steps is not None) else None
        if self.samples:
            doc["samples"] = [s.to_json() for s in self.samples]
            doc["sample_decimals"] = self.sample_decimals
        return doc

    @classmethod
    def from_json(cls, doc: Any, key: str = "metric") -> MetricVerdict:
        if not isinstance(doc, dict):
            raise FormatError("expected a metric verdict object", key=key)
        with _reading(key, also=(AttributeError,)):
            floats = {name: _num_in(doc.get(name), f"{key}.{name}") for name in cls._FLOATS}
            return cls(metric=str(doc["metric"]), phase=int(doc["phase"]),
                       verdict=Verdict(doc["verdict"]), passed=bool(doc["passed"]),
                       rule=Rule.from_json(doc["rule"]), explanation=str(doc["explanation"]),
                       worst_step=None if doc.get("worst_step") is None else int(doc["worst_step"]),
                       failing_steps=int(doc.get("failing_steps", 0)),
                       allowed_failing_steps=int(doc.get("allowed_failing_steps", 0)),
                       total_steps=int(doc.get("total_steps", 0)),
                       step_counts={str(k): int(v) for k, v in (doc.get("step_counts") or {}).items()},
                       steps=None if doc.get("steps") is None else StepTable.from_json(doc["steps"], f"{key}.steps"),
                       within_rule=_optional_bool(doc, "within_rule", f"{key}.within_rule"),
                       samples=tuple(Sample.from_json(s, f"{key}.samples[{i}]")
                                     for i, s in enumerate(doc.get("samples") or ())),
                       sample_decimals=None if doc.get("sample_decimals") is None else int(doc["sample_decimals"]),
                       **floats)


@dataclass(frozen=True)
class PhaseResult:
    """All metrics of one phase (1 = from scratch, 2 = resumed) against that phase's golden."""

    phase: int
    verdict: Verdict               # PASS or FAIL
    metrics: tuple[MetricVerdict, ...]
    reference: str | None = None   # where the phase's golden came from (file, version)

    def to_json(self, *, steps: bool = True) -> dict[str, Any]:
        return {"phase": self.phase, "verdict": self.verdict.value, "reference": self.reference,
                "metrics": [m.to_json(steps=steps) for m in self.metrics]}

    @classmethod
    def from_json(cls, doc: Any, key: str = "phases") -> PhaseResult:
        with _reading(key):
            return cls(phase=int(doc["phase"]), verdict=Verdict(doc["verdict"]),
                       reference=doc.get("reference"),
                       metrics=tuple(MetricVerdict.from_json(m, f"{key}.metrics[{i}]")
                                     for i, m in enumerate(doc["metrics"])))


@dataclass(frozen=True)
class ResumeCheck:
    """Phase 2 (resumed from a checkpoint) against phase 1 on their overlapping steps.

    Its own verdict, separate from the golden comparison: a resume that diverges from the
    uninterrupted run is a checkpointing bug even when both are within the golden's tolerance.
    ``verdict`` is PASS, FAIL or SKIPPED (no phase 2 / no overlap); ``metrics[i].phase`` is 2.
    """

    verdict: Verdict
    explanation: str
    overlapping_steps: int = 0     # steps present in both phases, over all metrics' grids
    resumed_from: int | None = None
    metrics: tuple[MetricVerdict, ...] = ()

    @property
    def passed(self) -> bool:
        return self.verdict != Verdict.FAIL

    def to_json(self, *, steps: bool = True) -> dict[str, Any]:
        return {"verdict": self.verdict.value, "explanation": self.explanation,
                "overlapping_steps": self.overlapping_steps, "resumed_from": self.resumed_from,
                "metrics": [m.to_json(steps=steps) for m in self.metrics]}

    @classmethod
    def from_json(cls, doc: Any) -> ResumeCheck:
        with _reading("resume"):
            return cls(verdict=Verdict(doc["verdict"]), explanation=str(doc["explanation"]),
                       overlapping_steps=int(doc.get("overlapping_steps", 0)),
                       resumed_from=doc.get("resumed_from"),
                       metrics=tuple(MetricVerdict.from_json(m, f"resume.metrics[{i}]")
                                     for i, m in enumerate(doc.get("metrics") or ())))


@dataclass(frozen=True)
class GridChange:
    """A metric whose step grid differs between reference and candidate."""

    metric: str
    phase: int
    reference: Mapping[str, Any]   # {"start_step", "end_step", "step_interval", "count"}
    candidate: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "phase": self.phase,
                "reference": dict(self.reference), "candidate": dict(self.candidate)}


@dataclass(frozen=True)
class ArgChange:
    """A model/config argument recorded with the run that differs from the golden's."""

    name: str                      # deepdiff-readable path, e.g. "hidden_size" or "model.tp"
    change: str                    # "changed" | "added" | "removed" | "type_changed"
    reference: Any = None
    candidate: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "change": self.change,
                "reference": self.reference, "candidate": self.candidate}


@dataclass(frozen=True)
class StructuralDrift:
    """What changed in the *shape* of the data, not its values (informational section).

    It does not decide the verdict itself — a removed metric already fails as ``missing`` —
    but a changed ``hidden_size`` explains a failing loss better than the loss does.
    """

    metrics_added: tuple[str, ...] = ()     # metric names the candidate has and the reference lacks
    metrics_removed: tuple[str, ...] = ()
    grid_changes: tuple[GridChange, ...] = ()
    arg_changes: tuple[ArgChange, ...] = ()
    args_compared: bool = False             # False when either side recorded no model args
    notes: tuple[str, ...] = ()

    @property
    def has_drift(self) -> bool:
        return bool(self.metrics_added or self.metrics_removed or self.grid_changes or self.arg_changes)

    def to_json(self) -> dict[str, Any]:
        return {"metrics_added": list(self.metrics_added), "metrics_removed": list(self.metrics_removed),
                "grid_changes": [g.to_json() for g in self.grid_changes],
                "arg_changes": [a.to_json() for a in self.arg_changes],
                "args_compared": self.args_compared, "notes": list(self.notes)}

    @classmethod
    def from_json(cls, doc: Any) -> StructuralDrift:
        try:
            return cls(metrics_added=tuple(doc.get("metrics_added") or ()),
                       metrics_removed=tuple(doc.get("metrics_removed") or ()),
                       grid_changes=tuple(GridChange(g["metric"], int(g["phase"]), dict(g["reference"]),
                                                     dict(g["candidate"]))
                                          for g in doc.get("grid_changes") or ()),
                       arg_changes=tuple(ArgChange(a["name"], a["change"], a.get("reference"), a.get("candidate"))
                                         for a in doc.get("arg_changes") or ()),
                       args_compared=bool(doc.get("args_compared", False)),
                       notes=tuple(doc.get("notes") or ()))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FormatError(f"malformed drift section ({exc})", key="drift") from None


@dataclass(frozen=True)
class FingerprintCheck:
    """Which regime applied and why: exact when both fingerprints are recorded and equal."""

    reference: str | None          # the golden's fingerprint (ledger entry / provenance)
    candidate: str | None          # the run's fingerprint
    exact_applied: bool
    reason: str                    # e.g. "fingerprints equal", "golden has no fingerprint", "forced --approx"
    differing_fields: tuple[str, ...] = ()  # e.g. ("versions.torch", "device")
    forced: str | None = None      # "exact" | "approx" when the user forced it

    def to_json(self) -> dict[str, Any]:
        return {"reference": self.reference, "candidate": self.candidate, "exact_applied": self.exact_applied,
                "reason": self.reason, "differing_fields": list(self.differing_fields), "forced": self.forced}

    @classmethod
    def from_json(cls, doc: Any) -> FingerprintCheck:
        try:
            return cls(reference=doc.get("reference"), candidate=doc.get("candidate"),
                       exact_applied=bool(doc["exact_applied"]), reason=str(doc["reason"]),
                       differing_fields=tuple(doc.get("differing_fields") or ()), forced=doc.get("forced"))
        except (KeyError, TypeError, AttributeError) as exc:
            raise FormatError(f"malformed fingerprint section ({exc})", key="fingerprint") from None


# ---------------------------------------------------------------- the whole result

RESUME_CHECK = "resume check"


def check_name(m: MetricVerdict) -> str:
    """A golden-comparison check by name: ``phase 1: lm loss``."""
    return f"phase {m.phase}: {m.metric}"


@dataclass(frozen=True)
class ComparisonResult:
    """Everything one comparison found. ``verdict`` is FAIL when any metric verdict did not
    pass or the resume check failed; ``exit_code`` maps it to 0/1."""

    case: str | None
    env: str | None
    platform: str | None
    reference: str                 # what was compared against: golden file, version, artifact
    candidate: str                 # what was compared: run id / artifact path / golden file
    policy: str                    # "default", "megatron", or the policy file
    verdict: Verdict               # PASS or FAIL
    fingerprint: FingerprintCheck
    phases: tuple[PhaseResult, ...]
    drift: StructuralDrift = field(default_factory=StructuralDrift)
    resume: ResumeCheck | None = None
    warnings: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()  # where each case-made choice came from (a Megatron case's model_config.yaml)
    # failing checks that fail on the committed goldens themselves (e.g. "resume check", "phase 1: lm loss"):
    # defects of the tree, not regressions of the candidate; the verdict stays what the rules say
    preexisting: tuple[str, ...] = ()

    # --- conveniences for renderers
    @property
    def exact_applied(self) -> bool:
        return self.fingerprint.exact_applied

    @property
    def passed(self) -> bool:
        return self.verdict == Verdict.PASS

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def failing_checks(self) -> tuple[str, ...]:
        """The name of each failing check, as ``preexisting`` names them."""
        checks = [check_name(m) for m in self.metric_verdicts() if not m.passed]
        if self.resume is not None and not self.resume.passed:
            checks.append(RESUME_CHECK)
        return tuple(checks)

    @property
    def regression(self) -> bool:
        """Failed on a check the committed goldens themselves pass: the candidate's own failure."""
        return not self.passed and not set(self.failing_checks()) <= set(self.preexisting)

    def metric_verdicts(self) -> tuple[MetricVerdict, ...]:
        """Every golden-comparison verdict, phase by phase (not the resume check's)."""
        return tuple(m for p in self.phases for m in p.metrics)

    def failures(self) -> tuple[MetricVerdict, ...]:
        """Verdicts that made the result fail, the resume check's included."""
        resume = self.resume.metrics if self.resume else ()
        return tuple(m for m in (*self.metric_verdicts(), *resume) if not m.passed)

    def frame(self) -> Any:
        """One pandas row per (check, phase, metric, step): for notebooks and CSV export.

        Columns: check ("golden" | "resume"), phase, metric, step, golden, actual, delta,
        rel_diff (signed, relative to |golden|), status. Full float64 precision.
        """
        import pandas as pd

        parts = []
        for check, verdicts in (("golden", self.metric_verdicts()),
                                ("resume", self.resume.metrics if self.resume else ())):
            for m in verdicts:
                if m.steps is None or len(m.steps) == 0:
                    continue
                t = m.steps
                delta = t.actual - t.golden
                with np.errstate(divide="ignore", invalid="ignore"):
                    rel = np.where(t.golden != 0, delta / np.abs(t.golden),
                                   np.where(delta == 0, 0.0, np.nan))
                n = len(t)
                parts.append(pd.DataFrame({
                    "check": pd.Categorical([check] * n, categories=["golden", "resume"]),
                    "phase": np.full(n, m.phase, dtype=np.int64),
                    "metric": pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[m.metric]),
                    "step": t.step, "golden": t.golden, "actual": t.actual,
                    "delta": delta, "rel_diff": rel,
                    "status": pd.Categorical.from_codes(t.status, categories=[s.value for s in STEP_STATUSES]),
                }))
        columns = ["check", "phase", "metric", "step", "golden", "actual", "delta", "rel_diff", "status"]
        if not parts:
            return pd.DataFrame({c: [] for c in columns})
        frame = pd.concat(parts, ignore_index=True)
        frame["metric"] = frame["metric"].astype(str)
        frame["check"] = frame["check"].astype(str)
        frame["status"] = frame["status"].astype(str)
        return frame[columns]

    def to_json(self, *, steps: bool = True) -> dict[str, Any]:
        """A JSON-safe dict (no NaN floats; "nan"/"inf" strings), schema ``golden.result/1``."""
        return {"schema": RESULT_SCHEMA, "case": self.case, "env": self.env, "platform": self.platform,
                "reference": self.reference, "candidate": self.candidate, "policy": self.policy,
                "verdict": self.verdict.value, "fingerprint": self.fingerprint.to_json(),
                "phases": [p.to_json(steps=steps) for p in self.phases],
                "resume": None if self.resume is None else self.resume.to_json(steps=steps),
                "drift": self.drift.to_json(), "warnings": list(self.warnings), "choices": list(self.choices),
                "preexisting": list(self.preexisting)}

    @classmethod
    def from_json(cls, doc: Any) -> ComparisonResult:
        """Rebuild a result from ``to_json()`` output; FormatError names the bad key."""
        if not isinstance(doc, dict):
            raise FormatError("expected a comparison result object")
        if doc.get("schema") != RESULT_SCHEMA:
            raise FormatError(f"unsupported schema {doc.get('schema')!r} (this version reads {RESULT_SCHEMA!r})",
                              key="schema")
        with _reading():
            return cls(case=_optional_text(doc, "case"), env=_optional_text(doc, "env"),
                       platform=_optional_text(doc, "platform"),
                       reference=str(doc["reference"]), candidate=str(doc["candidate"]),
                       policy=str(doc["policy"]), verdict=Verdict(doc["verdict"]),
                       fingerprint=FingerprintCheck.from_json(doc["fingerprint"]),
                       phases=tuple(PhaseResult.from_json(p, f"phases[{i}]") for i, p in enumerate(doc["phases"])),
                       resume=None if doc.get("resume") is None else ResumeCheck.from_json(doc["resume"]),
                       drift=StructuralDrift.from_json(doc.get("drift") or {}),
                       warnings=tuple(str(w) for w in doc.get("warnings") or ()),
                       choices=tuple(str(c) for c in doc.get("choices") or ()),
                       preexisting=tuple(str(c) for c in doc.get("preexisting") or ()))
