"""judge → stage if failing (outside CI) → result: the one path ``golden diff``, ``golden check`` and
``golden judge`` share.

A run is judged against the store's golden for its target (case, env, platform) under the
policies that apply to that case; when the verdict is not a pass — or there is no golden yet — the
run is staged as the pending candidate for ``golden review`` (``should_stage`` is the rule, in one
place). In CI nothing is staged: ``goldens.approve.stage_candidate`` writes nothing there. What no
judgement may judge is refused here too: a CPU pre-flight, a run on the generated corpus against
Megatron's real-data golden, golden files Megatron's own reader refuses in a Megatron case.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import inputs
from ..approve import Candidate, stage_candidate
from ..approve.runs import case_of_run
from ..core.compare import compare, resume_check, side_from_goldens
from ..core.errors import EXIT_DIFFERENCE, EXIT_PASS, FormatError, GoldenError
from ..core.model import GoldenKey
from ..core.result import RESUME_CHECK, ComparisonResult, check_name
from ..files.case import CASE_FILE
from ..files.formats.artifact import preflight_substitutions
from ..inputs import Loaded, PolicyChoice
from ..store import GoldenStore
from ..store.target_names import refuse_typos


@dataclass(frozen=True)
class Judgement:
    """What judging produced: the result (None: no golden for the target), the candidate staged for
    review (None: nothing staged), and lines for the user (why something was or was not staged)."""

    result: ComparisonResult | None
    case: str | None = None
    env: str | None = None
    platform: str | None = None
    staged: Candidate | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return self.result is not None and self.result.passed

    @property
    def exit_code(self) -> int:
        return EXIT_PASS if self.passed else EXIT_DIFFERENCE


def should_stage(result: ComparisonResult | None) -> bool:
    """The staging rule: a run that failed its judgement, or had no golden to be judged by."""
    return result is None or not result.passed


def force_regime(exact: bool | None) -> str | None:
    """``--exact/--approx`` as the engine's ``force`` argument."""
    return None if exact is None else ("exact" if exact else "approx")


def judge_run(store: GoldenStore, run: Loaded, *, case: str | None = None, env: str | None = None,
              platform: str | None = None, policy: PolicyChoice = None, force: str | None = None,
              notes: Sequence[str] = (), stage: bool = True, tell_generation: bool = True,
              new_env: bool | None = None, new_platform: bool | None = None) -> Judgement:
    """A run against the store's current golden of its target; staged for review when
    ``should_stage`` says so (``stage=False``: judge only, write nothing). Case, env and platform
    default to what the run declares. Under a preset that follows model_config.yaml (megatron) the
    store's generation of Megatron's conventions judges; a comparator the table does not know is
    said in the result's warnings (``tell_generation``: a bulk judgement says it once).
    ``new_env`` / ``new_platform``: False — a given ``env`` / ``platform`` the store has no golden for,
    close to a name it knows, is refused as a typo (``goldens.store.target_names``); True — a new name on
    purpose; None — not checked (a bulk judge, whose names come from the files)."""
    if run.artifact is None and run.side.inference is None:
        raise FormatError("one operand must be a run (artifact.json or its folder); to compare two golden files "
                          "give both")
    refuse_preflight(run)
    the_case = case_of_candidate(store, run, case)
    target_env, target_platform = env or run.env, platform or run.platform
    inputs.load_policies(policy)  # a bad --policy is refused before anything else is read
    keys = store.keys(the_case)
    if not inputs.has_golden(store, the_case, target_env, target_platform, keys):
        if new_env is not None or new_platform is not None:
            refuse_typos(store, env=env, platform=platform, new_env=bool(new_env), new_platform=bool(new_platform))
        judgement = Judgement(None, the_case, target_env, target_platform)
        judgement = _staged(store, run, judgement) if stage else judgement
        return replace(judgement, notes=(*judgement.notes, f"no golden: case {the_case!r} has none for "
                                                           f"{target_env or '*'}/{target_platform or '*'} yet"))
    case_policy, case_source = inputs.case_metrics(store, the_case)
    generation = store.megatron_generation if inputs.load_policies(policy).follows_model_config else None
    policies = inputs.load_policies(policy, case_policy=case_policy, case_source=case_source,
                                    megatron_case=_megatron_case(policy, lambda: store.case_dir(the_case)),
                                    generation=generation)
    if generation is not None and generation.warning and tell_generation:
        notes = (*notes, generation.warning)
    reference = inputs.load_store_golden(store, the_case, target_env, target_platform, policies.golden_phases, keys,
                                         policies=policies)
    refuse_other_data(run, reference, store.case_dir(the_case))
    refuse_unreadable_by_megatron(policies, (reference, run))
    all_notes = tuple(notes) + tuple(f"candidate: {n}" for n in run.notes) \
        + tuple(f"reference: {n}" for n in reference.notes)
    result = compare(reference.side, run.side, policies, force=force, case=the_case, env=reference.env,
                     platform=reference.platform, notes=all_notes)
    if not result.passed:
        result = replace(result, preexisting=preexisting_failures(store, result, reference, policies, keys))
    judgement = Judgement(result, the_case, reference.env, reference.platform)
    return _staged(store, run, judgement) if stage and should_stage(result) else judgement


GENERATED_CORPUS = "generated"  # an artifact's provenance.corpus when the runner made its data


