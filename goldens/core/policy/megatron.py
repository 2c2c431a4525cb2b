"""The megatron preset applied as Megatron's CI applies it: to one case's model_config.yaml
(``with_megatron_case``) and as the tree's generation of Megatron's conventions judges
(``with_generation``). Both are made once per preset and case (or row) in a bulk run."""
from __future__ import annotations

from dataclasses import replace

from ..errors import GoldenError
from ..megatron import INFERENCE, REGULAR, RESUME, Detection, MegatronCase
from .schema import CaseRegime, PolicySet


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
    if case.unsupported:
        raise GoldenError(case.unsupported)
    listed = {m for m in case.metrics if isinstance(m, str)}
    metrics = {name: p if p.report_only == (name not in listed)
               else p.model_copy(update={"report_only": name not in listed}) for name, p in policies.metrics.items()}
    resume_after = None
    if RESUME in case.pipelines:
        if case.train_iters is None:
            raise GoldenError(f"{case.config}: MODEL_ARGS --train-iters is not a whole number (Megatron's resume "
                              "test cannot run)")
        resume_after = case.train_iters // 2
    resume = resume_after is not None
    return replace(
        policies, metrics=metrics, required=tuple(str(m) for m in case.metrics) if REGULAR in case.pipelines else (),
        required_origin=case.metrics_origin, regime=CaseRegime(not case.allow_nondeterministic, case.regime_origin),
        golden_phases=(1,) if REGULAR in case.pipelines or INFERENCE in case.pipelines else (),
        resume="as_golden" if resume else "none", resume_after=resume_after, resume_required=resume,
        inference_checked=tuple(str(m) for m in case.metrics) if INFERENCE in case.pipelines else None,
        choices=case.choices)
