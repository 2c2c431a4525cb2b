"""Turn what a comparison is given into its two sides and its policies (``golden diff``, ``check``).

The edge between files and the pure engine: artifacts (file, run folder or run id), golden
files, store versions (``CASE@v3`` in a ledger store, ``CASE@<commit>`` in git) and the store's
current golden for a run; a golden's fingerprint and provenance come from the version that wrote
it, and its approved history (every version the store recorded) rides along for the
history-aware timing check. Everything here reads; nothing writes.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .core.compare import Side, recorded_identity, side_from_artifact, side_from_goldens, side_from_inference
from .core.compare.history import uses_history
from .core.errors import FormatError, GoldenError, NotATrainingGolden, PolicyError, StoreError
from .core.megatron import Detection, MegatronCase
from .core.model import Artifact, GoldenKey, MetricSeries
from .core.pairing import ARTIFACT, GOLDEN, CandidateFile, Finding
from .core.policy import PRESETS, PolicySet, build_policies
from .files.case import CASE_FILE, load_case, load_yaml
from .files.formats.artifact import ARTIFACT_SCHEMA, parse_artifact, read_artifact
from .files.formats.golden import parse_golden, parse_golden_filename, read_golden_json
from .files.formats.inference import is_inference_doc, parse_inference, read_inference
from .files.formats.jsontext import read_json
from .files.formats.run import MEGATRON_RUN_SOURCE, read_run
from .megatron.case import MODEL_CONFIG, find_model_config, read_megatron_case
from .store import GoldenStore, Version, parse_case_ref

RUNS_DIR = "runs"


@dataclass(frozen=True)
class Loaded:
    """One side plus what it says about its identity (case, env, platform)."""

    side: Side
    case: str | None = None
    env: str | None = None
    platform: str | None = None
    artifact: Artifact | None = None
    notes: tuple[str, ...] = field(default=())


# ---------------------------------------------------------------- artifacts and golden files

def artifact_path(text: str, runs_dir: Path) -> Path | None:
    path = Path(text)
    if path.is_dir():
        return path / "artifact.json"
    if path.is_file():
        return path
    if "/" not in text and (runs_dir / text / "artifact.json").is_file():
        return runs_dir / text / "artifact.json"
    return None


def load_artifact_side(artifact: Artifact, label: str | None = None) -> Loaded:
    prov = artifact.provenance
    notes: tuple[str, ...] = ()
    if artifact.status != "complete":
        notes = (f"the run's status is {artifact.status!r}" + (f": {artifact.error}" if artifact.error else ""),)
    env, platform = prov.get("env"), prov.get("platform")
    return Loaded(side_from_artifact(artifact, label or artifact.source or artifact.run_id), artifact.case,
                  env if isinstance(env, str) else None, platform if isinstance(platform, str) else None,
                  artifact=artifact, notes=notes)


def load_file(path: Path) -> Loaded:
    """A JSON file: an artifact (by its schema), a Megatron golden file (one phase) or an inference
    golden (keyed by request id)."""
    doc = read_golden_json(path)
    if isinstance(doc, dict) and "schema" in doc:
        doc = read_json(path)  # not a golden: read it again as it is (its provenance exactly as written)
    if isinstance(doc, dict) and doc.get("schema") == ARTIFACT_SCHEMA:
        return load_artifact_side(parse_artifact(doc, path=path), str(path))
    if isinstance(doc, dict) and isinstance(doc.get("schema"), str) and "phases" in doc:
        parse_artifact(doc, path=path)  # raises the precise unsupported-schema message
    parsed = parse_golden_filename(_megatron_name(path.name))
    env, platform, phase = parsed if parsed else (None, None, 1)
    case = path.resolve().parent.name
    if is_inference_doc(doc):
        return Loaded(side_from_inference(parse_inference(doc, path=path), str(path), platform=platform),
                      case if parsed else None, env, platform)
    key = GoldenKey(case, *parsed) if parsed else None
    golden = parse_golden(doc, path=path, key=key)
    args = megatron_model_args(path.parent)
    return Loaded(side_from_goldens({phase: golden}, str(path), model_args=args, platform=platform),
                  case if parsed else None, env, platform)


def _megatron_name(name: str) -> str:
    """The Megatron file name inside a saved copy's name: ``f5b2ec0130_golden_values_dev_dgx_h100_2nd.json``
    (``git show REV:path > REV_name``) keeps its env, platform and phase for a diff."""
    start = name.find("golden_values_")
    return name[start:] if start > 0 else name


_MEGATRON_CASES: dict[tuple[str, int, int], MegatronCase] = {}


def megatron_case_in(folder: Path | None) -> MegatronCase | None:
    """The Megatron case whose model_config.yaml is in ``folder`` (None: not a Megatron case).
    Read once per file version in a process: a bulk judgement asks for it once per target."""
    if folder is None:
        return None
    path = find_model_config(folder)
    if path is None:
        return None
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _MEGATRON_CASES:
        _MEGATRON_CASES[key] = read_megatron_case(path)
    return _MEGATRON_CASES[key]


def megatron_model_args(case_dir: Path) -> Mapping[str, Any] | None:
    """A Megatron case folder's ``MODEL_ARGS`` (what its goldens were recorded with)."""
    try:
        case = megatron_case_in(case_dir)
        args = None if case is None else case.model_args
    except FormatError:  # a setting Megatron's test errors on: the arguments are still worth showing
        try:
            args = load_yaml(case_dir / MODEL_CONFIG).get("MODEL_ARGS")
        except FormatError:
            return None
    return args if isinstance(args, Mapping) else None


