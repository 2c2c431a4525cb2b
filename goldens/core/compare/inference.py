"""Inference goldens (keyed by request id) against a run's, as Megatron's inference test judges them.

The policy's ``inference`` rules (data: ``goldens.core.policy.presets.INFERENCE_RULES``) say how each field is
checked (``goldens.core.modes.inference.INFERENCE_CHECKS``); the checked fields are a Megatron case's
METRICS, else every field that has a rule. In order: the run must hold exactly the golden's request
ids; each run-level field the golden has (throughput, peak memory) is checked once; each
request-level field every request whose golden record has it; a request no checked field applies to
fails ("No test performed"). One ``MetricVerdict`` per check, failing requests counted as failing
steps. There is no exact/approximate regime: Megatron's inference test takes no such flag.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import PolicyError
from ..modes.inference import INFERENCE_CHECKS, Checked, InferenceRule, absent
from ..policy.schema import PolicySet
from ..result import ComparisonResult, FingerprintCheck, MetricVerdict, PhaseResult, Rule, StructuralDrift, Verdict
from .sides import Side

REQUEST_IDS = "request ids"
NO_CHECK = "requests without a check"


def compare_inference(reference: Side, candidate: Side, policies: PolicySet, *, force: str | None = None,
                      case: str | None = None, env: str | None = None, platform: str | None = None,
                      notes: tuple[str, ...] = ()) -> ComparisonResult:
    """The whole inference comparison (both sides inference goldens)."""
    rules = policies.inference
    if rules is None:
        raise PolicyError(f"policy {policies.name!r} has no inference rules")
    if reference.inference is None or candidate.inference is None:
        which = "reference" if reference.inference is None else "candidate"
        raise PolicyError(f"an inference golden can only be compared with another: the {which} is a training golden")
    warnings = list(notes)
    reason = "none: Megatron's inference test has no exact/approximate regime"
    if force is not None:
        warnings.append(f"--{force} has no effect on an inference golden")
    fingerprint = FingerprintCheck(reference.fingerprint, candidate.fingerprint, False, reason)
    verdicts: list[MetricVerdict] = []
    if policies.golden_phases != ():
        checked = policies.inference_checked
        if checked is None:
            checked = tuple(name for name, rule in rules.fields.items() if rule.check != "refused")
        verdicts = _judge(reference.inference.entries, candidate.inference.entries, rules.run_level,
                          rules.fields, tuple(dict.fromkeys(checked)), policies)
    failed = any(not v.passed for v in verdicts)
    verdict = Verdict.FAIL if failed else Verdict.PASS
    phases = (PhaseResult(1, verdict, tuple(verdicts), reference.label),) if verdicts else ()
    return ComparisonResult(case=case, env=env, platform=platform, reference=reference.label,
                            candidate=candidate.label, policy=policies.label, verdict=verdict,
                            fingerprint=fingerprint, phases=phases,
                            drift=StructuralDrift(notes=("inference golden: compared request by request",)),
                            warnings=tuple(warnings), choices=policies.choices)


def _judge(golden: Mapping[str, Any], run: Mapping[str, Any], run_level: tuple[str, ...],
           fields: Mapping[str, InferenceRule], checked: tuple[str, ...], policies: PolicySet) -> list[MetricVerdict]:
    if not checked:
        return []
    origin = policies.required_origin if policies.inference_checked is not None else "every field with a rule"
    top = set(run_level)
    golden_ids = [k for k in golden if k not in top]
    run_ids = [k for k in run if k not in top]
    verdicts = []
    lacking = [k for k in golden_ids if k not in run]
    extra = [k for k in run_ids if k not in golden]
    ids_rule = Rule("equal", {}, "the run holds exactly the golden's request ids (Megatron indexes the run by "
                                 "each golden id and asserts no other)")
    if lacking or extra:
        parts = [f"the run lacks {_ids(lacking)}" if lacking else "", f"the run has {_ids(extra)} the golden lacks"
                 if extra else ""]
        verdicts.append(_verdict(REQUEST_IDS, ids_rule, "; ".join(p for p in parts if p), len(lacking) + len(extra),
                                 len(golden_ids)))
    judged_ids = [k for k in golden_ids if k in run]
    covered: set[str] = set()
    for name in checked:
        rule = fields.get(name)
        if rule is None:
            continue  # a listed name no check reads: Megatron ignores it too
        spec = INFERENCE_CHECKS[rule.check]
        text = f"{rule.describe()} — {policies.name}: inference[{name!r}] ({origin})"
        rule_out = Rule(rule.check, dict(rule.params), text)
        if spec.scope == "run":
            if rule.check == "refused":
                verdicts.append(_verdict(name, rule_out, spec.evaluate(None, None, name, rule.params).failure, 1, 1))
            elif name in golden:
                outcome = spec.evaluate(golden[name], run.get(name, absent()), name, rule.params)
                shown = (f"median {outcome.actual!r} against the golden's {outcome.golden!r}: within the rule"
                         if outcome.golden is not None and outcome.actual is not None else None)
                verdicts.append(_verdict(name, rule_out, outcome.failure, int(outcome.failure is not None), 1,
                                         outcome, passed_text=shown))
            else:
                verdicts.append(MetricVerdict(metric=name, phase=1, verdict=Verdict.SKIPPED, passed=True, rule=rule_out,
                                              explanation=f"not checked: the golden has no {name!r}"))
            continue
        failures: list[tuple[str, str]] = []
        total = 0
        for rid in judged_ids:
            record = golden[rid]
            if not isinstance(record, Mapping) or name not in record:
                continue
            total += 1
            covered.add(rid)
            outcome = spec.evaluate(record, run[rid], name, rule.params)
            if outcome.failure is not None:
                failures.append((rid, outcome.failure))
        if not total:
            verdicts.append(MetricVerdict(metric=name, phase=1, verdict=Verdict.SKIPPED, passed=True, rule=rule_out,
                                          explanation=f"not checked: no golden request has {name!r}"))
            continue
        if failures:
            rid, why = failures[0]
            summary = f"{len(failures)} of {total} requests differ; request {rid}: {why}"
        else:
            summary = f"all {total} requests within the rule"
        verdicts.append(_verdict(name, rule_out, summary if failures else None, len(failures), total,
                                 worst=failures[0][0] if failures else None, passed_text=summary))
    unchecked = [rid for rid in judged_ids if rid not in covered]
    if unchecked:
        rule_out = Rule("none", {}, f"each request needs one checked field ({origin})")
        verdicts.append(_verdict(NO_CHECK, rule_out, f"no checked field applies to {_ids(unchecked)} (Megatron: "
                                                     f"\"No test performed\")", len(unchecked), len(judged_ids)))
    return verdicts


def _ids(ids: list[str]) -> str:
    shown = ", ".join(ids[:8]) + (" …" if len(ids) > 8 else "")
    return f"request{'s' if len(ids) != 1 else ''} {shown}"


def _verdict(name: str, rule: Rule, failure: str | None, failing: int, total: int, outcome: Checked | None = None,
             *, worst: str | None = None, passed_text: str | None = None) -> MetricVerdict:
    passed = failure is None
    explanation = (passed_text or "within the rule") if failure is None else failure
    golden = outcome.golden if outcome is not None and isinstance(outcome.golden, float) else None
    actual = outcome.actual if outcome is not None and isinstance(outcome.actual, float) else None
    delta = None if golden is None or actual is None else actual - golden
    return MetricVerdict(metric=name, phase=1, verdict=Verdict.PASS if passed else Verdict.FAIL, passed=passed,
                         rule=rule, explanation=explanation,
                         worst_step=int(worst) if worst and worst.isdigit() else None,
                         golden_value=golden, actual_value=actual, delta=delta,
                         delta_pct=None if delta is None or not golden else 100.0 * delta / abs(golden),
                         failing_steps=failing, total_steps=total)
