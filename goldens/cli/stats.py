"""Commands that turn measurements into goldens and tolerances: ``import-tb`` and ``stats``.

Each command is typed options plus one library call (goldens.files.ingest, goldens.core.stats); those
load numpy (and pandas), so they are imported inside the commands (the start-up rule in ``goldens.cli``).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..core.errors import GoldenError
from ..files.atomic import atomic_write_text
from ..files.case import check_case_path
from .common import handles_errors
from .extras import require_extra
from .options import CaseOpt, out_option


def _refuse_folders(*targets: Path | None) -> None:
    """Checked before any work or write, so a folder given as an output writes nothing."""
    for target in targets:
        if target is not None and str(target) != "-" and target.is_dir():
            raise GoldenError(f"cannot write {target}: it is a directory")


def _write(target: Path, text: str) -> None:
    try:
        atomic_write_text(target, text)
    except OSError as exc:
        raise GoldenError(f"cannot write {target}: {exc.strerror or exc}") from None


@handles_errors
def import_tb(
    logdir: Annotated[Path, typer.Argument(help="TensorBoard log folder: event files, or run_1/run_2 sub-folders "
                                                "for the phases of a resume case.")],
    out: Annotated[Path, out_option("Artifact JSON to write ('-' for stdout).")],
    phase: Annotated[int | None, typer.Option("--phase", min=1, max=2, help="Import only this phase (with run_N "
                                                 "folders), or label a flat folder as this phase (default 1).")] = None,
    case: CaseOpt = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Run id (default: tb-<start time>).")] = None,
) -> None:
    """TensorBoard event files → a run artifact at full precision (float32 values kept exactly)."""
    require_extra("tb", "import-tb")
    from ..files.formats.artifact import check_run_id, dumps_artifact
    from ..files.ingest import import_tensorboard

    _refuse_folders(out)
    if case is not None:
        check_case_path(case)
    if run_id is not None:
        check_run_id(run_id)
    artifact = import_tensorboard(logdir, phase=phase, case=case, run_id=run_id)
    check_case_path(artifact.case, "case (derived from the folder name; pass --case)")
    text = dumps_artifact(artifact)
    if str(out) == "-":
        sys.stdout.write(text)
    else:
        _write(out, text)
    for number, ph in artifact.phases.items():
        print(f"phase {number}: {len(ph.metrics)} metrics, steps {ph.first_step}..{ph.last_step}: "
              f"{', '.join(ph.metrics)}", file=sys.stderr)
    if str(out) != "-":
        print(f"wrote {out}", file=sys.stderr)


@handles_errors
def stats(
    runs: Annotated[list[Path], typer.Argument(help="Artifacts (or run folders) of repeated runs of one case.")],
    out: Annotated[Path | None, out_option("Write the recommended policy YAML here ('-' for stdout).")] = None,
    band: Annotated[bool, typer.Option("--band", help="Recommend per-step bands (mode: band) for per-step metrics "
                                                      "instead of a single rtol.")] = False,
    table: Annotated[Path | None, typer.Option("--table", help="Write the per-step statistics and raw samples "
                                                                  "as CSV.")] = None,
    preset_name: Annotated[str, typer.Option("--preset", help="Policy preset whose metric kinds decide each "
                                                              "metric's statistic.")] = "default",
) -> None:
    """Repeated runs → per-step min/max/mean/std/median and a recommended policy per metric.

    Each recommendation shows its formula: a t prediction interval for per-step metrics, Tukey's
    IQR fences for counts, a one-sided log-normal bound for reduced metrics such as step time.

    Example: golden run CASE --repeat 3 --seed-stride 1, then
    golden stats runs/ID1 runs/ID2 runs/ID3 --out policy.yaml; review policy.yaml and use it
    with golden diff --policy policy.yaml (or copy its metrics: into case.yaml).
    """
    from ..workflow.calibration import calibrate

    _refuse_folders(out, table)
    found = calibrate(runs, preset_name=preset_name, band=band)
    if table is not None:
        _write(table, found.table_csv())
    if str(out) == "-":
        sys.stdout.write(found.policy_yaml)
        return
    print(f"{found.case}: {len(found.run_ids)} runs ({', '.join(found.run_ids)})")
    for rec in found.recommendations:
        setting = "per-step band" if band and rec.band is not None else ", ".join(
            f"{k} {v:.6g}" for k, v in rec.policy.items()) or "left to the preset"
        print(f"\n{rec.metric} (phase {rec.phase}, {rec.method}, N = {rec.n_runs}): {setting}")
        for line in (*rec.formula, *rec.worked):
            print(f"  {line}")
    if table is not None:
        print(f"\nwrote {table}")
    if out is not None:
        _write(out, found.policy_yaml)
        print(f"wrote {out} (review it, then commit it or pass it with --policy)")
