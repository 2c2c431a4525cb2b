"""``golden diff``: what it does with its operands — none or one run, judged against the store
(``judge.judge_run``, staged if failing), or two operands compared with each other (reference first,
never staged: neither side is a run judged against the store) — and the ``result.json`` a run folder
keeps, rewritten by a later diff of that run.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import inputs
from ..core.compare import compare
from ..core.errors import FormatError, GoldenError
from ..files.atomic import atomic_write_text
from ..inputs import Loaded, PolicyChoice
from ..megatron import detect_generation
from ..store import GoldenStore
from .judge import Judgement, judge_run, refuse_unreadable_by_megatron


def compare_operands(reference: Loaded, candidate: Loaded, *, store_root: Path | None, case: str | None = None,
                     env: str | None = None, platform: str | None = None, policy: PolicyChoice = None,
                     force: str | None = None, texts: Sequence[str] = (), generation: str | None = None) -> Judgement:
    """``golden diff REF CAND``: two golden files, artifacts or versions, reference first. Never
    staged. The resume check runs only when the candidate is a run (a golden's ``_2nd`` file comes
    from another job and need not reproduce its phase 1 bit for bit). ``texts``: the operands as the
    user gave them, one per operand (reference first), or none (operands built in Python)."""
    the_case = case or reference.case or candidate.case
    case_policy, case_source = inputs.case_metrics(store_root, the_case)
    notes = tuple(f"candidate: {n}" for n in candidate.notes) + tuple(f"reference: {n}" for n in reference.notes)
    operands = (reference, candidate)
    if case_policy is not None and case is None and texts and all(
            _loose_file_outside(text, loaded, case_source) for text, loaded in zip(texts, operands, strict=True)):
        # Two golden files from elsewhere (a Megatron checkout) that merely share a case name with
        # the store: that case's tolerances were set for its own goldens, not these.
        notes += (f"policy: {case_source} not applied (the golden files are outside its case folder; "
                  f"--case {the_case} applies it)",)
        case_policy, case_source = None, None
    detection = _operands_generation(texts, reference, store_root, policy, generation)
    if detection is not None and detection.warning:
        notes += (detection.warning,)
    policies = inputs.load_policies(policy, case_policy=case_policy, case_source=case_source,
                                    megatron_case=_operands_case(texts, operands, store_root, the_case, policy),
                                    generation=detection)
    run_candidate = candidate.artifact is not None
    refuse_unreadable_by_megatron(policies, (reference, candidate))
    if not run_candidate and 2 in candidate.side.phases:
        notes += ("resume check not run: the candidate is a golden, not a run",)
    result = compare(reference.side, candidate.side, policies, force=force, case=the_case,
                     env=env or reference.env or candidate.env,
                     platform=platform or reference.platform or candidate.platform, notes=notes,
                     check_resume=run_candidate)
    return Judgement(result, the_case, result.env, result.platform)



def _operands_case(texts: Sequence[str], loaded: Sequence[Loaded], store_root: Path | None,
                   case: str | None, policy: PolicyChoice) -> Any:
    """The Megatron case two operands belong to: the model_config.yaml beside the first golden file that
    has one, else the store's case of that name (None: not a Megatron case, or a policy that does not
    follow model_config.yaml)."""
    if not inputs.load_policies(policy).follows_model_config:
        return None
    for text, side in zip(texts, loaded, strict=bool(texts)):  # texts: one per operand, or none
        if side.artifact is None and not inputs.is_version_ref(text):
            found = inputs.megatron_case_in(Path(text).parent)
            if found is not None:
                return found
    if case is None:
        return None
    try:
        return inputs.megatron_case_in(inputs.open_store(store_root).case_dir(case))
    except GoldenError:
        return None


def _operands_generation(texts: Sequence[str], reference: Loaded, store_root: Path | None, policy: PolicyChoice,
                         choice: str | None) -> Any:
    """The generation of Megatron's conventions two operands are judged by (a preset that follows
    model_config.yaml only): the tree the reference golden file lies in, else the store's."""
    if not inputs.load_policies(policy).follows_model_config:
        return None
    if texts and reference.artifact is None and not inputs.is_version_ref(texts[0]):
        folder = Path(texts[0]).resolve().parent
        return detect_generation(folder, choice, goldens=folder)
    try:
        return detect_generation(inputs.open_store(store_root).root, choice)
    except GoldenError:
        return detect_generation(Path.cwd(), choice)


def _loose_file_outside(text: str, loaded: Loaded, case_yaml: str | None) -> bool:
    """An operand that is a plain golden file lying outside the folder of ``case_yaml``."""
    if loaded.artifact is not None or case_yaml is None or inputs.is_version_ref(text):
        return False
    return not Path(text).resolve().is_relative_to(Path(case_yaml).resolve().parent)


def diff(targets: Sequence[str], *, store_root: Path | None, case: str | None = None, env: str | None = None,
         platform: str | None = None, policy: str | None = None, force: str | None = None,
         runs_dir: Path = Path("runs"), generation: str | None = None, new_env: bool = False,
         new_platform: bool = False) -> Judgement:
    """What ``golden diff`` does with its operands: none (the newest run), one run — an artifact, a
    run folder or id, or a golden_values file as Megatron's CI writes it — against the store's
    golden (staged if failing), or two operands (reference first, never staged)."""
    if len(targets) > 2:
        raise GoldenError(f"give at most two operands (REFERENCE CANDIDATE), got {len(targets)}")
    inputs.load_policies(policy)  # a bad --policy is reported before any file is read
    load = lambda text: inputs.load_operand(text, store_root=store_root, env=env, platform=platform,
                                            runs_dir=runs_dir)
    if len(targets) == 2:
        return compare_operands(load(targets[0]), load(targets[1]), store_root=store_root, case=case, env=env,
                                platform=platform, policy=policy, force=force, texts=targets, generation=generation)
    if targets and inputs.is_version_ref(targets[0]):
        raise FormatError("a version is a golden, not a run: give a second operand to compare it with",
                          path=targets[0])
    if targets:
        run = inputs.load_run(targets[0], runs_dir, env=env, platform=platform)
    else:
        run = inputs.load_file(inputs.newest_run(runs_dir, case))
    if run.artifact is None and run.side.inference is None:
        raise FormatError("one operand must be a run (artifact.json or its folder); to compare two golden files "
                          "give both", path=targets[0] if targets else None)
    judgement = judge_run(GoldenStore(store_root, generation=generation), run, case=case, env=env,
                          platform=platform, policy=policy, force=force, new_env=new_env, new_platform=new_platform)
    return _refresh_kept_result(targets[0] if targets else None, runs_dir, judgement)


def _refresh_kept_result(text: str | None, runs_dir: Path, judgement: Judgement) -> Judgement:
    """A run folder keeps the ``result.json`` its ``golden check`` wrote: a later diff of that run
    rewrites it (or removes it when there is no golden to judge by), so ``golden report RUN`` never
    shows a verdict the latest judgement overturned. A folder without one gets none."""
    path = inputs.artifact_path(text, runs_dir) if text is not None else None
    kept = path.parent / "result.json" if path is not None and path.name == "artifact.json" else None
    if kept is None or not kept.is_file():
        return judgement
    if judgement.result is None:
        kept.unlink()
        return replace(judgement, notes=(*judgement.notes, f"removed {kept}: no golden judged this run"))
    atomic_write_text(kept, json.dumps(judgement.result.to_json(), indent=2, allow_nan=False) + "\n")
    return replace(judgement, notes=(*judgement.notes, f"updated {kept}"))
