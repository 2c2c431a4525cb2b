"""Classify golden files and case definitions as ok / warning / error, each finding with a reason.

Pure apart from reading the files it is given: a bad file is a finding, never an exception, and
nothing is printed (the CLI renders). ``check_golden_set`` is the in-memory half that the store
also runs before it writes anything.

The NaN rule: Megatron's reader and comparator take "nan" anywhere in a series as a step with no
value (its CI wrote such files: resumed phases, un-timed first iterations, steps not logged), so a
*leading* run of "nan" is fine and a NaN after the first value is a warning naming the steps — never
an error, never a reason to refuse an approval. Any infinity is an error. Megatron's linter
(``tools/check_golden_values.py``) is stricter on the files a change touches: ``lint_changed`` applies
it (any NaN or infinity in a changed file, and since PR #7217 the full-precision marker on a changed
block of a deterministic case).
"""
from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import FormatError, NotATrainingGolden
from ..core.megatron import CHECK_THRESHOLDS
from ..core.model import GoldenSet, MetricSeries
from .case import CASE_FILE, load_yaml
from .formats.golden import StepValues, parse_golden, parse_golden_filename, read_golden_json
from .formats.numeric import grid_size, grid_steps

MEGATRON_CASE_FILE = "model_config.yaml"
CASE_DEFINITION_FILES = (CASE_FILE, MEGATRON_CASE_FILE)
GOLDEN_PREFIX = "golden_values"

# Metric names Megatron's functional tests log (and the toolkit has defaults for); any other
# name is a warning unless the case's case.yaml declares it under ``metrics``.
KNOWN_METRICS = frozenset({
    "lm loss", "num-zeros", "iteration-time", "mem-allocated-bytes", "mem-max-allocated-bytes",
    "mem-reserved-bytes", "mem-max-reserved-bytes", "mtp_1 loss", "validation loss",
    "grad-norm", "params-norm", "learning-rate", "loss-scale", "load_balancing_loss",
}) | frozenset(CHECK_THRESHOLDS)  # every name Megatron's threshold table knows (total loss, mtp_2 loss, …)
KNOWN_SCALARS = frozenset({"iteration_timing_avg"})
SHOWN_STEPS = 5  # how many example steps a message lists

OK, WARNING, ERROR = "ok", "warning", "error"


@dataclass(frozen=True, slots=True)
class Finding:
    severity: str  # WARNING | ERROR
    message: str
    metric: str | None = None
    step: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"severity": self.severity, "message": self.message, "metric": self.metric, "step": self.step}


@dataclass(frozen=True, slots=True)
class FileReport:
    """One checked file: its kind ("golden" or "case") and what was found in it."""

    path: str
    kind: str
    findings: tuple[Finding, ...] = ()

    @property
    def status(self) -> str:
        severities = {f.severity for f in self.findings}
        return ERROR if ERROR in severities else WARNING if WARNING in severities else OK

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "status": self.status,
                "findings": [f.to_json() for f in self.findings]}


@dataclass(frozen=True, slots=True)
class ValidationSummary:
    reports: tuple[FileReport, ...] = field(default_factory=tuple)

    def count(self, status: str) -> int:
        return sum(1 for r in self.reports if r.status == status)

    @property
    def worst(self) -> str:
        statuses = {r.status for r in self.reports}
        return ERROR if ERROR in statuses else WARNING if WARNING in statuses else OK

    def to_json(self) -> dict[str, Any]:
        return {"files": [r.to_json() for r in self.reports],
                "summary": {s: self.count(s) for s in (OK, WARNING, ERROR)}}


# ---------------------------------------------------------------- in-memory checks (the store uses these)

def _steps_text(steps: np.ndarray, total: int | None = None) -> str:
    """The first steps, and how many there are (``total`` when ``steps`` holds only the first few)."""
    total = steps.size if total is None else total
    shown = ", ".join(str(int(s)) for s in steps[:SHOWN_STEPS])
    return shown + (f", … ({total} in all)" if total > SHOWN_STEPS else "")


def check_values(series: MetricSeries) -> list[Finding]:
    """Any infinity is an error; NaN after the first value a warning (Megatron reads it as a step
    with no value); a leading NaN run is allowed."""
    findings = []
    name, values, steps = series.name, series.values, series.steps
    infinite = np.isinf(values)
    if infinite.any():
        bad = steps[infinite]
        findings.append(Finding(ERROR, f"{name!r}: infinite value at step {_steps_text(bad)}",
                                metric=name, step=int(bad[0])))
    nan = np.isnan(values)
    if values.size and nan.all():
        findings.append(Finding(WARNING, f"{name!r}: no value at any step (all NaN)", metric=name))
    elif nan.any():
        first_value = int(np.argmin(nan))
        inner = steps[first_value:][nan[first_value:]]
        if inner.size:
            findings.append(Finding(
                WARNING, f"{name!r}: \"nan\" at step {_steps_text(inner)} after values began at step "
                         f"{int(steps[first_value])}: read as steps with no value, as Megatron's reader does",
                metric=name, step=int(inner[0])))
    return findings


