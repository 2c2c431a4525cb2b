"""``golden run`` and ``golden check``: run a case for real; ``check`` then judges it (the main job).

``execute`` runs the case with a progress display (``runner.launch.run_case``, or
``runner.slurm.run_on_slurm`` for ``--launcher slurm``); ``check`` hands
the run to ``goldens.workflow.publish.check_run`` — the judge/stage path ``golden diff`` shares — and
renders; the run configuration with the command line's overrides is
``runner.config.resolve_run_config``. The runner (and through it psutil), rich and the workflow
load inside the commands (the start-up rule in ``goldens.cli``). Torch is never imported in this
process: the ranks run in their own processes. Exit codes: 0 pass, 1 a difference found, 2
usage/input error or a run that failed (a rank died, a timeout, a bad checkpoint).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from ..core.megatron import generation as known_generation
from .common import console, fail, handles_errors
from .compare import emit, tell
from .extras import require_extra
from .options import (
    EnvOpt,
    ExactOpt,
    GenerationOpt,
    NewEnvOpt,
    NewPlatformOpt,
    PlatformOpt,
    PolicyOpt,
    ResultFormatOpt,
    StoreOpt,
    VerboseOpt,
    check_result_format,
    out_option,
)

CaseArg = Annotated[str, typer.Argument(
    metavar="CASE", help="The case: its path in the store, or a name only one case has; or a case folder (holding "
                         "case.yaml, or Megatron's model_config.yaml): path/to/test_cases/bert/<case>.")]
ProfileOpt = Annotated[str | None, typer.Option("--profile", metavar="NAME",
                                                   help="Profile of the case [default: the case's default_profile, "
                                                        "e.g. cpu-tiny].", show_default=False)]
OutOpt = Annotated[Path | None, out_option("Run folder, new or empty [default: runs/<run-id>]; with --repeat, "
                                             "the folder that holds the runs' folders.")]
CheckOutOpt = Annotated[Path | None, out_option("Run folder, new or empty [default: runs/<run-id>]; result.json "
                                                  "and report/ are written into it.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", metavar="cpu|cuda",
                                                  help="Override the profile's device (gloo on cpu, nccl on cuda).",
                                                  show_default=False)]
TimeoutOpt = Annotated[float | None, typer.Option("--timeout", metavar="SECONDS", min=1,
                                                     help="Per-phase timeout [default: the profile's].",
                                                     show_default=False)]
SeedOpt = Annotated[int | None, typer.Option("--seed", metavar="N", min=0, max=2**31 - 1,  # config.MAX_SEED
                                                help="Override the seed.", show_default=False)]
RepeatOpt = Annotated[int | None, typer.Option(
    "--repeat", metavar="N", min=1, show_default=False,
    help="Run the case N times, run i with seed = base + i·K (base: --seed or the case's), each in its own "
         "run folder (under --out DIR when given). stdout: one artifact path per line, for "
         "`golden stats $(golden run CASE --repeat 3)`; the summaries go to stderr.")]
SeedStrideOpt = Annotated[int | None, typer.Option(
    "--seed-stride", metavar="K", min=0, show_default=False,
    help="Seed step between repeats [default: 1]; 0 repeats the same seed to measure nondeterminism.")]
LauncherOpt = Annotated[str, typer.Option("--launcher", metavar="auto|fork|torchrun|slurm",
                                          help="auto: fork (import once, fork the ranks) for single-node CPU "
                                               "runs, torchrun otherwise; slurm: one torchrun per node under srun "
                                               "(inside an allocation, or srun makes one).")]
NnodesOpt = Annotated[int | None, typer.Option("--nnodes", metavar="N", min=1,
                                                  help="Nodes (torchrun: run the same command on every node; slurm: "
                                                       "[default: the allocation's nodes, else 1]).",
                                                  show_default=False)]
NodeRankOpt = Annotated[int | None, typer.Option("--node-rank", metavar="R", min=0,
                                                    help="This node's rank (torchrun, multi-node; node 0 creates the "
                                                         "run folder and writes the artifact).", show_default=False)]
RdzvOpt = Annotated[str | None, typer.Option("--rdzv-endpoint", metavar="HOST:PORT",
                                                help="Node 0's host and a free port (torchrun, multi-node; phase 2 "
                                                     "uses PORT+1).", show_default=False)]
SlurmArgOpt = Annotated[list[str] | None, typer.Option(
    "--slurm-arg", metavar="ARG", help="Extra srun option, passed through as is (repeatable), e.g. "
                                       "--slurm-arg=--partition=gpu --slurm-arg=--time=30.", show_default=False)]
RdzvIdOpt = Annotated[str | None, typer.Option("--rdzv-id", metavar="ID", help="Rendezvous id (torchrun).",
                                                  show_default=False)]
TorchrunArgOpt = Annotated[list[str] | None, typer.Option(
    "--torchrun-arg", metavar="ARG", help="Extra torchrun option, passed through as is (repeatable), "
                                          "e.g. --torchrun-arg=--rdzv-backend=static.", show_default=False)]
@handles_errors
def run(case: CaseArg, profile: ProfileOpt = None, out: OutOpt = None, device: DeviceOpt = None,
        timeout: TimeoutOpt = None, seed: SeedOpt = None, store: StoreOpt = None, launcher: LauncherOpt = "auto",
        nnodes: NnodesOpt = None, node_rank: NodeRankOpt = None, rdzv_endpoint: RdzvOpt = None,
        rdzv_id: RdzvIdOpt = None, torchrun_arg: TorchrunArgOpt = None, slurm_arg: SlurmArgOpt = None,
        repeat: RepeatOpt = None, seed_stride: SeedStrideOpt = None) -> None:
    """Run a case for real (both phases of a resume case) and write runs/<run-id>/artifact.json.

    Multi-node: run the same command on every node with --nnodes, --node-rank and --rdzv-endpoint
    and one --out on a file system every node shares (node 0 creates it and writes the artifact);
    or --launcher slurm (docs/runner.md).

    Repeated runs for `golden stats`: --repeat N [--seed-stride K] (docs/calibration.md).

    Exit 0 when the run completed; 2 for bad input or a run that did not complete (a rank
    failed, a phase timed out, Ctrl-C or SIGTERM): the artifact is still written and says why."""
    require_extra("runner", "run")
    torchrun_args = _torchrun_args(rdzv_endpoint=rdzv_endpoint, rdzv_id=rdzv_id, extra=torchrun_arg or [])
    if slurm_arg and launcher != "slurm":
        raise fail("--slurm-arg is for --launcher slurm")

    def run_once(*, out: Path | None, seed: int | None, runs_root: Path | None = None) -> Any:
        return execute(case=case, store=store, profile=profile, out=out, device=device, timeout=timeout, seed=seed,
                       launcher=launcher, nnodes=nnodes, torchrun_args=torchrun_args, runs_root=runs_root,
                       node_rank=node_rank or 0, slurm_args=tuple(slurm_arg or ()))

    if repeat is None:
        if seed_stride is not None:
            raise fail("--seed-stride needs --repeat N")
        report = run_once(out=out, seed=seed)
        _print_summary(report)
        _preflight_verdict(report)
        return
    from runner.config import repeat_seeds, resolve_run_config

    base = seed if seed is not None else resolve_run_config(case, store, profile=profile).determinism.seed
    seeds = repeat_seeds(base, repeat, 1 if seed_stride is None else seed_stride)
    for index, run_seed in enumerate(seeds, start=1):
        print(f"run {index} of {repeat}: seed {run_seed}", file=sys.stderr, flush=True)
        # A run that is not complete raises RunError: exit 2, the paths printed so far stay valid.
        report = run_once(out=None, runs_root=out, seed=run_seed)
        _print_summary(report, stream=sys.stderr)
        print(report.artifact_path, flush=True)


@handles_errors
def check(case: CaseArg, store: StoreOpt = None, env: EnvOpt = None, platform: PlatformOpt = None,
          profile: ProfileOpt = None, out: CheckOutOpt = None, device: DeviceOpt = None,
          timeout: TimeoutOpt = None, seed: SeedOpt = None, launcher: LauncherOpt = "auto",
          policy: PolicyOpt = None, exact: ExactOpt = None, fmt: ResultFormatOpt = "table",
          generation: GenerationOpt = None, new_env: NewEnvOpt = False, new_platform: NewPlatformOpt = False,
          verbose: VerboseOpt = False) -> None:
    """Run a case, compare it with its golden for this environment (plus the resume check), report.

    The golden is the store's for --env [default: dev] and --platform [default, or auto: the run's:
    cpu, or dgx_<gpu> on CUDA]. result.json and report/ (Markdown, HTML, JUnit, JSON) are written into the
    run folder. Exit 0 pass; 1 a regression, a failed resume check, or no golden yet for the target
    (outside CI the run is then staged for `golden review`); 2 bad input or a failed run. An --env or
    --platform the store has no golden for, close to one it knows, is refused: did you mean…?
    (--new-env / --new-platform: a new one on purpose)."""
    require_extra("runner", "check")
    from runner.config import store_of_case

    from .. import inputs
    from ..workflow.judge import force_regime
    from ..workflow.publish import check_run

    check_result_format(fmt)
    inputs.load_policies(policy)  # a bad --policy or generation is reported before the run, not after it
    if generation is not None:
        known_generation(generation)
    report = execute(case=case, store=store, profile=profile, out=out, device=device, timeout=timeout,
                     seed=seed, launcher=launcher, nnodes=None, torchrun_args=())
    _print_summary(report, stream=sys.stderr)
    judgement, published = check_run(report, store_root=store_of_case(case, store), env=env or "dev",
                                     platform=None if platform == "auto" else platform,
                                     policy=policy, force=force_regime(exact),
                                     generation=generation, new_env=new_env, new_platform=new_platform)
    if judgement.result is not None:
        emit(judgement.result, fmt, verbose=verbose)
    if published is not None:
        print(f"report: {published.report_dir}", file=sys.stderr)
    tell(judgement.notes)
    raise typer.Exit(judgement.exit_code)


def _torchrun_args(*, rdzv_endpoint: str | None, rdzv_id: str | None, extra: list[str]) -> tuple[str, ...]:
    """--node-rank is not among them: the launcher passes it, with the static rendezvous that makes
    node 0 host global rank 0 (runner/launch.py)."""
    args = []
    if rdzv_endpoint is not None:
        args.append(f"--rdzv-endpoint={rdzv_endpoint}")
    if rdzv_id is not None:
        args.append(f"--rdzv-id={rdzv_id}")
    return (*args, *extra)


def execute(*, case: str, store: Path | None, profile: str | None, out: Path | None, device: str | None,
            timeout: float | None, seed: int | None, launcher: str, nnodes: int | None,
            torchrun_args: tuple[str, ...], runs_root: Path | None = None, node_rank: int = 0,
            slurm_args: tuple[str, ...] = ()) -> Any:
    """Run the resolved case with a progress display, in ``out`` or ``<runs_root>/<run-id>``
    (``runs_root`` default: runs/)."""
    from runner.config import resolve_run_config
    from runner.launch import RunOptions, run_case
    from runner.run_folder import new_run_id
    from runner.slurm import run_on_slurm

    allocated = os.environ.get("SLURM_JOB_NUM_NODES", "")
    if launcher == "slurm" and nnodes is None and allocated.isdigit():  # inside an allocation: all its nodes
        nnodes = int(allocated)
    cfg = resolve_run_config(case, store, profile=profile, device=device, timeout=timeout, seed=seed, nnodes=nnodes)
    run_dir = out if out is not None else (runs_root or Path("runs")) / new_run_id(cfg.case, cfg.profile)
    options = RunOptions(run_dir=run_dir, launcher=launcher, torchrun_args=torchrun_args, node_rank=node_rank,
                         slurm_args=slurm_args)
    with progress_display(cfg) as (on_progress, on_phase):
        run = run_on_slurm if launcher == "slurm" else run_case
        return run(cfg, options, on_progress=on_progress, on_phase=on_phase)


@contextmanager
def progress_display(cfg: Any) -> Iterator[tuple[Any, Any]]:
    """A live bar per phase on stderr (phase, step, loss); plain lines when stderr is no terminal."""
    s = cfg.schedule
    totals = {1: s.train_iters, 2: s.train_iters - s.save_interval}
    firsts = {1: 1, 2: s.save_interval + 1}
    if not sys.stderr.isatty():
        def plain_progress(phase: int, step: int, metrics: dict[str, float]) -> None:
            loss = metrics.get("lm loss")
            print(f"phase {phase} step {step}/{s.train_iters}" + (f" lm loss {loss!r}" if loss is not None else ""),
                  file=sys.stderr, flush=True)

        def plain_phase(phase: int) -> None:
            print(f"phase {phase}: starting {cfg.parallelism.world_size} ranks", file=sys.stderr, flush=True)

        yield plain_progress, plain_phase
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), console=console(stderr=True),
                  transient=False) as bar:
        tasks: dict[int, Any] = {}

        def on_phase(phase: int) -> None:
            what = "train from scratch" if phase == 1 else f"resume from {s.save_interval}"
            tasks[phase] = bar.add_task(f"phase {phase} ({what})", total=totals[phase], loss="starting ranks…")

        def on_progress(phase: int, step: int, metrics: dict[str, float]) -> None:
            if phase not in tasks:
                on_phase(phase)
            loss = metrics.get("lm loss")
            bar.update(tasks[phase], completed=step - firsts[phase] + 1,
                       loss=f"step {step}  lm loss {loss:.5f}" if loss is not None else f"step {step}")

        yield on_progress, on_phase


def _preflight_verdict(report: Any) -> None:
    """A CPU pre-flight's verdict on itself (runner.artifact.smoke_problems): exit 1 if it fails."""
    from runner.artifact import smoke_problems

    from ..files.formats.artifact import preflight_substitutions

    subs = preflight_substitutions(report.artifact) if report.artifact is not None else None
    if not subs:
        return
    problems = smoke_problems(report.artifact)
    print(f"pre-flight (substituted: {subs}): " + ("; ".join(problems) if problems else
          "passed — built, trained, saved, resumed bit-exactly, finite falling loss"))
    if problems:
        raise typer.Exit(1)


def _print_summary(report: Any, stream: Any = None) -> None:
    """Where the artifact is and how the loss moved, per phase."""
    stream = stream or sys.stdout
    artifact = report.artifact
    print(f"artifact: {report.artifact_path} ({artifact.status})", file=stream)
    for number, phase in artifact.phases.items():
        loss = phase.metrics.get("lm loss")
        moved = (f"lm loss {float(loss.values[0])!r} → {float(loss.values[-1])!r}"
                 if loss is not None and len(loss) else "")
        origin = f", resumed from {phase.resumed_from}" if phase.resumed_from is not None else ""
        print(f"phase {number}: steps {phase.first_step}-{phase.last_step}{origin}: {moved}", file=stream)
