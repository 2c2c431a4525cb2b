"""The comparison engine: two sides (golden sets, artifacts, versions) + policies → a frozen result.

Pure: numpy arrays and dataclasses in, ``ComparisonResult`` out; no files, no printing, no
asserts. The reference is the first side (the golden, or ``REFERENCE`` in ``golden diff REF
CAND``). A reference read from a store may carry its approved history (``Side.history``): step
time is then judged against it (``history.judge_by_history``).

Modules: ``sides`` (what is compared), ``regime`` (exact or approximate, same platform or not),
``engine`` (one metric, one phase), ``history`` (step time against approved goldens),
``resume`` (phase 2 against phase 1 of one run), ``drift`` (what changed in the shape of the data),
``inference`` (goldens keyed by request id); ``compare`` below puts them together.
"""
from __future__ import annotations

from ..align import Aligned, align
from ..modes.common import NOTHING_TO_JUDGE, Context, Outcome
from ..policy.schema import PolicySet
from ..result import ComparisonResult, Verdict
from .drift import structural_drift
from .engine import compare_metric, compare_phase, effective_policy, mean_relative_diff
from .inference import compare_inference
from .regime import decide_regime, flatten_mapping, other_platform_reason, same_platform
from .resume import resume_check
from .sides import Side, recorded_identity, side_from_artifact, side_from_goldens, side_from_inference

__all__ = ["Aligned", "Context", "Outcome", "Side", "align", "compare", "compare_metric", "compare_phase",
           "decide_regime", "effective_policy", "flatten_mapping", "mean_relative_diff", "recorded_identity",
           "resume_check", "side_from_artifact", "side_from_goldens", "side_from_inference"]


def compare(reference: Side, candidate: Side, policies: PolicySet, *, force: str | None = None,
            case: str | None = None, env: str | None = None, platform: str | None = None,
            check_resume: bool = True, notes: tuple[str, ...] = ()) -> ComparisonResult:
    """The whole comparison: regime, every phase, the resume check, structural drift. Inference
    goldens (keyed by request id) are compared request by request (``inference.compare_inference``)."""
    if reference.inference is not None or candidate.inference is not None:
        return compare_inference(reference, candidate, policies, force=force, case=case, env=env,
                                 platform=platform, notes=notes)
    regime = decide_regime(reference, candidate, force, policies.regime)
    warnings: list[str] = list(notes)
    phases = []
    plat = same_platform(reference, candidate, regime)
    judged = policies.golden_phases
    for number in sorted(set(reference.phases) | set(candidate.phases)):
        if judged is not None and number not in judged:
            if number in reference.phases and number != 1:
                warnings.append(f"the golden's phase {number} ({reference.phase_sources.get(number, 'its _2nd file')}) "
                                f"is not compared: Megatron's CI never reads it (the resume check compares the run's "
                                f"two phases)")
            continue
        if number not in reference.phases:
            # structural_drift notes which side lacks a phase; this says what that means here
            resume_covers = number == 2 and check_resume and 1 in candidate.phases
            warnings.append(f"the candidate's phase {number} is not compared"
                            + (" (the resume check covers it)" if resume_covers else ""))
            continue
        ctx = Context(phase=number, exact=regime.exact_applied, same_platform=plat,
                      exact_reason=regime.reason, other_platform_reason=other_platform_reason(reference, candidate))
        phases.append(compare_phase(reference.phases[number], candidate.phases.get(number, {}), policies, ctx,
                                    reference_scalars=reference.scalars if number == 1 else {},
                                    candidate_scalars=candidate.scalars if number == 1 else {},
                                    reference_label=reference.phase_sources.get(number, reference.label),
                                    history=None if reference.history is None else reference.history.get(number, {})))
    resume = resume_check(candidate, policies, regime.exact_applied) if check_resume else None
    drift = structural_drift(reference, candidate)
    failed = any(p.verdict == Verdict.FAIL for p in phases) or (resume is not None and not resume.passed)
    for p in phases:
        for v in p.metrics:
            if v.verdict == Verdict.SKIPPED and v.explanation.endswith(NOTHING_TO_JUDGE):
                warnings.append(f"phase {p.phase} {v.metric!r}: {v.explanation}")
    return ComparisonResult(case=case, env=env, platform=platform, reference=reference.label,
                            candidate=candidate.label, policy=policies.label,
                            verdict=Verdict.FAIL if failed else Verdict.PASS, fingerprint=regime,
                            phases=tuple(phases), drift=drift, resume=resume, warnings=tuple(warnings),
                            choices=policies.choices)


