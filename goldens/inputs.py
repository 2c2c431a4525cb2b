"""Turn what a comparison is given into its two sides and its policies (``golden diff``, ``check``).

The edge between files and the pure engine: artifacts (file, run folder or run id), golden
files, store versions (``CASE@v3``) and the store's current golden for a run; a golden's
fingerprint and provenance come from the ledger entry that wrote it, and its approved history
(every version the ledger recorded) rides along for the history-aware timing check. Everything
here reads; nothing writes.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from .case import CASE_FILE, load_case, load_yaml
from .compare import Side, recorded_identity, side_from_artifact, side_from_goldens
from .errors import FormatError, GoldenError, PolicyError, StoreError
from .formats import ARTIFACT_SCHEMA, parse_artifact, parse_golden, parse_golden_filename, read_json
from .model import Artifact, GoldenKey, MetricSeries
from .policy import PRESETS, PolicySet, build_policies

RUNS_DIR = "runs"
MEGATRON_CASE_FILE = "model_config.yaml"


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

def _artifact_path(text: str, runs_dir: Path) -> Path | None:
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
    notes = ()
    if artifact.status != "complete":
        notes = (f"the run's status is {artifact.status!r}" + (f": {artifact.error}" if artifact.error else ""),)
    env, platform = prov.get("env"), prov.get("platform")
    return Loaded(side_from_artifact(artifact, label or artifact.source or artifact.run_id), artifact.case,
                  env if isinstance(env, str) else None, platform if isinstance(platform, str) else None,
                  artifact=artifact, notes=notes)


def load_file(path: Path) -> Loaded:
    """A JSON file: an artifact (by its schema) or a Megatron golden file (one phase)."""
    doc = read_json(path, golden=True)
    if isinstance(doc, dict) and "schema" in doc:
        doc = read_json(path)  # not a golden: read it again as it is (its provenance exactly as written)
    if isinstance(doc, dict) and doc.get("schema") == ARTIFACT_SCHEMA:
        return load_artifact_side(parse_artifact(doc, path=path), str(path))
    if isinstance(doc, dict) and isinstance(doc.get("schema"), str) and "phases" in doc:
        parse_artifact(doc, path=path)  # raises the precise unsupported-schema message
    parsed = parse_golden_filename(_megatron_name(path.name))
    env, platform, phase = parsed if parsed else (None, None, 1)
    case = path.resolve().parent.name
    key = GoldenKey(case, env, platform, phase) if parsed else None
    golden = parse_golden(doc, path=path, key=key)
    args = megatron_model_args(path.parent)
    return Loaded(side_from_goldens({phase: golden}, str(path), model_args=args, platform=platform),
                  case if parsed else None, env, platform)


def _megatron_name(name: str) -> str:
    """The Megatron file name inside a saved copy's name: ``f5b2ec0130_golden_values_dev_dgx_h100_2nd.json``
    (``git show REV:path > REV_name``) keeps its env, platform and phase for a diff."""
    start = name.find("golden_values_")
    return name[start:] if start > 0 else name


def megatron_model_args(case_dir: Path) -> Mapping[str, Any] | None:
    """A Megatron case folder's ``MODEL_ARGS`` (what its goldens were recorded with)."""
    path = case_dir / MEGATRON_CASE_FILE
    if not path.is_file():
        return None
    try:
        args = load_yaml(path).get("MODEL_ARGS")
    except FormatError:
        return None
    return args if isinstance(args, Mapping) else None


# ---------------------------------------------------------------- the store

