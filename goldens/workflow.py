"""judge → stage if failing (outside CI) → result: the one path ``golden diff``, ``golden check``
(and any bulk command) share.

A run is judged against the store's golden for its target (case, env, platform) under the
policies that apply to that case; when the verdict is not a pass — or there is no golden yet — the
run is staged as the pending candidate for ``golden review`` (``should_stage`` is the rule, in one
place). In CI nothing is staged: ``goldens.approve.stage_candidate`` writes nothing there. Two
operands (``golden diff REF CAND``) are compared the same way but never staged: neither side is a
run judged against the store.

Layering: the CLI calls this module; it calls the core (inputs, compare, approve) and, for
``golden check``, the reports. It never prints: what to tell the user comes back as ``notes``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core.errors import EXIT_DIFFERENCE, EXIT_PASS, FormatError, GoldenError

if TYPE_CHECKING:
    from .approve import Candidate
    from .core.pairing import Finding
    from .core.result import ComparisonResult
    from .inputs import Loaded, PolicyChoice
    from .store import GoldenStore


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
    from . import inputs
    from .core.compare import compare

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
            from .store.target_names import refuse_typos

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
    prov = run.artifact.provenance if run.artifact is not None else {}
    substitutions = (prov.get("megatron_case") or {}).get("substitutions")
    if substitutions:
        subs = "; ".join(f"{k} → {v}" for k, v in substitutions.items())
        raise FormatError(f"run {run.artifact.run_id} is a CPU pre-flight on substitutes ({subs}): it is judged only "
                          "on itself (golden run prints its smoke verdict), never against the case's goldens")


def refuse_other_data(run: Loaded, reference: Loaded, case_dir: Path) -> None:
    """A run on the runner's generated corpus is never judged against a golden Megatron recorded
    on its real data: a golden in a Megatron case folder (model_config.yaml, no case.yaml) that no
    approval of this toolkit wrote (no recorded fingerprint). Megatron's lm loss after 100 real
    steps (6.2) says nothing about 20 steps on the generated corpus (10.5)."""
    from .files.case import CASE_FILE

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
    from .core.compare import compare, resume_check, side_from_goldens
    from .core.model import GoldenKey
    from .core.result import RESUME_CHECK, check_name

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
    from .approve.runs import case_of_run

    if run.artifact is not None:
        return case_of_run(store, run.artifact, given)
    if given is not None:
        return store.resolve(given)
    found = store.case_for_folder(Path(run.side.label).parent)
    return found if found is not None else store.resolve(run.case)


def _staged(store: GoldenStore, run: Loaded, judgement: Judgement) -> Judgement:
    """Stage the run for the judgement's target (outside CI); a refusal to stage is a note, never a
    change of the verdict or the exit code."""
    from .approve import stage_candidate

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
    from another job and need not reproduce its phase 1 bit for bit)."""
    from . import inputs
    from .core.compare import compare

    the_case = case or reference.case or candidate.case
    case_policy, case_source = inputs.case_metrics(store_root, the_case)
    notes = tuple(f"candidate: {n}" for n in candidate.notes) + tuple(f"reference: {n}" for n in reference.notes)
    if case_policy is not None and case is None and texts \
            and all(_loose_file_outside(text, loaded, case_source) for text, loaded in zip(texts, (reference, candidate))):
        # Two golden files from elsewhere (a Megatron checkout) that merely share a case name with
        # the store: that case's tolerances were set for its own goldens, not these.
        notes += (f"policy: {case_source} not applied (the golden files are outside its case folder; "
                  f"--case {the_case} applies it)",)
        case_policy, case_source = None, None
    detection = _operands_generation(texts, reference, store_root, policy, generation)
    if detection is not None and detection.warning:
        notes += (detection.warning,)
    policies = inputs.load_policies(policy, case_policy=case_policy, case_source=case_source,
                                    megatron_case=_operands_case(texts, (reference, candidate), store_root, the_case,
                                                                 policy), generation=detection)
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
    from . import inputs

    if policies.in_megatron_case:
        for side in loaded:
            if inputs.from_golden_files(side):
                inputs.require_megatron_readable(side.side, side.side.label)


