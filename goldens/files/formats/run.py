"""A run as a command is given one: a run folder, its ``artifact.json``, or a golden_values file as
Megatron's CI writes it (with its ``_2nd`` pair) taken as a candidate run.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from ...core.errors import FormatError
from ...core.model import Artifact, GoldenKey, MetricSeries, Phase, valued_span
from .artifact import read_artifact
from .golden import parse_golden, parse_golden_filename
from .jsontext import decode_text, file_bytes, load_json_text

MEGATRON_RUN_SOURCE = "megatron golden file"


def megatron_run(path: str | Path, *, case: str | None = None, env: str | None = None,
                 platform: str | None = None) -> Artifact:
    """A golden_values file as Megatron's CI writes it — with its ``_2nd`` pair when there is one —
    as a candidate run: what ``golden diff``, ``pending`` and ``approve`` accept where a run is asked.

    Env and platform come from the file name unless given; the case is the folder's name unless
    given; the run id is the file's name plus a hash of the content, so the same files are the same
    candidate whatever target they are approved for. Phase 2 is the ``_2nd`` file from its first value
    on (the steps it ran). A candidate has no fingerprint: it is judged in the approximate regime unless
    forced.
    """
    given = Path(path)
    parsed = parse_golden_filename(given)
    if parsed is None:
        raise FormatError("not a golden_values_<env>_<platform>[_2nd].json file", path=given)
    file_env, file_platform, phase = parsed
    first = given if phase == 1 else given.with_name(GoldenKey("", file_env, file_platform, 1).filename())
    second = first.with_name(GoldenKey("", file_env, file_platform, 2).filename())
    files = [f for f in (first, second) if f.is_file()]
    if given not in files:
        files.insert(0, given)  # raises the precise read error below
    phases: dict[int, Phase] = {}
    digest = hashlib.sha256()
    for number, file in ((1, first), (2, second)):
        if file not in files:
            continue
        data = file_bytes(file)  # read once: parsed and hashed
        doc = load_json_text(decode_text(data, file), file)
        golden = parse_golden(doc, path=file, key=GoldenKey(case or file.parent.name, file_env, file_platform, number))
        digest.update(data)
        if golden.scalars:
            raise FormatError(f"scalar entries ({', '.join(golden.scalars)}) cannot be a candidate run: only "
                              f"per-step metrics", path=file)
        metrics = dict(golden.metrics)
        if number == 2:  # the steps before the resume are padding, not steps this phase ran
            metrics = {name: _trimmed(series) for name, series in metrics.items()}
        spans = [(s.steps, valued_span(s.values)) for s in metrics.values()]
        spans = [(steps, span) for steps, span in spans if span.start < span.stop]
        if not spans:
            raise FormatError("no metric has a value at any step", path=file)
        lo = min(int(steps[span.start]) for steps, span in spans)
        hi = max(int(steps[span.stop - 1]) for steps, span in spans)
        phases[number] = Phase(number, metrics, lo, hi, lo - 1 if number == 2 else None)
    run_env, run_platform = env or file_env, platform or file_platform
    resolved = [f.resolve() for f in files]
    provenance = {"source": MEGATRON_RUN_SOURCE, "env": run_env, "platform": run_platform,
                  "files": [str(f) for f in resolved]}
    return Artifact(case=case or (resolved[0] if files[0] == first else first.resolve()).parent.name,
                    run_id=f"{first.stem}-{digest.hexdigest()[:12]}", status="complete",
                    provenance=provenance, phases=phases, source=str(first if first.is_file() else given))


def _trimmed(series: MetricSeries) -> MetricSeries:
    """A ``_2nd`` series from its first value on, grid header kept."""
    span = slice(valued_span(series.values).start, None)
    return MetricSeries(series.name, series.steps[span], series.values[span], series.start_step, series.end_step,
                        series.step_interval, series.precision)


def read_run(path: str | Path, *, env: str | None = None, platform: str | None = None) -> Artifact:
    """A run as any command that takes one is given it: a run folder, its ``artifact.json``, or a
    Megatron golden_values file (``megatron_run``; ``env`` / ``platform`` override its file name's —
    a run artifact declares its own and keeps it)."""
    p = Path(path)
    if p.is_dir():
        return read_artifact(p)
    if parse_golden_filename(p) is not None:
        return megatron_run(p, env=env, platform=platform)
    return read_artifact(p)