def _provenance_parts(entry: Any) -> tuple[str | None, Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """(fingerprint, fingerprint fields, model args) of the ledger entry that wrote a golden."""
    if entry is None:
        return None, None, None
    return (entry.fingerprint, *recorded_identity(entry.provenance))


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


def load_store_golden(store: Any, case: str, env: str | None, platform: str | None) -> Loaded:
    """The current golden of (case, env, platform): phase 1 and, for a resume case, ``_2nd``."""
    keys = store.keys(case)
    env, platform = pick_target(keys, env, platform, f"case {case!r}")
    first = GoldenKey(case, env, platform, 1)
    if first not in keys:
        raise StoreError(f"case {case!r} has no {first.filename()}")
    goldens = {1: store.read(first)}
    second = GoldenKey(case, env, platform, 2)
    if second in keys:
        goldens[2] = store.read(second)
    fingerprint, fields, args = _provenance_parts(store.writer_of(first))
    if args is None:
        args = megatron_model_args(store.case_dir(case))
    label = str(store.case_dir(case) / first.filename())
    side = side_from_goldens(goldens, label, fingerprint=fingerprint, fingerprint_fields=fields,
                             model_args=args, platform=platform, per_phase_sources=True)
    return Loaded(replace(side, history=approved_history(store, case, env, platform)), case, env, platform)


def approved_history(store: Any, case: str, env: str, platform: str) -> dict[int, dict[str, tuple[MetricSeries, ...]]]:
    """phase → metric → the series of every content the ledger recorded for this golden (same
    env and platform), oldest first. One sample per distinct content: a rollback to an earlier
    version, or an entry that touched only other files, adds nothing. Imported versions count:
    they are the goldens a store adopted. Empty when the case has no history."""
    files = {GoldenKey(case, env, platform, phase).filename(): phase for phase in (1, 2)}
    seen: set[tuple[str, str]] = set()
    history: dict[int, dict[str, list[MetricSeries]]] = {}
    for entry in store.history(case):
        written = {(name, record.hash) for name, record in entry.files.items()
                   if name in files and record.hash is not None} - seen
        if not written:
            continue
        seen |= written
        names = {name for name, _ in written}
        for key, golden in store.read_version(case, entry.version).items():
            if key.filename() in names:
                for metric, series in golden.metrics.items():
                    history.setdefault(key.phase, {}).setdefault(metric, []).append(series)
    return {phase: {metric: tuple(series) for metric, series in metrics.items()}
            for phase, metrics in history.items()}


def has_golden(store: Any, case: str, env: str | None, platform: str | None) -> bool:
    """Whether the case has a phase-1 golden for the target (an unknown case raises)."""
    return any(k.phase == 1 and (env is None or k.env == env) and (platform is None or k.platform == platform)
               for k in store.keys(case))


def load_store_version(store: Any, case: str, version: int, env: str | None, platform: str | None) -> Loaded:
    """``CASE@vN``: the case's goldens as of ledger entry N."""
    goldens = store.read_version(case, version)
    env, platform = pick_target(list(goldens), env, platform, f"{case}@v{version}")
    phases = {k.phase: g for k, g in goldens.items() if (k.env, k.platform) == (env, platform)}
    if 1 not in phases:
        raise StoreError(f"{case}@v{version} has no phase-1 golden for {env}/{platform}")
    fingerprint, fields, args = _provenance_parts(store.writer_of(GoldenKey(case, env, platform, 1), upto=version))
    return Loaded(side_from_goldens(phases, f"{case}@v{version}", fingerprint=fingerprint,
                                    fingerprint_fields=fields, model_args=args, platform=platform),
                  case, env, platform)


def is_version_ref(text: str) -> bool:
    return "@" in text and not Path(text).exists()


def open_store(root: Path | None) -> Any:
    from .store import GoldenStore

    return GoldenStore(root)


def load_operand(text: str, *, store_root: Path | None, env: str | None, platform: str | None,
                 runs_dir: Path = Path(RUNS_DIR)) -> Loaded:
    """One operand of ``golden diff REF CAND``: CASE@vN, a golden file, an artifact or a run."""
    if is_version_ref(text):
        from .store import parse_case_ref

        case, version = parse_case_ref(text)
        if version is None:
            raise StoreError(f"{text!r}: give a version, e.g. {case}@v3")
        return load_store_version(open_store(store_root), case, version, env, platform)
    path = _artifact_path(text, runs_dir)
    if path is None:
        raise FormatError("no such file, run folder, run id or CASE@vN", path=text)
    return load_file(path)


def load_run(text: str, runs_dir: Path = Path(RUNS_DIR), *, env: str | None = None,
             platform: str | None = None) -> Loaded:
    """A run operand: an artifact, its folder, a run id under ``runs_dir``, or a Megatron
    golden_values file (with its ``_2nd`` pair) taken as a candidate run (``formats.megatron_run``;
    ``env`` / ``platform`` override its file name's)."""
    from .formats import read_run

    path = _artifact_path(text, runs_dir)
    if path is None:
        raise FormatError("no such file, run folder or run id", path=text)
    if parse_golden_filename(path) is None:
        return load_file(path)  # an artifact, or the precise reason it is none
    artifact = read_run(path, env=env, platform=platform)
    return load_artifact_side(artifact, str(path))


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

def case_metrics(store_root: Path | None, case: str | None) -> tuple[Any, str | None]:
    """The case.yaml ``metrics:`` section of a case in the store (None when there is none)."""
    if case is None:
        return None, None
    try:
        case_dir = open_store(store_root).case_dir(case)
    except StoreError:
        return None, None
    if not (case_dir / CASE_FILE).is_file():
        return None, None
    return load_case(case_dir).get("metrics"), str(case_dir / CASE_FILE)


def load_policies(policy: str | None, *, case_policy: Any = None, case_source: str | None = None) -> PolicySet:
    """``--policy`` is a preset name or a YAML/JSON policy file; case.yaml's ``metrics`` overlays
    the preset and the file overlays both."""
    document = None
    preset_name = None
    source = "policy file"
    if policy is None or policy in PRESETS:
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
                          document=document, document_source=source)
