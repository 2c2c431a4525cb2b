"""Slurm as the cluster engine: ``golden run CASE --launcher slurm [--nnodes N] [--slurm-arg=...]``.

How a run goes:

1. The submitting process (a login node, or the batch script of an ``sbatch`` job) resolves the
   case, creates the run folder on the shared file system (``runner/run_folder.py``: it takes node
   0's part) and runs ``srun --nodes=N --ntasks-per-node=1 … python -m runner.slurm RUN_DIR``.
   Inside an allocation srun starts a job step in it; outside one srun asks for the allocation
   itself (``--slurm-arg`` passes ``--partition``, ``--time``, ``--account``, ``--gpus-per-node``…).
2. Each srun task is one node: node rank = ``SLURM_NODEID``; it joins the run folder and runs one
   torchrun per phase, rendezvousing (static) on the allocation's first host — expanded from
   ``SLURM_JOB_NODELIST`` by ``scontrol show hostnames``, its address from ``sinfo -o %o``
   (NodeAddr) — on a port derived from the job id. It records how it ended in ``nodes/node<R>.json``.
3. When srun returns, the submitter decides the run's status from the node records and the job's
   state (``squeue -t all -o %T``), and writes the artifact, once, atomically. A job cancelled
   (``scancel``), past its time limit, or with a node lost ends ``incomplete`` with that reason;
   a rank's error ends it ``failed`` with that error. The tasks never write the artifact, so a
   job killed at any instant leaves none or a whole one.

Why srun and not submitit: ``golden run`` is a blocking command whose exit code CI reads; srun is
Slurm's own tool for exactly this (one task per node, inside or outside an allocation, the
signals of ``scancel`` and of the time limit delivered to the tasks, the step torn down when a
task fails with ``--kill-on-bad-exit``). submitit's strengths — asynchronous submission of a
pickled Python function, job arrays, requeueing, results read back through pickles — are not
needed here, and it would add a dependency whose job monitoring is itself built on sacct/squeue.
Only the standard library, psutil and the artifact's writer are imported here (the CLI process
imports it): no torch.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from goldens.core.errors import RunError

from . import run_folder
from .artifact import assemble, write
from .config import RunConfig
from .launch import (
    RUN_DIR_ENV,
    MetricsTail,
    PhaseOutcome,
    ProgressFn,
    RunOptions,
    RunReport,
    Terminated,
    check_device,
    child_env,
    kill_tree,
    run_case,
    sigterm_stops_the_run,
)

SRUN_LOG = Path("logs") / "slurm.log"
# Job states that mean the job was stopped from outside the run, and what they mean.
ENDED_FROM_OUTSIDE = {
    "CANCELLED": "cancelled (scancel)",
    "TIMEOUT": "its time limit was reached",
    "NODE_FAIL": "a node was lost",
    "PREEMPTED": "preempted",
    "DEADLINE": "its deadline passed",
    "BOOT_FAIL": "a node failed to boot",
}
STOP_GRACE_S = 60.0  # after SIGTERM to srun: Slurm's KillWait (30 s by default) and some
TOOL_TIMEOUT_S = 30.0
PEER_ERROR = re.compile(r"connection (closed|reset)|broken pipe|peer|gloo|nccl|socket|timed out|terminated",
                        re.IGNORECASE)


def srun_command(cfg: RunConfig, run_dir: Path, slurm_args: tuple[str, ...] = ()) -> list[str]:
    """One task per node; each task gets the CPUs its ranks use unless ``slurm_args`` say otherwise."""
    nodes = cfg.launch.nnodes
    args = ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
            f"--job-name=golden-{cfg.case.replace('/', '-')}"[:120], f"--chdir={run_dir}"]
    names = {a.split("=", 1)[0] for a in slurm_args}
    if not names & {"--cpus-per-task", "-c"}:
        args.append(f"--cpus-per-task={cfg.nproc_per_node * cfg.determinism.threads_per_rank}")
    return [*args, *slurm_args, sys.executable, "-m", "runner.slurm", str(run_dir)]


def _tool(*command: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RunError(f"{' '.join(command)}: {exc}") from None
    if done.returncode != 0:
        raise RunError(f"{' '.join(command)} failed: {done.stderr.strip()[:300]}")
    return done.stdout


def first_host_address(nodelist: str) -> str:
    """The address of the allocation's first host: Slurm expands the host list and says the node's
    NodeAddr (its name unless slurm.conf sets another)."""
    first = _tool("scontrol", "show", "hostnames", nodelist).split()[0]
    address = _tool("sinfo", "--noheader", "--Node", f"--nodes={first}", "--format=%o").split()
    return address[0] if address else first


def rendezvous_port(job_id: str) -> int:
    """Phase 1 rendezvouses on this port, phase 2 on the next: two ports per job id, so two jobs that
    share a first host do not meet. ``GOLDEN_RDZV_PORT`` overrides it."""
    given = os.environ.get("GOLDEN_RDZV_PORT", "")
    if given.isdigit():
        return int(given)
    return 20000 + (int(job_id) % 10000) * 2 if job_id.isdigit() else 29500


def job_state(job_id: str | None, *, settle_s: float = 0.0) -> str | None:
    """The job's state as Slurm's controller has it (finished jobs too, for MinJobAge), or None.
    ``settle_s``: a job whose srun has just returned may still be COMPLETING (or RUNNING) for a
    moment before it shows how it ended; wait up to that long for its final state."""
    if not job_id:
        return None
    deadline = time.monotonic() + settle_s
    while True:
        try:
            out = _tool("squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%T").split()
        except RunError:
            return None
        state = out[0] if out else None
        if state not in ("COMPLETING", "RUNNING", "CONFIGURING") or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def srun_error(log_text: str) -> str | None:
    """srun's own last complaint in its log (e.g. a step it could not create), or None."""
    lines = [line.strip() for line in log_text.splitlines() if line.startswith("srun: error:")]
    return lines[-1][len("srun: error:"):].strip()[:300] if lines else None


