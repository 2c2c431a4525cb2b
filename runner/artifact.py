"""Build the normalized artifact of a run from what its ranks left on disk.

Phases come from rank 0's ``metrics.jsonl`` (full precision, steps in order; a phase that died
keeps the steps it finished), provenance from the resolved config and the environment rank 0
reported (its fingerprint), and on a multi-node run every node's record (``nodes/``). Written with
``goldens.files.formats.artifact.dumps_artifact``, atomically.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from goldens.core.model import Artifact, MetricSeries, Phase
from goldens.files.atomic import atomic_write_text
from goldens.files.formats.artifact import dumps_artifact

from .config import RunConfig
from .metrics import artifact_metric_names, read_log
from .provenance import provenance
from .run_folder import node_records

ARTIFACT_FILE = "artifact.json"


def _phase(number: int, log: Path, names: Sequence[str], *, first: int, last: int,
           resumed_from: int | None) -> tuple[Phase | None, list[dict[str, Any]]]:
    steps, events = read_log(log)
    if not steps:
        return None, events
    metrics = {}
    for name in names:
        present = {s: v[name] for s, v in steps.items() if name in v}
        if present:
            # iteration-time starts at the phase's second step (Megatron's goldens: "start_step": 2)
            start = min(present) if name == "iteration-time" else first
            metrics[name] = MetricSeries.from_mapping(name, present, start_step=start, end_step=last,
                                                      step_interval=1)
    return Phase(number, metrics, first, last, resumed_from), events


def _timings(events: list[dict[str, Any]], wall_s: float | None) -> dict[str, Any]:
    """Seconds spent where, from the phase's events: start-up (launch to first step), load, save."""
    out: dict[str, Any] = {}
    if wall_s is not None:
        out["wall_s"] = wall_s
    for event in events:
        if event.get("event") in ("save", "load"):
            out[f"{event['event']}_s"] = event["seconds"]
    times = {e["event"]: e["time"] for e in events if e.get("event") in ("ready", "done")}
    if "ready" in times and "done" in times:
        out["steps_s"] = times["done"] - times["ready"] - out.get("save_s", 0.0)
    return out


def assemble(cfg: RunConfig, run_dir: Path, *, status: str, error: str | None, outcomes: Sequence[Any],
             launcher: str | None = None, reused_phase1: Path | None = None) -> Artifact:
    names = artifact_metric_names(cfg.launch.device)
    s = cfg.schedule
    walls = {o.phase: o.wall_s for o in outcomes}
    phases: dict[int, Phase] = {}
    timings: dict[str, Any] = {}
    layout = ((1, 1, None), (2, s.save_interval + 1, s.save_interval))
    for number, first, resumed in layout[:len(cfg.phases)]:
        log_dir = run_dir / "logs" / f"phase{number}"
        phase, events = _phase(number, log_dir / "metrics.jsonl", names, first=first, last=s.train_iters,
                               resumed_from=resumed)
        if phase is not None:
            phases[number] = phase
        if events or number in walls:
            timings[f"phase{number}"] = _timings(events, walls.get(number))
    environment = None
    for number in (1, 2):
        env_path = run_dir / "logs" / f"phase{number}" / "environment.json"
        if env_path.is_file():
            environment = json.loads(env_path.read_text(encoding="utf-8"))
            break
    prov = provenance(cfg, environment=environment, source_dir=Path(__file__).resolve().parent)
    prov["timings"] = timings
    if launcher is not None:
        prov["launcher"] = launcher
    if reused_phase1 is not None:
        prov["phase1_reused_from"] = str(reused_phase1)
    nodes = node_records(run_dir)
    if nodes:  # a multi-node run: every node, where it ran and (if it ended first) how
        prov["nodes"] = [nodes[rank] for rank in sorted(nodes)]
    if status == "complete" and set(phases) != set(cfg.phases):
        status, error = "incomplete", "a phase recorded no steps"
    return Artifact(case=cfg.case, run_id=run_dir.name, status=status, provenance=prov, phases=phases,
                    error=error)


def write(artifact: Artifact, run_dir: Path) -> Path:
    path = run_dir / ARTIFACT_FILE
    atomic_write_text(path, dumps_artifact(artifact))
    return path


SMOKE_METRICS = ("lm loss", "num-zeros")


def smoke_problems(artifact: Artifact) -> list[str]:
    """What a CPU pre-flight is judged on, itself only: it completed, its loss is finite and falls
    over phase 1, and phase 2 (resumed in fresh processes) equals phase 1 bit for bit on every
    step both ran. Empty when it passes."""
    problems = [] if artifact.status == "complete" else [f"the run is {artifact.status}"]
    first = artifact.phases.get(1)
    loss = first.metrics.get("lm loss") if first is not None else None
    if first is None or loss is None or not len(loss.values):
        return [*problems, "phase 1 recorded no lm loss"]
    values = [float(v) for v in loss.values]
    if not all(math.isfinite(v) for v in values):
        problems.append("lm loss is not finite at some step")
    elif not values[-1] < values[0]:
        problems.append(f"lm loss did not fall ({values[0]!r} → {values[-1]!r})")
    second = artifact.phases.get(2)
    if second is None:
        return problems
    for name in SMOKE_METRICS:
        before, after = first.metrics.get(name), second.metrics.get(name)
        if before is None or after is None:
            continue
        ran = dict(zip(before.steps.tolist(), before.values.tolist(), strict=True))  # a series: one value a step
        differ = [step for step, value in zip(after.steps.tolist(), after.values.tolist(), strict=True)
                  if step in ran and ran[step] != value]
        if differ:
            problems.append(f"{name} after the resume differs from phase 1 at step(s) {differ[:5]}")
    return problems
