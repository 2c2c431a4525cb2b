"""Synthetic stores and runs for the approval tests (no runner needed: goldens.formats writes them)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from goldens.formats import dumps_artifact
from goldens.model import Artifact, GoldenKey, GoldenSet, MetricSeries, Phase
from goldens.store import GoldenStore

STEPS = range(1, 21)
LOSS = {s: 10.0 - 0.25 * s + 1e-9 * s * s for s in STEPS}
ZEROS = {s: float(1000 + 3 * s) for s in STEPS}
Values = Mapping[str, Mapping[int, float]]


def series(name: str, values: Mapping[int, float]) -> MetricSeries:
    steps = sorted(values)
    return MetricSeries.from_mapping(name, values, start_step=steps[0], end_step=steps[-1], step_interval=1)


def golden_set(metrics: Values) -> GoldenSet:
    return GoldenSet(metrics={name: series(name, values) for name, values in metrics.items()})


def shifted(values: Mapping[int, float], factor: float) -> dict[int, float]:
    return {s: v * factor for s, v in values.items()}


def make_store(root: Path, cases: tuple[str, ...] = ("tiny",)) -> GoldenStore:
    for case in cases:
        (root / case).mkdir(parents=True, exist_ok=True)
        (root / case / "case.yaml").write_text(f"description: synthetic case {case}\n")
    return GoldenStore(root)


def seed(store: GoldenStore, case: str, metrics: Values, *, env: str = "dev", platform: str = "cpu",
         phase2: Values | None = None, fingerprint: str = "fp-seed"):
    goldens = {GoldenKey(case, env, platform, 1): golden_set(metrics)}
    if phase2 is not None:
        goldens[GoldenKey(case, env, platform, 2)] = golden_set(phase2)
    return store.write(case, goldens, approver="seed", reason="first golden", source_run_id="seed-run",
                       fingerprint=fingerprint, provenance={"fingerprint": fingerprint})


def write_run(runs: Path, case: str, run_id: str, metrics: Values, *, status: str = "complete",
              env: str | None = "dev", platform: str | None = "cpu", fingerprint: str = "fp-1",
              phase2: Values | None = None, resumed_from: int | None = None) -> Path:
    """runs/<run_id>/artifact.json, as the runner would write it."""
    provenance: dict = {"created": "2025-01-01T00:00:00+00:00", "device": "cpu", "fingerprint": fingerprint}
    if env is not None:
        provenance["env"] = env
    if platform is not None:
        provenance["platform"] = platform
    phases = {1: _phase(1, metrics)}
    if phase2 is not None:
        phases[2] = _phase(2, phase2, resumed_from)
    artifact = Artifact(case=case, run_id=run_id, status=status, provenance=provenance, phases=phases,
                        error=None if status == "complete" else "rank 3 died")
    path = runs / run_id / "artifact.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps_artifact(artifact))
    return path


def _phase(number: int, metrics: Values, resumed_from: int | None = None) -> Phase:
    made = {name: series(name, values) for name, values in metrics.items()}
    steps = sorted({s for values in metrics.values() for s in values})
    return Phase(number, made, steps[0], steps[-1], resumed_from)


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its exact bytes: equal before/after means nothing was written."""
    out = {}
    for top, _, files in os.walk(root):
        for name in files:
            path = Path(top) / name
            out[str(path.relative_to(root))] = path.read_bytes()
    return out


def cli_worker(go_file: str, *args: str) -> None:
    """Run ``golden ARGS`` in this process once ``go_file`` exists: imports done first, so
    several workers reach the store at the same instant (see the concurrency tests)."""
    import time

    import goldens.approve  # noqa: F401  (warm every import the command needs)
    import goldens.cli.review_screen  # noqa: F401
    import goldens.validate  # noqa: F401
    from goldens.cli import app

    while not os.path.exists(go_file):
        time.sleep(0.001)
    app(list(args), prog_name="golden")
