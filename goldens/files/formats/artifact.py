"""The run artifact (``artifact.json``, schema ``golden.artifact/1``): what a run of a case leaves —
its status, provenance and each phase's metrics as Megatron metric objects — and the Megatron
golden file pair a run is exported to.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import FormatError, StoreError
from ...core.model import Artifact, GoldenKey, GoldenSet, MetricSeries, Phase
from ..atomic import atomic_write_text
from ..case import check_name
from .golden import dumps_golden, metric_to_json, parse_metric
from .jsontext import read_json
from .numeric import megatron_grid, to_step

ARTIFACT_SCHEMA = "golden.artifact/1"
ARTIFACT_STATUSES = ("complete", "incomplete", "failed")


def _require(mapping: Mapping[str, Any], field: str, types: type | tuple[type, ...], *, path: object,
             where: str) -> Any:
    if field not in mapping:
        raise FormatError(f"missing required field {field!r}", path=path, key=where or None)
    value = mapping[field]
    allowed = types if isinstance(types, tuple) else (types,)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in allowed):
        names = " or ".join(t.__name__ for t in allowed)
        raise FormatError(f"expected {names}, got {type(value).__name__}", path=path,
                          key=f"{where}.{field}" if where else field)
    return value


def _check_target_name(value: Any, field: str, *, path: object) -> None:
    if not isinstance(value, str):
        raise FormatError(f"expected a string, got {type(value).__name__}", path=path, key=f"provenance.{field}")
    try:
        check_name(value, field)
    except StoreError as exc:
        raise FormatError(str(exc), path=path, key=f"provenance.{field}") from None


def check_run_id(run_id: str, *, path: object = None) -> str:
    """A run id names a folder under runs/ and a ledger field printed one entry a line: no
    separators, no control characters (no length cap: it embeds the case name)."""
    if not run_id.isprintable() or "/" in run_id or "\\" in run_id or run_id.strip(".") == "":
        raise FormatError(f"invalid run id {run_id!r}: it must be printable, without '/' or '\\', "
                          f"and not only dots", path=path, key="run_id")
    return run_id


def preflight_substitutions(artifact: Artifact) -> str | None:
    """A CPU pre-flight's substitutions as one line (``feature → what ran instead; …``), as the runner
    recorded them in ``provenance.megatron_case``; None for a run of the case as written."""
    substitutions = (artifact.provenance.get("megatron_case") or {}).get("substitutions")
    if not substitutions:
        return None
    return "; ".join(f"{k} → {v}" for k, v in substitutions.items())


def parse_artifact(doc: Any, *, path: object = None) -> Artifact:
    if not isinstance(doc, dict):
        raise FormatError("expected an artifact object", path=path)
    schema = _require(doc, "schema", str, path=path, where="")
    if schema != ARTIFACT_SCHEMA:
        raise FormatError(f"unsupported schema {schema!r} (this version reads {ARTIFACT_SCHEMA!r})",
                          path=path, key="schema")
    case = _require(doc, "case", str, path=path, where="")
    run_id = check_run_id(_require(doc, "run_id", str, path=path, where=""), path=path)
    status = _require(doc, "status", str, path=path, where="")
    if status not in ARTIFACT_STATUSES:
        raise FormatError(f"status must be one of {', '.join(ARTIFACT_STATUSES)}, got {status!r}",
                          path=path, key="status")
    provenance = _require(doc, "provenance", dict, path=path, where="")
    for field in ("env", "platform"):  # they name the golden file the run is compared with and staged for
        if provenance.get(field) is not None:
            _check_target_name(provenance[field], field, path=path)
    raw_phases = _require(doc, "phases", dict, path=path, where="")
    phases: dict[int, Phase] = {}
    for label, raw in raw_phases.items():
        where = f"phases.{label}"
        number = to_step(label, path=path, key="phases")
        if number not in (1, 2):
            raise FormatError(f"phase must be 1 or 2, got {label!r}", path=path, key="phases")
        if not isinstance(raw, dict):
            raise FormatError("expected a phase object", path=path, key=where)
        raw_metrics = _require(raw, "metrics", dict, path=path, where=where)
        steps = _require(raw, "steps", list, path=path, where=where)
        if len(steps) != 2:
            raise FormatError("steps must be [first, last]", path=path, key=f"{where}.steps")
        first, last = (to_step(s, path=path, key=f"{where}.steps") for s in steps)
        if first > last:
            raise FormatError(f"steps must be [first, last] with first ≤ last, got {steps}", path=path,
                              key=f"{where}.steps")
        resumed = raw.get("resumed_from")
        for name in raw_metrics:  # a run's names become golden keys, printed one per line
            if not name.strip() or not name.isprintable():
                raise FormatError("a metric name must be printable text, not empty or holding control "
                                  "characters", path=path, key=name)
        metrics = {name: parse_metric(name, m, path=path) for name, m in raw_metrics.items()}
        phases[number] = Phase(number, metrics, first, last,
                               None if resumed is None else to_step(resumed, path=path, key=f"{where}.resumed_from"))
    error = doc.get("error")
    return Artifact(case, run_id, status, provenance, dict(sorted(phases.items())),
                    error=error if isinstance(error, str) else None,
                    source=None if path is None else str(path))


def read_artifact(path: str | Path) -> Artifact:
    """Read ``artifact.json`` (or a run directory holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "artifact.json"
    return parse_artifact(read_json(p), path=p)


def artifact_to_json(artifact: Artifact) -> dict[str, Any]:
    phases: dict[str, Any] = {}
    for number, phase in artifact.phases.items():
        entry: dict[str, Any] = {}
        if phase.resumed_from is not None:
            entry["resumed_from"] = phase.resumed_from
        entry["steps"] = [phase.first_step, phase.last_step]
        entry["metrics"] = {name: metric_to_json(s) for name, s in phase.metrics.items()}
        phases[str(number)] = entry
    doc: dict[str, Any] = {"schema": ARTIFACT_SCHEMA, "case": artifact.case, "run_id": artifact.run_id,
                           "status": artifact.status, "provenance": artifact.provenance, "phases": phases}
    if artifact.error:
        doc["error"] = artifact.error
    return doc


def dumps_artifact(artifact: Artifact) -> str:
    return json.dumps(artifact_to_json(artifact), indent=2, allow_nan=False) + "\n"


def artifact_phase_golden(artifact: Artifact, phase: int, *, span: tuple[int, int] | None = None) -> GoldenSet:
    """One phase as a Megatron golden set.

    Megatron's ``_2nd`` file spans the whole run (start 1 … end) with "nan" for the steps the
    resumed phase did not run; ``span`` pads the phase to that range the same way.
    """
    ph = artifact.phases[phase]
    metrics: dict[str, MetricSeries] = {}
    for name, series in ph.metrics.items():
        if span is None:
            metrics[name] = series
            continue
        lo, hi = span
        interval = series.step_interval or 1
        grid = np.union1d(megatron_grid(lo, hi, interval), series.steps)
        grid = grid[(grid >= lo) & (grid <= hi)]
        values = np.full(grid.shape, np.nan)
        idx = np.searchsorted(grid, series.steps)
        inside = (series.steps >= lo) & (series.steps <= hi)
        values[idx[inside]] = series.values[inside]
        metrics[name] = MetricSeries(name, grid, values, lo, hi, interval, series.precision)
    return GoldenSet(metrics=metrics)


def export_megatron(artifact: Artifact, directory: str | Path, env: str, platform: str) -> list[Path]:
    """Write the Megatron file pair (``golden_values_<env>_<platform>.json`` and ``_2nd.json``)."""
    out = Path(directory)
    written = []
    first = artifact.phases.get(1)
    if first is None:
        raise FormatError("artifact has no phase 1 to export", path=artifact.source)
    key = GoldenKey(artifact.case, env, platform, 1)
    target = out / key.filename()
    atomic_write_text(target, dumps_golden(artifact_phase_golden(artifact, 1)))
    written.append(target)
    if 2 in artifact.phases:
        span = (first.first_step, artifact.phases[2].last_step)
        target = out / GoldenKey(artifact.case, env, platform, 2).filename()
        atomic_write_text(target, dumps_golden(artifact_phase_golden(artifact, 2, span=span)))
        written.append(target)
    return written
