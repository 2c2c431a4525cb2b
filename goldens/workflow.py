"""judge → stage if failing (outside CI) → result: the one path ``golden diff``, ``golden check``
(and any bulk command) share.

A run is judged against the store's golden for its target (case, env, platform) under the
policies that apply to that case; when the verdict is not a pass — or there is no golden yet — the
run is staged as the pending candidate for ``golden review`` (``should_stage`` is the rule, in one
place). In CI nothing is staged: ``goldens.approve.stage_candidate`` writes nothing there. Two
operands (``golden diff REF CAND``) are compared the same way but never staged: neither side is a
run judged against the store.

Beside that path, what the other commands decide and assemble, so that a command only parses,
calls one function here, renders and maps errors: a bulk judgement's summary, rows and JSON
(``BulkJudgement``), the tree's validation with its audit (``validate_tree``), a case's goldens as
``golden show`` shows them (``show_case``), what an approval acts on (``select_candidates``), and
tolerances from repeated runs (``calibrate``).

Layering: the CLI calls this module; it calls the core (inputs, compare, approve) and, for
``golden check``, the reports. It never prints: what to tell the user comes back as ``notes``.
Everything is imported at the top except the report builder (it loads pandas): ``goldens.judge``
and ``golden diff`` need numpy only, and the CLI imports this module inside its commands.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reports.output import RESULT_FILES

from . import inputs
from .approve import Candidate, candidates_for_run, list_pending, stage_candidate
from .approve.runs import case_of_run
from .core.compare import compare, resume_check, side_from_goldens
from .core.errors import EXIT_DIFFERENCE, EXIT_PASS, FormatError, GoldenError, NotATrainingGolden, StoreError
from .core.model import GoldenKey, GoldenSet
from .core.pairing import ARTIFACT, Finding, pair_candidates
from .core.policy import preset
from .core.result import RESUME_CHECK, ComparisonResult, check_name
from .core.stats import MetricSpread, Recommendation, recommend_all, render_policy_yaml, spread
from .files.atomic import atomic_write_text
from .files.case import CASE_FILE
from .files.formats.artifact import read_artifact
from .files.formats.golden import metric_to_json
from .files.formats.run import megatron_run
from .files.validate import ERROR, WARNING, FileReport, ValidationSummary, validate_paths
from .files.validate import Finding as FileFinding
from .inputs import Loaded, PolicyChoice
from .megatron import detect_generation
from .store import GoldenStore, Version, parse_case_ref
from .store.git_history import GitHistory
from .store.target_names import refuse_typos
from .store.tree import is_pattern


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
    _readable_as_megatron_reads(policies, (reference, run))
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
    substitutions = (run.artifact.provenance.get("megatron_case") or {}).get("substitutions")
    if substitutions:
        subs = "; ".join(f"{k} → {v}" for k, v in substitutions.items())
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
    _readable_as_megatron_reads(policies, (reference, candidate))
    if not run_candidate and 2 in candidate.side.phases:
        notes += ("resume check not run: the candidate is a golden, not a run",)
    result = compare(reference.side, candidate.side, policies, force=force, case=the_case,
                     env=env or reference.env or candidate.env,
                     platform=platform or reference.platform or candidate.platform, notes=notes,
                     check_resume=run_candidate)
    return Judgement(result, the_case, result.env, result.platform)


def _readable_as_megatron_reads(policies: Any, loaded: Sequence[Loaded]) -> None:
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


@dataclass(frozen=True)
class Published:
    """What ``publish`` wrote beside a run."""

    result_file: Path
    report_dir: Path


def publish(judgement: Judgement, run_dir: Path, *, store_root: Path | None) -> Published | None:
    """Keep what ``golden check`` decided beside the run: ``result.json`` and the reports in
    ``report/`` (Markdown, HTML, JUnit, JSON). Nothing when there was no golden to judge by."""
    from reports.build import build_result_report  # pandas: only when reports are written

    if judgement.result is None:
        return None
    result_file = run_dir / "result.json"
    atomic_write_text(result_file, json.dumps(judgement.result.to_json(), indent=2, allow_nan=False) + "\n")
    written = build_result_report([run_dir], None, tuple(RESULT_FILES), store=store_root)
    return Published(result_file, written.files[0].parent)


def check_run(report: Any, *, store_root: Path | None, env: str | None = None, platform: str | None = None,
              policy: str | None = None, force: str | None = None, generation: str | None = None,
              new_env: bool = False, new_platform: bool = False) -> tuple[Judgement, Published | None]:
    """``golden check`` after its run: judge the run's artifact (staged if failing or without a
    golden), then publish the result and reports beside it."""
    run = inputs.load_artifact_side(report.artifact)
    judgement = judge_run(GoldenStore(store_root, generation=generation), run, case=report.artifact.case, env=env,
                          platform=platform, policy=policy, force=force, new_env=new_env, new_platform=new_platform)
    return judgement, publish(judgement, report.artifact_path.parent, store_root=store_root)


# ---------------------------------------------------------------- tolerances from repeated runs

@dataclass(frozen=True)
class Calibration:
    """What ``golden stats`` measured over repeated runs of one case: each metric's spread, the policy
    recommended for it (with its formula), and that policy as the YAML a person reviews."""

    case: str
    run_ids: tuple[str, ...]  # each with its seed, where the run recorded one
    spreads: tuple[MetricSpread, ...]
    recommendations: tuple[Recommendation, ...]
    policy_yaml: str

    def table_csv(self) -> str:
        """Every spread's per-step statistics and raw samples as one CSV (one header: the spreads share
        their columns)."""
        return "".join(sp.frame().to_csv(index=False, header=index == 0) for index, sp in enumerate(self.spreads))


def calibrate(runs: Sequence[Path], *, preset_name: str = "default", band: bool = False) -> Calibration:
    """Repeated runs (artifacts or run folders) → per-step spreads and a recommended policy per metric; the
    preset's metric kinds decide each metric's statistic; ``band``: per-step bands for per-step metrics."""
    artifacts = [read_artifact(p) for p in runs]
    policies = preset(preset_name)
    spreads = spread(artifacts)
    recommendations = recommend_all(spreads, policies)
    run_ids = tuple(a.run_id + (f" (seed {a.provenance['seed']})" if "seed" in a.provenance else "")
                    for a in artifacts)
    text = render_policy_yaml(recommendations, case=artifacts[0].case, run_ids=run_ids, preset=preset_name,
                              with_band=band, base_policies=policies)
    return Calibration(artifacts[0].case, run_ids, spreads, recommendations, text)


# ---------------------------------------------------------------- what an approval acts on

def select_candidates(store: GoldenStore, run: str | None, pending: bool, *, case: str | None = None,
                      env: str | None = None, platform: str | None = None, metrics: Sequence[str] = (),
                      new_env: bool = False, new_platform: bool = False) -> list[Candidate]:
    """The candidates ``golden approve`` / ``reject`` act on: a RUN's (for one case: ``case`` may not be a
    pattern there), or the staged ones (``pending``) narrowed by case pattern, env, platform and the
    metrics they hold. A RUN approved for a target its case has no golden for writes a new golden file:
    an ``env`` / ``platform`` given there that is a close match of a name the store knows is refused as a
    typo, unless ``new_env`` / ``new_platform`` say it is new on purpose."""
    if run is not None and pending:
        raise GoldenError("give a RUN or --pending, not both")
    if run is None:
        if not pending:
            raise GoldenError("say what to act on: a RUN, or --pending (with --case/--env/--platform to narrow it)")
        return list_pending(store, case=case, env=env, platform=platform, metrics=tuple(metrics))
    if case is not None and is_pattern(case):
        raise GoldenError(f"--case {case!r} is a pattern: with a RUN, name the one case it is for")
    found = candidates_for_run(store, run, case=case, env=env, platform=platform)
    for c in found:
        if not any((k.env, k.platform) == (c.env, c.platform) for k in store.keys(c.case)):
            refuse_typos(store, env=env, platform=platform, new_env=new_env, new_platform=new_platform)
    return found


# ---------------------------------------------------------------- many candidates in one process

@dataclass(frozen=True)
class BulkJudgement:
    """What judging many candidates produced: one judgement per paired target, and the findings —
    what was not judged (unpaired, unreadable, a duplicate) or had no golden to be judged by."""

    judgements: tuple[Judgement, ...]
    findings: tuple[Finding, ...]

    @property
    def results(self) -> tuple[ComparisonResult, ...]:
        return tuple(j.result for j in self.judgements if j.result is not None)

    @property
    def passed(self) -> bool:
        return not self.findings and all(j.passed for j in self.judgements)

    @property
    def exit_code(self) -> int:
        return EXIT_PASS if self.passed else EXIT_DIFFERENCE

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(note for j in self.judgements for note in j.notes)

    def summary(self) -> dict[str, Any]:
        """Counts; ``preexisting``: how often each check failed on the committed goldens themselves (the
        tree's own defects, apart from regressions)."""
        results = self.results
        counts = Counter(check for r in results for check in r.preexisting)
        return {"targets": len(self.judgements), "passed": sum(r.passed for r in results),
                "failed": sum(not r.passed for r in results), "regressions": sum(r.regression for r in results),
                "findings": len(self.findings), "preexisting": dict(sorted(counts.items()))}

    def summary_line(self) -> str:
        """``PASS: 3 passed, 0 failed, 0 finding(s)``, with the failures only on pre-existing defects apart."""
        s = self.summary()
        line = f"{'PASS' if self.passed else 'FAIL'}: {s['passed']} passed, {s['failed']} failed"
        if s["failed"] != s["regressions"]:
            only_preexisting = s["failed"] - s["regressions"]
            line += f" ({s['regressions']} regression(s), {only_preexisting} only on pre-existing defects)"
        return line + f", {s['findings']} finding(s)"

    def preexisting_lines(self) -> list[str]:
        """The tree audit: each check that fails on the committed goldens themselves, with its count."""
        return [f"pre-existing in the committed goldens: {check} fails in {n} target(s)"
                for check, n in self.summary()["preexisting"].items()]

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(case, target, verdict, why) per judged target, failures first (regressions before failures only
        on pre-existing defects), then per finding (its kind as the verdict)."""
        rows = []
        for r in sorted(self.results, key=lambda r: (r.passed, not r.regression)):
            failing = [f"{'resume ' if m.phase == 2 and r.resume and m in r.resume.metrics else ''}{m.metric}"
                       for m in r.failures()]
            why = ("failing: " + ", ".join(failing)) if failing else (r.resume.explanation if r.resume is not None
                                                                       and not r.resume.passed else "")
            verdict = PASS_VERDICT if r.passed else FAIL_VERDICT if r.regression else PREEXISTING_VERDICT
            rows.append((r.case or "—", f"{r.env}/{r.platform}", verdict, why))
        for f in self.findings:
            rows.append((f.case or f.path, "/".join(x for x in (f.env, f.platform) if x) or "—", f.kind, f.message))
        return rows

    def to_json(self) -> dict[str, Any]:
        """The ``golden judge --format json`` document: verdict, summary, every result (without its steps)
        and every finding."""
        return {"schema": JUDGE_SCHEMA, "passed": self.passed, "summary": self.summary(),
                "results": [r.to_json(steps=False) for r in self.results],
                "findings": [f.to_json() for f in self.findings]}


JUDGE_SCHEMA = "golden.judge/1"
PASS_VERDICT, FAIL_VERDICT, PREEXISTING_VERDICT = "pass", "fail", "fail (pre-existing)"  # a target's, in rows()


def audit_tree(store_root: Path, *, generation: str | None = None) -> dict[str, list[str]]:
    """The tree's own defects: every golden judged against itself as Megatron's CI judges it (the
    megatron preset, nothing staged); each check that fails there — a resume pair that does not
    match, an inference file Megatron's reader cannot index — with the targets it fails in
    (``case env/platform``), each listed once. A candidate failing one of these is not a regression."""
    bulk = judge_bulk([store_root], store_root=store_root, policy="megatron", stage=False, generation=generation)
    found: dict[str, list[str]] = {}
    for result in bulk.results:
        for check in result.preexisting:
            found.setdefault(check, []).append(f"{result.case} {result.env}/{result.platform}")
    return {check: sorted(set(targets)) for check, targets in sorted(found.items())}


@dataclass(frozen=True)
class TreeValidation:
    """What ``golden validate`` found: a report per file — the store's own findings and, with the audit,
    the checks the committed goldens fail on themselves among them — and the audit by check."""

    summary: ValidationSummary
    audited: dict[str, list[str]] = field(default_factory=dict)


def validate_tree(paths: Sequence[Path], store: GoldenStore | None, *, audit: bool = False,
                  generation: str | None = None) -> TreeValidation:
    """The golden files and case files under ``paths`` (none: the store's), each ok / warning / error; with a
    store whose folder exists, also what is odd about its tree (a name two cases share, an orphan folder, …)
    and its history, read-only; with ``audit``, every golden judged against itself (``audit_tree``)."""
    if not paths and store is None:
        raise GoldenError("nothing to validate: give paths or a store")
    summary = validate_paths(list(paths) if paths else [store.root] if store is not None else [])
    in_store = store is not None and store.root.is_dir()
    if store is not None and in_store:
        problems = store.findings() + store.fsck(repair=False)
        extra = [FileReport(p.path or p.case, "store", (FileFinding(p.severity, f"{p.case}: {p.message}"),))
                 for p in problems if p.severity in (WARNING, ERROR)]
        summary = ValidationSummary(summary.reports + tuple(extra))
    if not audit:
        return TreeValidation(summary)
    if store is None or not in_store:
        raise GoldenError("--audit judges a store's goldens against themselves: give --store (or no PATHS)")
    audited = audit_tree(store.root, generation=generation)
    summary = ValidationSummary(summary.reports + tuple(
        FileReport(target, "audit", (FileFinding(WARNING, f"pre-existing: {check} fails on the committed goldens "
                                                          "themselves (Megatron's CI fails it too)"),))
        for check, targets in audited.items() for target in targets))
    return TreeValidation(summary, audited)


def judge_bulk(paths: Sequence[str | Path], *, store_root: Path | None, policy: str | None = None,
               force: str | None = None, stage: bool = True, generation: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> BulkJudgement:
    """Every candidate under ``paths`` against the store, in one process: found (``inputs.find_candidates``),
    paired (``pairing.pair_candidates``), each judged as ``judge_run`` judges one run — staged when
    failing, by the one staging rule, when ``stage``. A file that cannot be judged is a finding; only a
    bad option, path or store stops the whole batch (GoldenError, exit 2). ``progress(done, total)`` is
    told after each target (the CLI's progress bar)."""
    store = GoldenStore(store_root, generation=generation)
    cases = store.cases()  # no store: the usage error, before anything else
    inputs.load_policies(policy)
    files, findings = inputs.find_candidates(paths)
    if not files and not findings:
        findings.append(Finding(", ".join(map(str, paths)), "empty", "no candidate files (golden_values_*.json, "
                                                                      "artifact.json) found"))
    listed: dict[str, set[tuple[str, str]]] = {}

    def goldens(case: str) -> set[tuple[str, str]]:
        if case not in listed:
            listed[case] = {(k.env, k.platform) for k in store.keys(case) if k.phase == 1}
        return listed[case]

    pairing = pair_candidates(files, cases, goldens)
    findings += pairing.findings
    judgements: list[Judgement] = []
    for done, target in enumerate(pairing.targets, start=1):
        try:
            run = _load_target(target)
            judgements.append(judge_run(store, run, case=target.case, env=target.env, platform=target.platform,
                                        policy=policy, force=force, stage=stage, tell_generation=not judgements))
        except GoldenError as exc:
            findings.append(Finding(target.path, "broken", str(exc), target.case, target.env, target.platform))
        if progress is not None:
            progress(done, len(pairing.targets))
    return BulkJudgement(tuple(judgements), tuple(findings))


def _load_target(target: Any) -> Loaded:
    """A paired candidate as a run of its target's case: a golden_values file (with its _2nd pair; an
    inference golden as it is) or an artifact."""
    path = Path(target.path)
    if target.kind == ARTIFACT:
        return inputs.load_artifact_side(read_artifact(path), str(path))
    try:
        artifact = megatron_run(path, case=target.case)
    except NotATrainingGolden:
        return inputs.load_inference_run(path, case=target.case)
    return inputs.load_artifact_side(artifact, str(path))


RESULTS_DIR = "results"
FINDINGS_FILE = "findings.json"
FINDINGS_SCHEMA = "golden.findings/1"


def publish_bulk(bulk: BulkJudgement, out: Path, *, store_root: Path | None) -> list[Path]:
    """Write what a bulk judgement decided into ``out``: ``results/*.json`` (one result per judged target,
    every step, readable by ``golden report``; the folder holds this judgement's results only),
    ``findings.json``, and the reports (Markdown, HTML, JUnit, JSON) of all results and findings —
    rendered from the results in memory, never read back from disk."""
    from reports.build import build_bulk_report  # pandas: only when reports are written

    results_dir = out / RESULTS_DIR
    if results_dir.is_dir():
        for stale in results_dir.glob("*.json"):
            stale.unlink()
    results_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for judgement in bulk.judgements:
        if judgement.result is None:
            continue
        r = judgement.result
        target = results_dir / f"{(r.case or 'case').replace('/', '--')}__{r.env}__{r.platform}.json"
        # compact: json's C encoder (an indented dump runs its pure-Python one, 10× slower on a tree)
        target.write_text(json.dumps(r.to_json(), allow_nan=False) + "\n", encoding="utf-8")
        written.append(target)
    findings = out / FINDINGS_FILE
    doc = {"schema": FINDINGS_SCHEMA, "findings": [f.to_json() for f in bulk.findings]}
    atomic_write_text(findings, json.dumps(doc, indent=2) + "\n")
    # every report is written, even when nothing could be judged: the findings are what it reports then
    reports = build_bulk_report(bulk.results, out, tuple(RESULT_FILES), store=store_root, findings=bulk.findings).files
    return [*written, findings, *reports]


# ---------------------------------------------------------------- one case's goldens, as `golden show` shows them

@dataclass(frozen=True)
class ShownGolden:
    """One golden file of a case view: the metrics and scalars selected, and the fingerprint of the run
    that wrote it (None: not recorded)."""

    key: GoldenKey
    golden: GoldenSet
    names: tuple[str, ...]
    scalars: dict[str, float]
    fingerprint: str | None

    def to_json(self) -> dict[str, Any]:
        """Full precision; a scalar that is NaN or infinite as its ``repr`` (strict JSON has no literal)."""
        return {"file": self.key.filename(), "env": self.key.env, "platform": self.key.platform,
                "phase": self.key.phase, "fingerprint": self.fingerprint,
                "metrics": {n: metric_to_json(self.golden.metrics[n]) for n in self.names},
                "scalars": {n: (v if v == v and abs(v) != float("inf") else repr(v)) for n, v in self.scalars.items()}}


@dataclass(frozen=True)
class CaseView:
    """A case's goldens (current files, or at ``version``), filtered: where they come from (``origin``),
    the readable ones, and the unreadable ones with their errors."""

    case: str
    version: str | None
    origin: str
    goldens: tuple[ShownGolden, ...]
    unreadable: dict[GoldenKey, GoldenError]

    def to_json(self) -> dict[str, Any]:
        return {"case": self.case, "version": self.version, "origin": self.origin,
                "goldens": [g.to_json() for g in self.goldens],
                "unreadable": [{"file": k.filename(), "error": str(e)} for k, e in self.unreadable.items()]}


def show_case(store: GoldenStore, ref: str, *, env: str | None = None, platform: str | None = None,
              metrics: Sequence[str] = (), phase: int | None = None) -> CaseView:
    """``golden show CASE[@REF]``: the case's goldens that match the filters (each of ``env``, ``platform``,
    ``phase``, ``metrics`` when given). No golden matching, or a metric none of the readable goldens has,
    is an input error (``StoreError``)."""
    case, version = parse_case_ref(ref)
    case = store.resolve(case)
    found = store.goldens(case, version)
    origin = _origin(store, case, version)
    chosen = {k: g for k, g in found.items()
              if (env is None or k.env == env) and (platform is None or k.platform == platform)
              and (phase is None or k.phase == phase)}
    if not chosen:
        have = ", ".join(k.filename() for k in found) or "none"
        raise StoreError(f"{ref}: no golden matches the filters (has: {have})")
    readable = {k: g for k, g in chosen.items() if not isinstance(g, GoldenError)}
    broken = {k: g for k, g in chosen.items() if isinstance(g, GoldenError)}
    unknown = [m for m in metrics if not any(m in g.metrics or m in g.scalars for g in readable.values())]
    if unknown:
        raise StoreError(f"{ref}: no metric {unknown[0]!r} in the selected goldens")
    shown = tuple(ShownGolden(key, golden, tuple(n for n in golden.metrics if not metrics or n in metrics),
                              {n: v for n, v in golden.scalars.items() if not metrics or n in metrics},
                              _fingerprint(store, key, version))
                  for key, golden in readable.items())
    return CaseView(case, version, origin, shown, broken)


def _fingerprint(store: GoldenStore, key: GoldenKey, version: str | None) -> str | None:
    """The fingerprint of the run that wrote the file: the current one, or as of ``version``."""
    if version is None:
        return store.fingerprint_of(key)
    writer = store.writer_of(key, upto=version)
    return writer.fingerprint if writer is not None else None


def _origin(store: GoldenStore, case: str, version: str | None) -> str:
    """Where the shown goldens come from: the current files (and the latest version), or the version
    asked for and who wrote it (a git revision also as the commit it names)."""
    versions = store.history(case)
    if version is None:
        return (f"current files (latest version {versions[-1].label})" if versions
                else "current files (no history yet)")
    found = [v for v in versions if v.ref == version or (v.commit and v.commit.startswith(version))]
    backend = store.backend
    if not found and isinstance(backend, GitHistory):
        commit = backend.resolve(version)
        found = [v for v in versions if v.commit == commit]
        return f"{version} ({commit[:12]})" + (f": {_who(found[-1])}" if found else "")
    return f"{version}: {_who(found[-1])}" if found else version


def _who(version: Version) -> str:
    if not version.attributed:
        return f"unattributed (committed by {version.author} at {version.time})"
    return f"{version.action} by {version.approver} at {version.time}"