def judge_job(records: Mapping[int, Mapping[str, Any]], nnodes: int, *, srun_exit: int | None,
              state: str | None, job_id: str | None, stopped: str | None = None,
              srun_said: str | None = None) -> tuple[str, str | None]:
    """The run's status and reason from what each node recorded, srun's exit and the job's state.
    Stopped from outside (a signal to the submitter, scancel, the time limit, a node lost):
    ``incomplete``; a node's own error: ``failed``; a node that never reported: ``incomplete``."""
    job = f"slurm job {job_id}" if job_id else "the slurm job"
    if stopped:
        return "incomplete", stopped + (f" ({job} {state})" if state else "")
    if state in ENDED_FROM_OUTSIDE:
        return "incomplete", f"{job} {state}: {ENDED_FROM_OUTSIDE[state]}"
    ended = {rank: rec for rank, rec in records.items() if rec.get("status")}
    failed = [(rank, rec.get("error") or "failed") for rank, rec in sorted(ended.items())
              if rec["status"] == "failed"]
    if failed:
        own = [f for f in failed if not PEER_ERROR.search(f[1])]
        rank, error = (own or failed)[0]
        return "failed", f"node {rank}: {error}"
    if not records and srun_exit:  # no node ever started: srun itself refused (resources, options)
        return "failed", f"srun exited with code {srun_exit} before any node started" + (
            f": {srun_said}" if srun_said else f" (see {SRUN_LOG})")
    missing = [rank for rank in range(nnodes) if rank not in ended]
    if missing:
        names = ", ".join(f"node {rank}" + (f" ({records[rank]['host']})" if rank in records else "")
                          for rank in missing)
        said = f": {srun_said}" if srun_said else ""
        return "incomplete", (f"{names} ended without reporting (srun exit code {srun_exit}{said}; {job} "
                              f"{state or 'state unknown'}; see {SRUN_LOG})")
    stopped_nodes = [(rank, rec.get("error")) for rank, rec in sorted(ended.items()) if rec["status"] != "complete"]
    if stopped_nodes:
        rank, error = stopped_nodes[0]
        return "incomplete", f"node {rank}: {error}"
    if srun_exit:
        return "failed", f"srun exited with code {srun_exit} (see {SRUN_LOG})"
    return "complete", None