def check_grid(series: MetricSeries) -> list[Finding]:
    """The steps against the header's start/end/interval (Megatron's grid: start 1, interval 5
    → 1, 5, 10, …): steps outside the range or off the grid are errors, grid steps absent a warning."""
    name, steps = series.name, series.steps
    start, end, interval = series.start_step, series.end_step, series.step_interval
    if start is None or end is None or interval is None:
        header = {"start_step": start, "end_step": end, "step_interval": interval}
        missing = [f for f, v in header.items() if v is None]
        return [Finding(WARNING, f"{name!r}: no {', '.join(missing)} in the metric header", metric=name)]
    if interval <= 0:
        return [Finding(ERROR, f"{name!r}: step_interval must be positive, got {interval}", metric=name)]
    if end < start:
        return [Finding(ERROR, f"{name!r}: end_step {end} is before start_step {start}", metric=name)]
    if steps.size == 0:
        return [Finding(WARNING, f"{name!r}: no steps at all", metric=name)]
    findings = []
    outside = steps[(steps < start) | (steps > end)]
    if outside.size:
        findings.append(Finding(ERROR, f"{name!r}: step {_steps_text(outside)} outside start_step "
                                       f"{start} … end_step {end}", metric=name, step=int(outside[0])))
    inside = steps[(steps >= start) & (steps <= end)]
    on_grid = (inside == start) | (inside % interval == 0)
    off_grid = inside[~on_grid]
    if off_grid.size:
        findings.append(Finding(ERROR, f"{name!r}: step {_steps_text(off_grid)} off the grid declared by "
                                       f"start_step {start}, step_interval {interval}",
                                metric=name, step=int(off_grid[0])))
    absent_count = grid_size(start, end, interval) - int(np.count_nonzero(on_grid))
    if absent_count:
        absent = _first_absent(start, end, interval, inside[on_grid], SHOWN_STEPS)
        findings.append(Finding(WARNING, f"{name!r}: grid step {_steps_text(absent, absent_count)} absent (header "
                                         f"says {start} … {end} every {interval})", metric=name, step=int(absent[0])))
    return findings