def _megatron_case(policy: PolicyChoice, folder: Any) -> Any:
    """The Megatron case in ``folder()`` — read only for a policy that follows model_config.yaml (the
    megatron preset): another policy never reads it, so a file it does not need cannot stop it."""
    from . import inputs

    if not inputs.load_policies(policy).follows_model_config:
        return None
    return inputs.megatron_case_in(folder())


def _operands_case(texts: Sequence[str], loaded: Sequence[Loaded], store_root: Path | None,
                   case: str | None, policy: PolicyChoice) -> Any:
    """The Megatron case two operands belong to: the model_config.yaml beside the first golden file that
    has one, else the store's case of that name (None: not a Megatron case, or a policy that does not
    follow model_config.yaml)."""
    from . import inputs

    if not inputs.load_policies(policy).follows_model_config:
        return None
    for text, side in zip(texts, loaded):
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


def _operands_generation(texts: Sequence[str], reference: Loaded, store_root: Path | None, policy: str | None,
                         choice: str | None) -> Any:
    """The generation of Megatron's conventions two operands are judged by (a preset that follows
    model_config.yaml only): the tree the reference golden file lies in, else the store's."""
    from . import inputs
    from .megatron import detect_generation

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
    from . import inputs

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
    from . import inputs

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
    run = inputs.load_run(targets[0], runs_dir, env=env, platform=platform) if targets else inputs.load_file(inputs.newest_run(runs_dir, case))
    if run.artifact is None and run.side.inference is None:
        raise FormatError("one operand must be a run (artifact.json or its folder); to compare two golden files "
                          "give both", path=targets[0] if targets else None)
    from .store import GoldenStore

    judgement = judge_run(GoldenStore(store_root, generation=generation), run, case=case, env=env,
                          platform=platform, policy=policy, force=force, new_env=new_env, new_platform=new_platform)
    return _refresh_kept_result(targets[0] if targets else None, runs_dir, judgement)


def _refresh_kept_result(text: str | None, runs_dir: Path, judgement: Judgement) -> Judgement:
    """A run folder keeps the ``result.json`` its ``golden check`` wrote: a later diff of that run
    rewrites it (or removes it when there is no golden to judge by), so ``golden report RUN`` never
    shows a verdict the latest judgement overturned. A folder without one gets none."""
    import json

    from . import inputs
    from .files.atomic import atomic_write_text

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
    import json

    from reports.build import build_result_report
    from reports.output import RESULT_FILES

    from .files.atomic import atomic_write_text

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
    from . import inputs
    from .store import GoldenStore

    run = inputs.load_artifact_side(report.artifact)
    judgement = judge_run(GoldenStore(store_root, generation=generation), run, case=report.artifact.case, env=env,
                          platform=platform, policy=policy, force=force, new_env=new_env, new_platform=new_platform)
    return judgement, publish(judgement, report.artifact_path.parent, store_root=store_root)


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


def judge_bulk(paths: Sequence[str | Path], *, store_root: Path | None, policy: str | None = None,
               force: str | None = None, stage: bool = True, generation: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> BulkJudgement:
    """Every candidate under ``paths`` against the store, in one process: found (``inputs.find_candidates``),
    paired (``pairing.pair_candidates``), each judged as ``judge_run`` judges one run — staged when
    failing, by the one staging rule, when ``stage``. A file that cannot be judged is a finding; only a
    bad option, path or store stops the whole batch (GoldenError, exit 2). ``progress(done, total)`` is
    told after each target (the CLI's progress bar)."""
    from . import inputs
    from .core.pairing import Finding, pair_candidates
    from .store import GoldenStore

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
    judgements = []
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
    from . import inputs
    from .core.errors import NotATrainingGolden
    from .core.pairing import ARTIFACT
    from .files.formats.artifact import read_artifact
    from .files.formats.run import megatron_run

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
    import json

    from reports.build import build_bulk_report
    from reports.output import RESULT_FILES

    from .files.atomic import atomic_write_text

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
    atomic_write_text(findings, json.dumps({"schema": FINDINGS_SCHEMA, "findings": [f.to_json() for f in bulk.findings]},
                                           indent=2) + "\n")
    # every report is written, even when nothing could be judged: the findings are what it reports then
    reports = build_bulk_report(bulk.results, out, tuple(RESULT_FILES), store=store_root, findings=bulk.findings).files
    return [*written, findings, *reports]