def run_on_slurm(cfg: RunConfig, options: RunOptions, *, on_progress: ProgressFn | None = None,
                 on_phase: Callable[[int], None] | None = None) -> RunReport:
    """Submit the run as one srun job step, follow it, judge it, write the artifact (the submitter's
    side; see the module docstring). Returns a RunReport or raises RunError as run_case does."""
    if shutil.which("srun") is None:
        raise RunError("--launcher slurm needs Slurm's srun on PATH (run on a Slurm login node or inside an "
                       "allocation)")
    if options.torchrun_args or options.node_rank or options.reuse_phase1_from is not None:
        raise RunError("--launcher slurm sets the rendezvous and node ranks itself: leave out --node-rank, "
                       "--rdzv-endpoint, --torchrun-arg and phase-1 reuse")
    if os.environ.get("SLURM_JOB_ID"):  # inside the allocation; a login node may have no GPU
        check_device(cfg)
    run_dir = options.run_dir.resolve()
    run_folder.create(run_dir, cfg)
    log_path = run_dir / SRUN_LOG
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = child_env(cfg, {**options.env, RUN_DIR_ENV: str(run_dir)})
    tails = {phase: MetricsTail(run_dir / "logs" / f"phase{phase}" / "metrics.jsonl") for phase in cfg.phases}
    started, stopped, srun_exit = time.monotonic(), None, None
    with log_path.open("ab") as log:
        proc = subprocess.Popen(srun_command(cfg, run_dir, options.slurm_args), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(run_dir))
        try:
            with sigterm_stops_the_run():
                if on_phase:
                    on_phase(1)
                while srun_exit is None:
                    with contextlib.suppress(subprocess.TimeoutExpired):  # still running: show progress
                        srun_exit = proc.wait(timeout=0.5)
                    for phase, tail in tails.items():
                        for step, metrics in tail.new_steps():
                            if on_progress:
                                on_progress(phase, step, metrics)
        except (Terminated, KeyboardInterrupt) as exc:
            stopped = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
            srun_exit = _stop_srun(proc, kill_tree)
    records = run_folder.node_records(run_dir)
    inside = os.environ.get("SLURM_JOB_ID")  # the submitter runs inside the allocation (sbatch)
    job_id = inside or next((rec["slurm"]["job_id"] for rec in records.values()
                             if isinstance(rec.get("slurm"), dict) and rec["slurm"].get("job_id")), None)
    state = job_state(job_id, settle_s=0.0 if inside else 10.0)  # srun's own job ends with srun
    status, error = judge_job(records, cfg.launch.nnodes, srun_exit=srun_exit, state=state, job_id=job_id,
                              stopped=stopped, srun_said=srun_error(log_path.read_text(errors="replace")))
    walls = (records.get(0) or {}).get("phase_wall_s") or {}
    outcomes = [PhaseOutcome(int(phase), "ok", wall_s=float(wall)) for phase, wall in sorted(walls.items())]
    artifact = assemble(cfg, run_dir, status=status, error=error, outcomes=outcomes, launcher="slurm")
    artifact.provenance["slurm"] = {"job_id": job_id, "job_state": state, "srun_exit": srun_exit,
                                    "inside_allocation": bool(inside), "wall_s": time.monotonic() - started}
    path = write(artifact, run_dir)
    artifact = replace(artifact, source=str(path))
    if artifact.status != "complete":
        raise RunError(f"{artifact.error} (artifact: {path}, status {artifact.status})")
    return RunReport(artifact=artifact, artifact_path=path, outcomes=tuple(outcomes))


def _stop_srun(proc: subprocess.Popen, kill_tree: Callable[[int], Any]) -> int | None:
    """SIGTERM to srun (it cancels the step, or the job it allocated: the tasks get SIGTERM, then
    SIGKILL after Slurm's KillWait); if it has not ended by then, its local tree is killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
    return proc.wait()


# ---------------------------------------------------------------- the task on each node

def node_main(run_dir: Path) -> int:
    """One srun task = one node: join the run, run its phases with one torchrun per phase."""
    env = os.environ
    try:
        node_rank, nnodes = int(env["SLURM_NODEID"]), int(env["SLURM_NNODES"])
        run_folder.wait_for(run_dir / run_folder.RUN_FILE, 60.0, "the submitter to create the run folder")
        cfg = RunConfig.from_dict(json.loads((run_dir / run_folder.RUN_FILE).read_text(encoding="utf-8")))
        if nnodes != cfg.launch.nnodes:
            raise RunError(f"the job step has {nnodes} node(s), the run needs {cfg.launch.nnodes}")
        torchrun_args: tuple[str, ...] = ()
        if nnodes > 1:
            host = first_host_address(env["SLURM_JOB_NODELIST"])
            torchrun_args = (f"--rdzv-endpoint={host}:{rendezvous_port(env.get('SLURM_JOB_ID', ''))}",)
        run_case(cfg, RunOptions(run_dir=run_dir, launcher="torchrun" if nnodes > 1 else "auto",
                                 torchrun_args=torchrun_args, node_rank=node_rank, join=True))
    except (RunError, KeyError, ValueError, OSError) as exc:
        print(f"golden slurm node {env.get('SLURM_NODEID', '?')}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(node_main(Path(sys.argv[1])))