def _first_absent(start: int, end: int, interval: int, present: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` grid steps not in ``present`` (sorted, all on the grid), walking the grid
    a block at a time: about ``present.size + count`` grid steps are made, whatever end_step says."""
    size = grid_size(start, end, interval)
    found: list[int] = []
    first = 0
    while len(found) < count and first < size:
        grid = grid_steps(start, interval, first, min(max(1024, present.size), size - first))
        missing = grid[~np.isin(grid, present, assume_unique=True)]
        found += missing[: count - len(found)].tolist()
        first += grid.size
    return np.array(found, dtype=np.int64)


def check_golden_set(golden: GoldenSet, *, known_metrics: Iterable[str] = (),
                     list_metrics: Iterable[str] = ()) -> list[Finding]:
    """Everything that can be judged from the parsed data alone.

    ``known_metrics`` adds names (e.g. declared in case.yaml) to the built-in set;
    ``list_metrics`` names metrics written in the older list form, whose grid is start + i·interval.
    """
    known = KNOWN_METRICS | set(known_metrics)
    as_list = set(list_metrics)
    findings: list[Finding] = []
    for name, series in golden.metrics.items():
        if name not in known:
            findings.append(Finding(WARNING, f"unknown metric {name!r} (not a known Megatron metric nor "
                                             f"declared in case.yaml): no default tolerance applies", metric=name))
        findings += check_values(series)
        findings += _check_list_grid(series) if name in as_list else check_grid(series)
    for name, value in golden.scalars.items():
        if not np.isfinite(value):
            findings.append(Finding(ERROR, f"scalar {name!r} is {value!r}", metric=name))
        if name not in KNOWN_SCALARS | known:
            findings.append(Finding(WARNING, f"unknown scalar entry {name!r}", metric=name))
    return findings


def _check_list_grid(series: MetricSeries) -> list[Finding]:
    """Older list files: N values from start_step by step_interval, end_step inclusive or exclusive."""
    start, end, interval = series.start_step, series.end_step, series.step_interval
    if end is None or start is None or not interval:
        return []
    span = max(end - start, 0)
    fits = {-(-span // interval), span // interval + 1}
    if len(series) not in fits:
        return [Finding(WARNING, f"{series.name!r}: {len(series)} values do not fill start_step {start} … "
                                 f"end_step {end} every {interval} (expected {' or '.join(map(str, sorted(fits)))})",
                        metric=series.name)]
    return []


# ---------------------------------------------------------------- files

def _written_order_findings(doc: dict[str, Any]) -> list[Finding]:
    """Steps written out of increasing order (the reader sorts them; the file is still odd)."""
    findings = []
    for name, raw in doc.items():
        values = raw.get("values") if isinstance(raw, dict) else None
        if isinstance(values, (dict, StepValues)) and len(values) > 1:
            steps = (values.steps if isinstance(values, StepValues)
                     else np.array([int(s) for s in values], dtype=np.int64))
            descending = np.flatnonzero(np.diff(steps) <= 0)
            if descending.size:
                at = int(steps[descending[0] + 1])
                findings.append(Finding(WARNING, f"{name!r}: steps not in increasing order (step {at} written "
                                                 f"after {int(steps[descending[0]])})", metric=name, step=at))
    return findings


def declared_metrics(case_dir: Path) -> frozenset[str]:
    """Metric names a case.yaml declares under ``metrics`` (its tolerance policies); {} if none/unreadable."""
    path = case_dir / CASE_FILE
    if not path.is_file():
        return frozenset()
    try:
        metrics = load_yaml(path).get("metrics")
    except FormatError:
        return frozenset()
    return frozenset(str(k) for k in metrics) if isinstance(metrics, dict) else frozenset()


def validate_golden_file(path: str | Path, *, known_metrics: Iterable[str] | None = None) -> FileReport:
    """One golden JSON file; ``known_metrics`` defaults to what the folder's case.yaml declares."""
    p = Path(path)
    known = declared_metrics(p.parent) if known_metrics is None else frozenset(known_metrics)
    findings: list[Finding] = []
    if parse_golden_filename(p) is None:
        findings.append(Finding(WARNING, "name does not follow golden_values_<env>_<platform>[_2nd].json; "
                                         "the store cannot address it"))
    try:
        doc = read_golden_json(p)
        golden = parse_golden(doc, path=p)
    except NotATrainingGolden:
        findings.append(Finding(WARNING, "not a training golden (an inference golden keyed by request id); "
                                         "nothing to compare per step"))
        return FileReport(str(p), "golden", tuple(findings))
    except FormatError as exc:
        where = f"key {exc.key!r}: " if exc.key else ""
        findings.append(Finding(ERROR, f"{where}{exc.reason}"))
        return FileReport(str(p), "golden", tuple(findings))
    findings += _written_order_findings(doc)
    list_metrics = [n for n, raw in doc.items() if isinstance(raw, dict) and isinstance(raw.get("values"), list)]
    findings += check_golden_set(golden, known_metrics=known, list_metrics=list_metrics)
    return FileReport(str(p), "golden", tuple(findings))


def validate_case_file(path: str | Path) -> FileReport:
    """A case definition (case.yaml or Megatron's model_config.yaml) must at least parse."""
    p = Path(path)
    try:
        load_yaml(p)
    except FormatError as exc:
        return FileReport(str(p), "case", (Finding(ERROR, exc.reason),))
    return FileReport(str(p), "case")


def is_golden_name(name: str) -> bool:
    return name.startswith(GOLDEN_PREFIX) and name.endswith(".json")


def _partner_findings(path: Path) -> list[Finding]:
    """A ``_2nd`` (resumed-phase) file without its phase-1 file is half a resume case."""
    parsed = parse_golden_filename(path)
    if parsed and parsed[2] == 2:
        first = path.with_name(f"{GOLDEN_PREFIX}_{parsed[0]}_{parsed[1]}.json")
        if not first.exists():
            return [Finding(WARNING, f"resumed-phase file without its phase-1 file {first.name}")]
    return []


def _files_under(directory: Path) -> Iterable[Path]:
    """Golden files and case definitions below a folder; hidden folders (.golden, .git) skipped, and
    anything but a regular file (a symlink is not followed, a named pipe never read: fsck reports
    those in a store)."""
    for top, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        for name in sorted(files):
            path = Path(top) / name
            if (is_golden_name(name) or name in CASE_DEFINITION_FILES) and stat.S_ISREG(path.lstat().st_mode):
                yield path


def validate_file(path: Path) -> FileReport:
    if path.suffix in (".yaml", ".yml"):
        return validate_case_file(path)
    report = validate_golden_file(path)
    extra = _partner_findings(path)
    return FileReport(report.path, report.kind, report.findings + tuple(extra)) if extra else report


def validate_paths(paths: Iterable[str | Path]) -> ValidationSummary:
    """Every file given, and every golden file / case definition below each folder given.

    A path that does not exist raises ``FormatError`` (a usage error, exit 2) before anything is read.
    """
    given = [Path(p) for p in paths]
    for p in given:
        if not p.exists():
            raise FormatError("no such file or directory", path=p)
    seen: set[Path] = set()
    reports = []
    for p in given:
        for f in (_files_under(p) if p.is_dir() else (p,)):
            resolved = f.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            reports.append(validate_file(f))
    return ValidationSummary(tuple(reports))