def refuse_preflight(run: Loaded) -> None:
    """A CPU pre-flight (a Transformer Engine case run on substitutes) is judged only on itself
    — it builds, trains, saves, resumes bit-exactly, its loss is finite and falls (``golden run``
    says so) — never against the case's goldens."""
    if run.artifact is None:
        return
    subs = preflight_substitutions(run.artifact)
    if subs:
        raise FormatError(f"run {run.artifact.run_id} is a CPU pre-flight on substitutes ({subs}): it is judged only "
                          "on itself (golden run prints its smoke verdict), never against the case's goldens")


def refuse_other_data(run: Loaded, reference: Loaded, case_dir: Path) -> None:
    """A run on the runner's generated corpus is never judged against a golden Megatron recorded
    on its real data: a golden in a Megatron case folder (model_config.yaml, no case.yaml) that no
    approval of this toolkit wrote (no recorded fingerprint). Megatron's lm loss after 100 real
    steps (6.2) says nothing about 20 steps on the generated corpus (10.5)."""
    prov = run.artifact.provenance if run.artifact is not None else {}
    if prov.get("corpus") != GENERATED_CORPUS or reference.side.fingerprint is not None:
        return
    if (case_dir / CASE_FILE).is_file() or not (case_dir / "model_config.yaml").is_file():
        return
    raise FormatError(f"{reference.side.label} was recorded by Megatron's CI on its real data (no approval of this "
                      "toolkit wrote it), and this run trained on the runner's generated corpus: they are not "
                      "comparable. Record a golden of this runner (golden approve) and judge against that")


def preexisting_failures(store: GoldenStore, result: ComparisonResult, reference: Loaded, policies: Any,
                         keys: Sequence[Any]) -> tuple[str, ...]:
    """The failing checks of ``result`` that fail the same way on the committed goldens themselves: a
    golden check failing with the golden as its own candidate (an inference file Megatron's reader
    cannot index), the resume check failing on the committed ``golden_values_*.json`` / ``_2nd`` pair.
    Defects of the tree, not regressions of the candidate; the verdict is left as the rules made it
    (the megatron preset still says what Megatron's CI says)."""
    found: list[str] = []
    failing = {check_name(m) for m in result.metric_verdicts() if not m.passed}
    if failing:
        itself = compare(reference.side, reference.side, policies, case=result.case, env=result.env,
                         platform=result.platform, check_resume=False)
        found += sorted(failing & {check_name(m) for m in itself.metric_verdicts() if not m.passed})
    if result.resume is not None and not result.resume.passed and reference.env and reference.platform:
        # the committed pair as the tree holds it: with its _2nd file, or without one (then a case that
        # requires the resume check fails it on its own goldens too)
        committed = [GoldenKey(result.case or "", reference.env, reference.platform, n) for n in (1, 2)]
        try:
            pair = side_from_goldens({k.phase: store.read(k) for k in committed if k in keys}, reference.side.label)
        except GoldenError:
            pair = None  # an unreadable committed file: a finding of its own
        check = None if pair is None else resume_check(pair, policies, result.fingerprint.exact_applied)
        if check is not None and not check.passed:
            found.append(RESUME_CHECK)
    return tuple(found)


def case_of_candidate(store: GoldenStore, run: Loaded, given: str | None = None) -> str:
    """The store case a candidate is judged against: ``given`` (--case); a run's own (a Megatron
    golden file's by its folder's path, ``approve.runs.case_of_run``); an inference golden file's by
    its folder's path too, else its folder's name."""
    if run.artifact is not None:
        return case_of_run(store, run.artifact, given)
    if given is not None:
        return store.resolve(given)
    found = store.case_for_folder(Path(run.side.label).parent)
    if found is not None:
        return found
    if run.case is None:
        raise FormatError("the candidate names no case: give its case (--case)", path=run.side.label)
    return store.resolve(run.case)


def _staged(store: GoldenStore, run: Loaded, judgement: Judgement) -> Judgement:
    """Stage the run for the judgement's target (outside CI); a refusal to stage is a note, never a
    change of the verdict or the exit code."""
    if run.artifact is None:  # an inference golden: the store cannot take one through approve yet
        return replace(judgement, notes=(*judgement.notes, "note: not staged for review: an inference golden is "
                                                           "judged, not staged"))
    if judgement.env is None or judgement.platform is None:
        return judgement
    try:
        staged = stage_candidate(store, run.artifact, judgement.env, judgement.platform, judgement.result,
                                 case=judgement.case)
    except GoldenError as exc:
        return replace(judgement, notes=(*judgement.notes, f"note: not staged for review: {exc}"))
    if staged is None:  # CI: nothing is written
        return judgement
    return replace(judgement, staged=staged, notes=(
        *judgement.notes, f"staged {staged.target} ({staged.run_id}) for review: golden review / golden approve"))



def refuse_unreadable_by_megatron(policies: Any, loaded: Sequence[Loaded]) -> None:
    """In a Megatron case, golden files Megatron's own reader refuses cannot pass (an input error)."""
    if policies.in_megatron_case:
        for side in loaded:
            if inputs.from_golden_files(side):
                inputs.require_megatron_readable(side.side, side.side.label)


def _megatron_case(policy: PolicyChoice, folder: Any) -> Any:
    """The Megatron case in ``folder()`` — read only for a policy that follows model_config.yaml (the
    megatron preset): another policy never reads it, so a file it does not need cannot stop it."""
    if not inputs.load_policies(policy).follows_model_config:
        return None
    return inputs.megatron_case_in(folder())
