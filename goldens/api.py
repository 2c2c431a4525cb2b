"""The library's front door for notebooks and scripts: open a store, load goldens and runs, judge.

``judge`` is what ``golden diff`` does, called from Python: a run against the store's golden of
its target (or against a reference you name), under a preset, a policy file (or its content as a
dict) or a ``PolicySet`` built in Python; it returns the ``ComparisonResult`` (``result.frame()``
is its per-step table).
Nothing here writes unless asked: ``judge(..., stage=True)`` stages a run that failed (or had no
golden) for ``golden review``, by the staging rule ``golden diff`` follows, and never in CI;
``save_metrics`` writes the one file it is given a folder for. Documented in docs/api.md, whose
examples the test suite runs.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from .core.errors import FormatError, GoldenError, StoreError
from .core.model import Artifact, GoldenKey, GoldenSet, InferenceGolden, MetricSeries, Phase, valued_span
from .core.policy import PolicySet, preset
from .core.result import ComparisonResult
from .files.atomic import atomic_write_text
from .files.formats.golden import load_golden_text, parse_golden, read_any_golden
from .files.formats.run import MEGATRON_RUN_SOURCE
from .inputs import Loaded, PolicyChoice, load_artifact_side, load_operand
from .inputs import load_run as load_run_operand
from .store import GoldenStore
from .workflow.judge import judge_run
from .workflow.operands import compare_operands

__all__ = ["ComparisonResult", "GoldenError", "GoldenStore", "PolicySet", "Run", "judge", "load_golden", "load_run",
           "open_store", "preset", "run_from_metrics", "save_metrics"]

Run = Loaded
"""A candidate run as the engine takes it: its metrics (``.side``), the target it declares
(``.case``, ``.env``, ``.platform``) and, for a run, its artifact (``.artifact``)."""

METRICS_LABEL = "<metrics>"


def open_store(path: str | Path | None = None) -> GoldenStore:
    """The golden store at ``path`` (default: ``$GOLDEN_STORE``, else ``./cases``). Opening reads
    nothing yet; a folder that is no store is refused at the first read (``StoreError``)."""
    return GoldenStore(path)


def load_golden(path: str | Path) -> GoldenSet | InferenceGolden:
    """One golden_values file, faithfully: a training golden (``GoldenSet``: ``.metrics`` maps each
    name to its ``MetricSeries``) or an inference golden keyed by request id."""
    return read_any_golden(path)


def load_run(path: str | Path, *, env: str | None = None, platform: str | None = None) -> Run:
    """A run: its ``artifact.json``, its folder, or a golden_values file as Megatron's CI writes it
    (with its ``_2nd`` pair beside it, if any; ``env`` / ``platform`` override the file name's)."""
    return load_run_operand(str(path), env=env, platform=platform)


def metrics_text(metrics: Mapping[str, Any]) -> str:
    """A Megatron-style metrics dict as the JSON text of a golden_values file, full precision (numpy
    and torch numbers taken as the Python numbers they hold)."""
    def plain(value: Any) -> Any:
        if hasattr(value, "tolist"):
            return value.tolist()
        raise TypeError(f"a value of type {type(value).__name__} is not a number")

    if not isinstance(metrics, Mapping):
        raise FormatError(f"expected a mapping of metric name to metric, got {type(metrics).__name__}",
                          path=METRICS_LABEL)
    try:
        return json.dumps(metrics, indent=2, default=plain) + "\n"
    except (TypeError, ValueError) as exc:
        raise FormatError(str(exc), path=METRICS_LABEL) from None


def run_from_metrics(metrics: Mapping[str, Any], *, second: Mapping[str, Any] | None = None, case: str | None = None,
                     env: str | None = None, platform: str | None = None) -> Run:
    """A Megatron-style dict (``{"lm loss": {"start_step": 1, "end_step": 100, "step_interval": 5,
    "values": {"1": 10.49, ...}}, ...}``) as a candidate run, read by the same reader as a
    golden_values file (a malformed entry is a ``FormatError`` naming its key). ``second``: the
    resumed phase as Megatron's ``_2nd`` file holds it (steps before the resume "nan"). Kept in
    memory: ``save_metrics`` writes it where a staged candidate can point at it."""
    texts = [metrics_text(metrics)] + ([] if second is None else [metrics_text(second)])
    phases = {number: _phase(number, text) for number, text in enumerate(texts, start=1)}
    digest = hashlib.sha256("".join(texts).encode()).hexdigest()[:12]
    artifact = Artifact(case=case or "", run_id=f"metrics-{digest}", status="complete",
                        provenance={"source": MEGATRON_RUN_SOURCE, "env": env, "platform": platform}, phases=phases)
    return load_artifact_side(artifact, METRICS_LABEL)


def _phase(number: int, text: str) -> Phase:
    """One phase from a golden_values document's text; a resumed phase from its first value on (the
    steps before it are padding, not steps it ran)."""
    where = METRICS_LABEL if number == 1 else f"{METRICS_LABEL} (resumed phase)"
    golden = parse_golden(load_golden_text(text, where), path=where)
    if golden.scalars:
        raise FormatError(f"scalar entries ({', '.join(golden.scalars)}) cannot be a candidate run: only per-step "
                          f"metrics", path=where)
    metrics = {}
    for name, series in golden.metrics.items():
        span = valued_span(series.values)
        if number == 2:
            series = MetricSeries(name, series.steps[span.start:], series.values[span.start:], series.start_step,
                                  series.end_step, series.step_interval)
            span = slice(0, span.stop - span.start)
        metrics[name] = (series, span)
    valued = [(series.steps, span) for series, span in metrics.values() if span.start < span.stop]
    if not valued:
        raise FormatError("no metric has a value at any step", path=where)
    first = min(int(steps[span.start]) for steps, span in valued)
    last = max(int(steps[span.stop - 1]) for steps, span in valued)
    return Phase(number, {name: series for name, (series, _) in metrics.items()}, first, last,
                 first - 1 if number == 2 else None)


def save_metrics(metrics: Mapping[str, Any], folder: str | Path, *, env: str, platform: str,
                 second: Mapping[str, Any] | None = None) -> Path:
    """Write a Megatron-style dict as ``folder/golden_values_<env>_<platform>.json`` (and ``second``
    as its ``_2nd`` file), atomically: the files Megatron's CI writes. ``load_run`` reads them back as
    one run, and a candidate staged from it points at them. Returns the first file."""
    folder = Path(folder)
    for number, doc in ((2, second), (1, metrics)):
        path = folder / GoldenKey("", env, platform, number).filename()
        if doc is not None:
            atomic_write_text(path, metrics_text(doc))
        elif path.exists():
            path.unlink()  # a resumed phase from an earlier save is not this run's
    return path


def run_of(candidate: Any, *, case: str | None = None, env: str | None = None, platform: str | None = None) -> Run:
    """What ``judge`` accepts as a candidate, as a run: a path (``load_run``), a run already loaded,
    an ``Artifact``, or a Megatron-style metrics dict (``run_from_metrics``)."""
    if isinstance(candidate, Loaded):
        return candidate
    if isinstance(candidate, Artifact):
        return load_artifact_side(candidate)
    if isinstance(candidate, Mapping):
        return run_from_metrics(candidate, case=case, env=env, platform=platform)
    if isinstance(candidate, (str, Path)):
        return load_run(candidate, env=env, platform=platform)
    raise FormatError(f"a candidate is a path, a run, an artifact or a metrics dict, not a {type(candidate).__name__}")


def policy_argument(policy: str | Path | PolicySet | Mapping[str, Any] | None) -> PolicyChoice:
    """A preset name, a policy file (str or Path), a ``PolicySet`` or a policy document (a dict), as
    the workflow takes it."""
    return str(policy) if isinstance(policy, Path) else policy


def judge(candidate: Any, *, store: GoldenStore | str | Path | None = None, reference: str | Path | None = None,
          case: str | None = None, env: str | None = None, platform: str | None = None,
          policy: str | Path | PolicySet | Mapping[str, Any] | None = "default", force: str | None = None,
          stage: bool = False) -> ComparisonResult:
    """Judge ``candidate`` (see ``run_of``) and return the result; ``result.passed`` is the verdict.

    Against the store's current golden of (case, env, platform) — each defaulting to what the run
    declares — or, with ``reference`` (a golden file, an artifact, a run folder or ``CASE@REF``),
    against that. ``policy``: ``"default"``, ``"megatron"``, a policy file or its content as a dict
    (either overlays everything, as ``--policy`` does), or a ``PolicySet`` (it takes the preset's
    place: a Megatron case's model_config.yaml and case.yaml still overlay it).
    ``force``: ``"exact"`` or ``"approx"`` instead of the regime the fingerprints decide.

    Nothing is written unless ``stage=True``: then a run that failed is staged for ``golden review``
    (outside CI), and the result's ``warnings`` say what was staged or why not. A target with no
    golden yet raises ``StoreError`` (after staging the run, when asked).
    """
    the_policy = policy_argument(policy)
    store_obj = store if isinstance(store, GoldenStore) else open_store(store)
    if isinstance(candidate, Mapping) and case is None and reference is None:
        raise FormatError("a metrics dict names no case: give case=", path=METRICS_LABEL)
    run = run_of(candidate, case=case, env=env, platform=platform)
    if reference is not None:
        if stage:
            raise GoldenError("stage=True judges against the store's golden, which a reference replaces: give one "
                              "or the other")
        ref = load_operand(str(reference), store_root=store_obj.root, env=env, platform=platform)
        texts = (str(reference), str(candidate) if isinstance(candidate, (str, Path)) else run.side.label)
        judgement = compare_operands(ref, run, store_root=store_obj.root, case=case, env=env,
                                     platform=platform, policy=the_policy, force=force, texts=texts)
    else:
        judgement = judge_run(store_obj, run, case=case, env=env, platform=platform, policy=the_policy,
                              force=force, stage=stage)
    if judgement.result is None:
        raise StoreError("; ".join(judgement.notes) or f"case {judgement.case!r} has no golden")
    if judgement.notes:
        return replace(judgement.result, warnings=(*judgement.result.warnings, *judgement.notes))
    return judgement.result