# ---------------------------------------------------------------- the store

def _provenance_parts(version: Version | None
                      ) -> tuple[str | None, Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """(fingerprint, fingerprint fields, model args) of the version that wrote a golden."""
    if version is None:
        return None, None, None
    return (version.fingerprint, *recorded_identity(version.provenance))


def pick_target(keys: list[GoldenKey], env: str | None, platform: str | None, what: str) -> tuple[str, str]:
    """The (env, platform) to use: as given, or the only one there is."""
    pairs = sorted({(k.env, k.platform) for k in keys})
    matching = [p for p in pairs if (env is None or p[0] == env) and (platform is None or p[1] == platform)]
    if len(matching) == 1:
        return matching[0]
    listing = ", ".join(f"{e}/{p}" for e, p in pairs) or "none"
    if not matching:
        wanted = "/".join(x or "*" for x in (env, platform))
        raise StoreError(f"{what} has no golden for {wanted} (has: {listing})")
    raise StoreError(f"{what} has goldens for several targets ({listing}): give --env and --platform")


def load_store_golden(store: GoldenStore, case: str, env: str | None, platform: str | None,
                      phases: tuple[int, ...] | None = None, keys: list[GoldenKey] | None = None, *,
                      policies: PolicySet | None = None) -> Loaded:
    """The current golden of (case, env, platform): phase 1 and, for a resume case, ``_2nd`` — unless
    ``phases`` (the policy's compared phases) leaves it out: then it is not even read. ``keys``: the
    case's golden files, when the caller has listed them already. ``case``: its path in the store, or
    a name only one case has. ``policies``: when given, the approved history is read only if one of
    the golden's metrics has a rule that uses it (``needs_history``); a judge of a whole tree under
    rules that never look at history reads none."""
    case = store.resolve(case)
    keys = store.keys(case) if keys is None else keys
    env, platform = pick_target(keys, env, platform, f"case {case!r}")
    first = GoldenKey(case, env, platform, 1)
    if first not in keys:
        raise StoreError(f"case {case!r} has no {first.filename()}")
    try:
        goldens = {1: store.read(first)}
    except NotATrainingGolden:
        path = store.case_dir(case) / first.filename()
        return Loaded(side_from_inference(read_inference(path), str(path), platform=platform), case, env, platform)
    second = GoldenKey(case, env, platform, 2)
    notes: tuple[str, ...] = ()
    if second in keys and (phases is None or 2 in phases):
        goldens[2] = store.read(second)
    elif second in keys:
        notes = (f"{second.filename()} not read: the policy compares phase 1 with the golden (Megatron's CI never "
                 f"reads a checked-in _2nd file; the resume check compares the run's two phases)",)
    fingerprint, fields, args = _provenance_parts(store.writer_of(first))
    if args is None:
        args = megatron_model_args(store.case_dir(case))
    label = str(store.case_dir(case) / first.filename())
    side = side_from_goldens(goldens, label, fingerprint=fingerprint, fingerprint_fields=fields,
                             model_args=args, platform=platform, per_phase_sources=True)
    wanted = policies is None or needs_history(policies, {m for g in goldens.values() for m in g.metrics})
    return Loaded(replace(side, history=approved_history(store, case, env, platform) if wanted else None), case, env,
                  platform, notes=notes)


def needs_history(policies: PolicySet, metrics: Iterable[str]) -> bool:
    """Whether any of ``metrics`` is judged by a rule that reads the approved history."""
    return any((p := policies.resolve(name).policy) is not None and uses_history(p) for name in metrics)


def approved_history(store: GoldenStore, case: str, env: str,
                     platform: str) -> dict[int, dict[str, tuple[MetricSeries, ...]]]:
    """phase → metric → the series of every content the history recorded for this golden (same
    env and platform), oldest first. One sample per distinct content: a rollback to an earlier
    version, or a version that touched only other files, adds nothing. Imported (and, in git,
    unattributed) versions count: they are goldens the store held. Empty when the case has no
    history."""
    keys = [GoldenKey(case, env, platform, phase) for phase in (1, 2)]
    files = {key.filename() for key in keys}
    seen: set[tuple[str, str]] = set()
    history: dict[int, dict[str, list[MetricSeries]]] = {}
    for version in store.history(case):
        written = {(name, record.hash) for name, record in version.files.items()
                   if name in files and record.hash is not None} - seen
        if not written:
            continue
        seen |= written
        names = {name for name, _ in written}
        try:
            goldens = store.read_version(case, version.ref, keys=[k for k in keys if k.filename() in names])
        except GoldenError:
            continue  # a version that cannot be read (an unreadable file another tool committed) adds nothing
        for key, golden in goldens.items():
            for metric, series in golden.metrics.items():
                history.setdefault(key.phase, {}).setdefault(metric, []).append(series)
    return {phase: {metric: tuple(series) for metric, series in metrics.items()}
            for phase, metrics in history.items()}


def has_golden(store: GoldenStore, case: str, env: str | None, platform: str | None,
               keys: list[GoldenKey] | None = None) -> bool:
    """Whether the case has a phase-1 golden for the target (an unknown case raises)."""
    return any(k.phase == 1 and (env is None or k.env == env) and (platform is None or k.platform == platform)
               for k in (store.keys(case) if keys is None else keys))


def load_store_version(store: GoldenStore, case: str, version: str, env: str | None, platform: str | None) -> Loaded:
    """``CASE@REF``: the case's goldens as of a version (``vN`` in a ledger store, a git revision in
    a git store); an unreadable file of another target does not matter."""
    case = store.resolve(case)
    found = store.goldens(case, version)
    env, platform = pick_target(list(found), env, platform, f"{case}@{version}")
    phases = {}
    for key, golden in found.items():
        if (key.env, key.platform) == (env, platform):
            if isinstance(golden, GoldenError):
                raise golden
            phases[key.phase] = golden
    if 1 not in phases:
        raise StoreError(f"{case}@{version} has no phase-1 golden for {env}/{platform}")
    fingerprint, fields, args = _provenance_parts(store.writer_of(GoldenKey(case, env, platform, 1), upto=version))
    return Loaded(side_from_goldens(phases, f"{case}@{version}", fingerprint=fingerprint,
                                    fingerprint_fields=fields, model_args=args, platform=platform),
                  case, env, platform)


def is_version_ref(text: str) -> bool:
    return "@" in text and not Path(text).exists()


def open_store(root: Path | None) -> GoldenStore:
    return GoldenStore(root)


def load_operand(text: str, *, store_root: Path | None, env: str | None, platform: str | None,
                 runs_dir: Path = Path(RUNS_DIR)) -> Loaded:
    """One operand of ``golden diff REF CAND``: CASE@REF, a golden file, an artifact or a run."""
    if is_version_ref(text):
        case, version = parse_case_ref(text)
        if version is None:
            raise StoreError(f"{text!r}: give a version, e.g. {case}@v3 (ledger) or {case}@HEAD~1 (git)")
        return load_store_version(open_store(store_root), case, version, env, platform)
    path = artifact_path(text, runs_dir)
    if path is None:
        raise FormatError("no such file, run folder, run id or CASE@vN", path=text)
    return load_file(path)


def load_run(text: str, runs_dir: Path = Path(RUNS_DIR), *, env: str | None = None,
             platform: str | None = None) -> Loaded:
    """A run operand: an artifact, its folder, a run id under ``runs_dir``, or a Megatron
    golden_values file (with its ``_2nd`` pair) taken as a candidate run (``formats.run.megatron_run``;
    ``env`` / ``platform`` override its file name's)."""
    path = artifact_path(text, runs_dir)
    if path is None:
        raise FormatError("no such file, run folder or run id", path=text)
    if parse_golden_filename(path) is None:
        return load_file(path)  # an artifact, or the precise reason it is none
    try:
        artifact = read_run(path, env=env, platform=platform)
    except NotATrainingGolden:
        return load_inference_run(path, env=env, platform=platform)
    return load_artifact_side(artifact, str(path))


def load_inference_run(path: Path, *, case: str | None = None, env: str | None = None,
                       platform: str | None = None) -> Loaded:
    """An inference golden_values file as Megatron's CI writes it, taken as a candidate (no artifact:
    it is judged, never staged)."""
    file_env, file_platform, _ = parse_golden_filename(path) or (None, None, 1)
    target_platform = platform or file_platform
    side = side_from_inference(read_inference(path), str(path), platform=target_platform)
    return Loaded(side, case or path.resolve().parent.name, env or file_env, target_platform)


def newest_run(runs_dir: Path, case: str | None) -> Path:
    """The most recent ``runs/<id>/artifact.json`` (of ``case`` when given)."""
    if not runs_dir.is_dir():
        raise FormatError("no runs folder: give an ARTIFACT or RUN_DIR", path=runs_dir)
    found = []
    for path in runs_dir.glob("*/artifact.json"):
        if case is not None:
            try:
                doc = read_json(path)
            except GoldenError:
                continue
            if not isinstance(doc, dict) or doc.get("case") != case:
                continue
        found.append((path.stat().st_mtime, str(path), path))
    if not found:
        which = f" of case {case!r}" if case else ""
        raise FormatError(f"no run{which} found: give an ARTIFACT or RUN_DIR", path=runs_dir)
    return max(found)[2]


# ---------------------------------------------------------------- policies

def case_metrics(store: GoldenStore | Path | None, case: str | None) -> tuple[Any, str | None]:
    """The case.yaml ``metrics:`` section of a case in the store — an open ``GoldenStore``, or its
    root — (None when there is none)."""
    if case is None:
        return None, None
    try:
        case_dir = (store if isinstance(store, GoldenStore) else open_store(store)).case_dir(case)
    except StoreError:
        return None, None  # not a case of this store, or a name several cases share
    if not (case_dir / CASE_FILE).is_file():
        return None, None
    return load_case(case_dir).get("metrics"), str(case_dir / CASE_FILE)


PolicyChoice = str | PolicySet | Mapping[str, Any] | None
"""What a caller names a comparison's policies by: a preset, a policy file, and from Python also a
``PolicySet`` or a policy document (a dict, as a policy file holds it)."""


def load_policies(policy: PolicyChoice, *, case_policy: Any = None, case_source: str | None = None,
                  megatron_case: MegatronCase | None = None, generation: Detection | None = None) -> PolicySet:
    """``--policy`` is a preset name or a YAML/JSON policy file; a Megatron case's model_config.yaml
    decides for a preset that follows it (megatron), case.yaml's ``metrics`` overlays that and the
    file overlays all. From Python (the library API): a ``PolicySet`` takes a preset's place, and a
    policy document (a dict) is a policy file's content. ``generation``: the tree's generation of
    Megatron's conventions (``goldens.megatron.Detection``), for a preset that follows model_config.yaml."""
    if isinstance(policy, PolicySet):
        return build_policies(base=policy, case_metrics=case_policy, case_source=case_source or "case.yaml",
                              megatron_case=megatron_case, generation=generation)
    document = None
    preset_name = None
    source = "policy file"
    if isinstance(policy, Mapping):
        document, source = policy, "policy (a dict)"
    elif policy is None or policy in PRESETS:
        preset_name = policy
    else:
        path = Path(policy)
        if not path.is_file():
            raise PolicyError(f"--policy {policy!r}: neither a preset ({', '.join(PRESETS)}) nor a policy file")
        try:
            document = load_yaml(path)
        except FormatError as exc:
            raise PolicyError(str(exc)) from None
        source = str(path)
    return build_policies(preset_name=preset_name, case_metrics=case_policy, case_source=case_source or "case.yaml",
                          document=document, document_source=source, megatron_case=megatron_case,
                          generation=generation)


# ---------------------------------------------------------------- candidates in bulk

ARTIFACT_FILE = "artifact.json"


def find_candidates(paths: Sequence[str | Path]) -> tuple[list[CandidateFile], list[Finding]]:
    """Every candidate under ``paths`` (files, or folders searched recursively, hidden folders left out):
    golden_values files and run artifacts, each with the folder it was found in relative to the path it
    was given in. A file that cannot be read as a candidate is a finding. A path that does not exist
    is a usage error (FormatError): nothing was given to judge there."""
    files: list[CandidateFile] = []
    findings: list[Finding] = []
    for raw in paths:
        given = Path(raw)
        if given.is_file():
            found = [(given, given.parent.name, "")]
        elif given.is_dir():
            top = given.resolve().name
            found = []
            for folder, dirs, names in os.walk(given):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                here = Path(folder)
                relative = here.relative_to(given).as_posix()
                for name in sorted(names):
                    if name == ARTIFACT_FILE or name.startswith("golden_values"):
                        found.append((here / name, top, "" if relative == "." else relative))
        else:
            raise FormatError("no such file or folder of candidates", path=given)
        for path, top, folder in found:
            parsed = parse_golden_filename(path)
            if parsed is not None:
                env, platform, phase = parsed
                files.append(CandidateFile(str(path), GOLDEN, env, platform, phase, folder, top))
            elif path.name.startswith("golden_values"):
                findings.append(Finding(str(path), "not-a-candidate", "not named golden_values_<env>_<platform>"
                                                                      "[_2nd].json"))
            elif path.name == ARTIFACT_FILE or given.is_file():
                try:
                    artifact = read_artifact(path)
                except GoldenError as exc:
                    findings.append(Finding(str(path), "broken", str(exc)))
                    continue
                declared_env, declared_platform = (artifact.provenance.get("env"),
                                                   artifact.provenance.get("platform"))
                files.append(CandidateFile(str(path), ARTIFACT,
                                           declared_env if isinstance(declared_env, str) else None,
                                           declared_platform if isinstance(declared_platform, str) else None, 1,
                                           folder, top, artifact.case))
    return files, findings


def from_golden_files(loaded: Loaded) -> bool:
    """A side read from golden_values files (a golden, or Megatron's CI output as a candidate run),
    not a run artifact of this toolkit."""
    return loaded.artifact is None or loaded.artifact.provenance.get("source") == MEGATRON_RUN_SOURCE


def require_megatron_readable(side: Side, what: str) -> None:
    """In a Megatron case, a training golden Megatron's own reader refuses (pydantic: every metric an
    object with start_step, end_step, step_interval and values; nothing else at the top level) makes
    its test error, so the verdict cannot be a pass: an input error naming why."""
    if side.inference is not None:
        return
    if side.scalars:
        raise FormatError(f"top-level entries that are not metric objects ({', '.join(side.scalars)}): Megatron's "
                          f"reader refuses the file (its test errors)", path=what)
    for phase in side.phases.values():
        for name, series in phase.items():
            missing = [f for f in ("start_step", "end_step", "step_interval") if getattr(series, f) is None]
            if missing:
                raise FormatError(f"metric {name!r} has no {missing[0]!r}: Megatron's reader refuses the file (its "
                                  f"test errors)", path=what)
