"""Build real ``goldens.result`` objects for the report tests (no engine needed).

The numbers are chosen so each test can state its expectations by hand.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from goldens.result import (STEP_STATUS_CODE, ArgChange, ComparisonResult, FingerprintCheck, MetricVerdict,
                            PhaseResult, ResumeCheck, Rule, StepStatus, StepTable, StructuralDrift, Verdict)

APPROX_5PCT = Rule("approx", {"rtol": 0.05, "atol": 0.0, "direction": "both"},
                   "approx |a-g| <= 0.05*|g| per step, <= 0 failing steps")
EXACT = Rule("exact", {}, "exact: every step bit-identical")


def steps_table(golden, actual, statuses) -> StepTable:
    golden = np.asarray(golden, dtype=np.float64)
    return StepTable(step=np.arange(1, golden.size + 1, dtype=np.int64), golden=golden,
                     actual=np.asarray(actual, dtype=np.float64),
                     status=np.asarray([STEP_STATUS_CODE[StepStatus(s)] for s in statuses], dtype=np.int8))


def loss_verdict(metric: str = "lm loss", *, fail: bool = False, phase: int = 1, rule: Rule = APPROX_5PCT) -> MetricVerdict:
    """Four steps of a loss; when ``fail``, step 3 is 10 % high (outside the 5 % band)."""
    golden = [10.0, 9.0, 8.0, 7.0]
    actual = [10.0, 9.0, 8.8 if fail else 8.0, 7.0]
    statuses = ["pass", "pass", "fail" if fail else "pass", "pass"]
    mean_rel = (0.8 / 8.0) / 4 if fail else 0.0
    return MetricVerdict(
        metric=metric, phase=phase, verdict=Verdict.FAIL if fail else Verdict.PASS, passed=not fail, rule=rule,
        explanation=(f"{metric}: step 3 actual 8.8 vs golden 8.0 (Δ +10%) exceeds rtol 0.05; 1 failing step, 0 allowed"
                     if fail else f"{metric}: all 4 steps within rtol 0.05"),
        worst_step=3, golden_value=8.0, actual_value=8.8 if fail else 8.0,
        delta=0.8000000000000007 if fail else 0.0, delta_pct=10.000000000000009 if fail else 0.0,
        mean_rel_diff=mean_rel, failing_steps=1 if fail else 0, allowed_failing_steps=0, total_steps=4,
        step_counts={"pass": 3, "fail": 1} if fail else {"pass": 4},
        steps=steps_table(golden, actual, statuses))


def result(case: str = "bert_tp2_pp2", *, fail: bool = False, metrics: tuple[str, ...] = ("lm loss", "num-zeros"),
           resume: Verdict | None = Verdict.PASS, exact: bool = False, with_steps: bool = True) -> ComparisonResult:
    """One case; when ``fail`` its first metric fails."""
    verdicts = []
    for i, name in enumerate(metrics):
        v = loss_verdict(name, fail=fail and i == 0)
        if not with_steps:
            v = replace(v, steps=None)
        verdicts.append(v)
    resume_check = None
    if resume is not None:
        resume_metric = loss_verdict("lm loss", fail=resume == Verdict.FAIL, phase=2, rule=EXACT)
        resume_check = ResumeCheck(
            verdict=resume, overlapping_steps=4, resumed_from=2,
            explanation=("phase 2 differs from phase 1 at step 3 (8.8 vs 8.0)" if resume == Verdict.FAIL
                         else "phase 2 equals phase 1 on all 4 overlapping steps"),
            metrics=(resume_metric,) if with_steps else ())
    fingerprint = (FingerprintCheck("abc", "abc", True, "fingerprints equal") if exact else
                   FingerprintCheck("abc", "def", False, "fingerprints differ", ("versions.torch", "device")))
    failed = fail or resume == Verdict.FAIL
    return ComparisonResult(
        case=case, env="dev", platform="cpu", reference=f"cases/{case}/golden_values_dev_cpu.json",
        candidate=f"runs/{case}-1/artifact.json", policy="default",
        verdict=Verdict.FAIL if failed else Verdict.PASS, fingerprint=fingerprint,
        phases=(PhaseResult(1, Verdict.FAIL if fail else Verdict.PASS, tuple(verdicts),
                            reference=f"cases/{case}/golden_values_dev_cpu.json"),),
        drift=StructuralDrift(arg_changes=(ArgChange("hidden_size", "changed", 64, 128),), args_compared=True),
        resume=resume_check, warnings=("iteration-time compared on another platform: report only",))
