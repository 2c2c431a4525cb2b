"""The single-node CPU launcher: import torch and megatron-core once, fork every rank from it.

Why: on 2 CPU cores each rank's import of torch + megatron-core costs ~5 s, and torchrun pays
it per rank and per phase (4 ranks × 2 phases). Here one process pays it once for the whole
run; each phase's ranks are forked from that pristine process — fresh processes that never
held any training state, so phase 2 still resumes from the checkpoint alone.

Why forking is safe here:
- the server is single-threaded at every fork, checked before each fork from
  ``/proc/self/task`` (the launcher starts it with OMP/MKL/OpenBLAS thread counts of 1 so that
  importing numpy/torch starts no BLAS thread pool; the fork is refused otherwise);
- it only imports: no torch op has run (no OpenMP/oneDNN pools, no allocator state), no
  process group or file is open besides the protocol pipes, which children replace;
- children leave with ``os._exit`` (no inherited atexit handlers or buffers run twice), each in
  its own process group so a rank and the checkpoint writers it forks are stopped together.

Supervision replaces the elastic agent's: the first rank to exit non-zero fails the phase and
every other rank's process group is killed at once (SIGKILL); the reply names every failure.

Protocol (one JSON object per line): the server prints ``{"ready": true}`` once imported, then
for each ``{"plan": PATH}`` on stdin runs that phase and prints its outcome
``{"status": "ok"|"failed", "failures": [{"rank", "exitcode", "signal", "time", "stopped"}]}``.
Multi-process-per-node GPU runs and multi-node runs use torchrun (``runner/torchrun.py``).
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import socket
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from .compat import skip_jit_fuser_binding
from .plan import PhasePlan
from .worker import die_with_parent, main

PRELOAD = (
    "runner.train", "runner.families.bert", "megatron.core.models.bert.bert_model",
    "megatron.core.models.bert.bert_layer_specs",
    "megatron.core.optimizer", "megatron.core.distributed", "megatron.core.pipeline_parallel",
    "megatron.core.dist_checkpointing", "megatron.core.dist_checkpointing.strategies.torch",
    "megatron.core.dist_checkpointing.strategies.filesystem_async", "megatron.core.optimizer_param_scheduler",
    "megatron.core.datasets.bert_dataset", "megatron.core.datasets.blended_megatron_dataset_builder",
    "torch.utils.tensorboard",
    # imported by torch.optim's Adam (megatron's optimizer) and torch.use_deterministic_algorithms:
    # 1.2 s per rank and phase on 2 cores when each forked rank imports it, once here.
    "torch._dynamo",
)


def thread_count() -> int:
    """OS threads of this process (Linux); Python's view as a fallback."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rank_cpus(rank: int, threads: int, allowed: list[int]) -> set[int]:
    """The CPUs a rank runs on: consecutive ranks on consecutive CPUs of the allowed set (wrapping
    around when there are more ranks than CPUs), ``threads`` CPUs each.

    Why: ranks are numbered tensor-parallel fastest, so a tensor-parallel pair — which meets in an
    all-reduce several times per micro-batch — lands on different CPUs and runs side by side
    instead of waiting for each other's time slice. Measured on 2 cores, 4 ranks: the seed's 30
    steps took 7.1 s pinned against 7.8 s unpinned (mean of 4 alternating pairs). Placement only:
    the numbers computed are the same.
    """
    return {allowed[(rank * threads + i) % len(allowed)] for i in range(max(1, threads))}


def _child(plan_path: Path, rank: int, world_size: int, port: int, threads: int = 1) -> None:
    """In the forked rank: own process group, its CPUs, torchrun's environment, run, never return."""
    code = 1
    try:
        os.setpgid(0, 0)
        allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if len(allowed) > 1:
            os.sched_setaffinity(0, rank_cpus(rank, threads, allowed))
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(2, 1)  # stdout is the protocol pipe: ranks write to the log instead
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                          LOCAL_WORLD_SIZE=str(world_size), GROUP_RANK="0",
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        code = main([str(plan_path)])
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pid, signal.SIGKILL)


def run_phase(plan_path: Path) -> dict[str, Any]:
    """Fork every rank of the phase, supervise them, return the outcome."""
    plan = PhasePlan.read(plan_path)
    world_size = plan.run.parallelism.world_size
    threads = thread_count()
    if threads != 1:
        raise RuntimeError(f"refusing to fork: the launcher process has {threads} threads")
    port = free_port()
    sys.stdout.flush()
    sys.stderr.flush()
    children: dict[int, int] = {}
    for rank in range(world_size):
        pid = os.fork()
        if pid == 0:
            _child(plan_path, rank, world_size, port, plan.run.determinism.threads_per_rank)
        with contextlib.suppress(ProcessLookupError, PermissionError):  # the child sets it too; it may be gone
            os.setpgid(pid, pid)
        children[pid] = rank
    failures: list[dict[str, Any]] = []
    stopping = False
    while children:
        pid, status = os.waitpid(-1, 0)
        if pid not in children:
            continue
        rank = children.pop(pid)
        _kill_group(pid)  # whatever the rank forked (checkpoint writers) goes with it
        code = os.waitstatus_to_exitcode(status)
        if code == 0:
            continue
        failures.append({"rank": rank, "exitcode": code,
                         "signal": signal.Signals(-code).name if code < 0 else None,
                         "time": time.time(), "stopped": stopping})
        if not stopping:
            stopping = True
            for other in children:
                _kill_group(other)
    return {"status": "failed" if failures else "ok", "failures": failures}


def serve() -> int:
    die_with_parent()
    # Ctrl-C reaches the whole foreground process group: the launcher decides what to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    skip_jit_fuser_binding()
    warnings.filterwarnings("ignore", message=r".*(Apex|Transformer Engine).*")
    for name in PRELOAD:
        importlib.import_module(name)
    out = sys.stdout
    out.write(json.dumps({"ready": True, "threads": thread_count()}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        out.write(json.dumps(run_phase(Path(request["plan"]))) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    code = serve()
    sys.stdout.flush()
    sys.stderr.flush()
    # No interpreter teardown: this process only imported modules and forked (it holds no file,
    # buffer or state to finalise), and tearing torch + megatron-core down took 1.2 s on 2 cores
    # while the launcher waited for it.
    os._exit(code)
