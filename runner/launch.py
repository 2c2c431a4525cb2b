"""Run a case: its phases (a ckpt-resume case two, a regular case one) in fresh processes,
supervised, with a timeout per phase.

Two launchers produce the same outcome record:

- ``torchrun`` (``runner/torchrun.py`` = ``torch.distributed.run`` + a structured failure file):
  any device, any number of nodes; extra torchrun options (``--rdzv-endpoint``, ``--rdzv-id``,
  ...) pass through unchanged. On several nodes the rendezvous is torchrun's static one, so that
  node rank R is the agent's group rank and node 0 hosts global rank 0 (it creates the run
  folder and writes the artifact: ``runner/run_folder.py``); phase N rendezvouses on the
  endpoint's port + N − 1, so a node that finished phase 1 early never meets phase 1's store.
- ``fork`` (``runner/forkserver.py``): single-node CPU only; imports once, forks the ranks.
  ``auto`` picks it for single-node CPU runs, torchrun otherwise.

``slurm`` (``runner/slurm.py``, built on this module: ``run_on_slurm`` in place of ``run_case``)
runs one torchrun per node under ``srun`` and supervises the job.

Failure handling, whichever launcher: a rank that fails stops the phase (the launcher kills
the other ranks); a phase past its timeout is stopped here — every process of the launcher's
tree is frozen (SIGSTOP), collected again, then killed (SIGKILL), so nothing is left behind;
the error names the rank and the phase; the artifact is written (status ``failed`` for an
error, ``incomplete`` when stopped from outside) and ``RunError`` (exit 2) is raised.

Only the standard library, psutil and the artifact's writer are imported here: no torch in the
CLI process.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import psutil

from goldens.core.errors import RunError
from goldens.core.model import Artifact
from goldens.files.formats.artifact import read_artifact

from . import run_folder
from .artifact import ARTIFACT_FILE, assemble, write
from .config import RunConfig
from .plan import PhasePlan, checkpoint_dir, read_tracker
from .status import STATES, RankState, read_states

LAUNCHERS = ("auto", "fork", "torchrun", "slurm")
RUN_DIR_ENV = "GOLDEN_RUN_DIR"
SOURCE_ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.2
# Errors a rank reports because a *peer* went away: consequences, not causes.
PEER_ERROR = re.compile(r"connection (closed|reset)|broken pipe|peer|recv|send|gloo|nccl|socket|"
                        r"timed out|timeout|aborted", re.IGNORECASE)

# torchrun options that name a rendezvous, and those that only make sense across nodes (both spellings).
RENDEZVOUS_OPTIONS = frozenset({"--rdzv-endpoint", "--rdzv_endpoint", "--master-addr", "--master_addr"})
MULTI_NODE_OPTIONS = frozenset({"--rdzv-endpoint", "--rdzv_endpoint"})
# What golden derives from the case and its own options; passed through, they would contradict it.
DERIVED_OPTIONS = frozenset({"--nnodes", "--nproc-per-node", "--nproc_per_node", "--standalone", "--node-rank",
                             "--node_rank"})

ProgressFn = Callable[[int, int, Mapping[str, float]], None]


@dataclass(frozen=True)
class PhaseOutcome:
    """How a phase ended: ``ok``, ``failed`` (a rank failed) or ``timeout``; plus what we know."""

    phase: int
    status: str
    error: str | None = None
    wall_s: float = 0.0


# ---------------------------------------------------------------- process trees

def kill_tree(root_pid: int) -> list[int]:
    """Stop a process and all its descendants for good; returns the pids signalled.

    Freeze first (SIGSTOP) so nothing can fork while we look, look again for late children,
    then SIGKILL everything, the root last. Workers torchrun starts sit in their own sessions,
    so the tree — not the process group — is what must be walked.
    """
    try:
        root = psutil.Process(root_pid)
    except psutil.NoSuchProcess:
        return []
    seen: dict[int, psutil.Process] = {}
    for _ in range(3):
        try:
            found = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            found = [root]
        new = [p for p in found if p.pid not in seen]
        if not new:
            break
        for proc in new:
            seen[proc.pid] = proc
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGSTOP)
        for proc in list(seen.values()):  # children of frozen processes found by another pass
            try:
                for child in proc.children(recursive=True):
                    if child.pid not in seen:
                        seen[child.pid] = child
                        child.send_signal(signal.SIGSTOP)
            except psutil.NoSuchProcess:
                pass
    for proc in sorted(seen.values(), key=lambda p: p.pid == root_pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(list(seen.values()), timeout=5)
    return sorted(seen)


def _option_names(args: tuple[str, ...]) -> set[str]:
    return {a.split("=", 1)[0] for a in args if a.startswith("--")}


def _option_value(args: tuple[str, ...], names: frozenset[str] | set[str]) -> str | None:
    """The value of the last of ``names`` in ``args`` (``--opt=value`` or ``--opt value``)."""
    found = None
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name in names:
            found = value if eq else (args[i + 1] if i + 1 < len(args) else None)
    return found


def phase_endpoint(args: tuple[str, ...], phase: int) -> tuple[str, ...]:
    """``args`` with the rendezvous endpoint's port moved to port + phase − 1: each phase's static
    rendezvous has its own store, so a node that starts phase 2 while node 0's phase-1 agent is
    still shutting down cannot join the wrong one."""
    out, skip = [], False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        name, eq, value = arg.partition("=")
        if name not in MULTI_NODE_OPTIONS:
            out.append(arg)
            continue
        if not eq:
            value, skip = (args[i + 1] if i + 1 < len(args) else ""), True
        host, _, port = value.rpartition(":")
        out.append(f"--rdzv-endpoint={host}:{int(port) + phase - 1}")
    return tuple(out)


def child_env(cfg: RunConfig, extra: Mapping[str, str]) -> dict[str, str]:
    threads = str(cfg.determinism.threads_per_rank)
    env = {**os.environ, **cfg.determinism.env, **extra,
           "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
           "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SOURCE_ROOT), os.environ.get("PYTHONPATH")) if p)
    if cfg.launch.device == "cpu":
        # A CPU run on a GPU host: its ranks see no GPU, so the CPU compatibility layer applies as on
        # a CPU-only host (compat.install refuses to run where CUDA is available).
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


# ---------------------------------------------------------------- launchers

class Launcher(Protocol):
    name: str

    def begin(self, plan: PhasePlan) -> None: ...
    def poll(self, wait_s: float) -> dict[str, Any] | None: ...
    def kill(self) -> None: ...
    def close(self) -> None: ...


class TorchrunLauncher:
    """One ``torchrun`` per phase (fresh processes, torch's elastic agent supervising)."""

    name = "torchrun"

    def __init__(self, cfg: RunConfig, *, extra_args: tuple[str, ...] = (), env: Mapping[str, str] | None = None,
                 node_rank: int = 0):
        self.cfg, self.extra_args, self.env = cfg, extra_args, dict(env or {})
        self.node_rank = node_rank
        self.proc: subprocess.Popen | None = None
        self.outcome_path: Path | None = None
        self._log: BinaryIO | None = None

    def command(self, plan: PhasePlan, outcome_path: Path) -> list[str]:
        args = ["--nproc-per-node", str(self.cfg.nproc_per_node), "--max-restarts", "0",
                "--monitor-interval", "0.1"]
        names = _option_names(self.extra_args)
        extra = self.extra_args
        if self.cfg.launch.nnodes > 1:
            args += ["--nnodes", str(self.cfg.launch.nnodes), "--node-rank", str(self.node_rank)]
            if "--rdzv-backend" not in names and "--rdzv_backend" not in names:
                args.append("--rdzv-backend=static")
            extra = phase_endpoint(extra, plan.phase)
        elif not names & RENDEZVOUS_OPTIONS:
            args.append("--standalone")
        return [sys.executable, "-m", "runner.torchrun", str(outcome_path), *args, *extra,
                "-m", "runner.worker", str(plan.plan_path)]

    def begin(self, plan: PhasePlan) -> None:
        self.outcome_path = plan.outcome_path
        self._log = plan.torchrun_log.open("ab")
        self.proc = subprocess.Popen(self.command(plan, self.outcome_path), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     env=child_env(self.cfg, self.env), cwd=str(plan.run_dir))

    def poll(self, wait_s: float) -> dict[str, Any] | None:
        assert self.proc is not None and self.outcome_path is not None
        try:
            code = self.proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            return None
        self._close_log()
        try:
            return json.loads(self.outcome_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"status": "ok" if code == 0 else "failed", "failures": [],
                    "launcher_exit": code}

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            kill_tree(self.proc.pid)
            self.proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        self.kill()


class ForkLauncher:
    """One fork server for the whole run; each phase's ranks are forked from it."""

    name = "fork"

    def __init__(self, cfg: RunConfig, *, run_dir: Path, env: Mapping[str, str] | None = None):
        self.cfg, self.run_dir, self.env = cfg, run_dir, dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.ready = False
        self._buffer = b""
        self._pending = b""  # the next request, sent once the server reports ready
        self._log: BinaryIO | None = None

    def _start(self) -> None:
        log_path = self.run_dir / "logs" / "forkserver.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "runner.forkserver"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log,
                                     env=child_env(self.cfg, self.env), cwd=str(self.run_dir))

    def begin(self, plan: PhasePlan) -> None:
        if self.proc is None:
            self._start()
        self._pending = json.dumps({"plan": str(plan.plan_path)}).encode() + b"\n"
        if self.ready:
            self._send()

    def _send(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(self._pending)
        self.proc.stdin.flush()
        self._pending = b""

    def _read_line(self, wait_s: float) -> dict[str, Any] | None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + wait_s
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                code = self.proc.wait()
                raise RunError(f"the fork launcher exited with code {code} "
                               f"(see {self.run_dir / 'logs' / 'forkserver.log'})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def poll(self, wait_s: float) -> dict[str, Any] | None:
        reply = self._read_line(wait_s)
        if reply is None:
            return None
        if reply.get("ready"):
            self.ready = True
            self._send()
            return None
        return reply

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            kill_tree(self.proc.pid)
            self.proc.wait()
        self.proc, self.ready = None, False
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):  # killed below
                self.proc.wait(timeout=10)
        self.kill()


def launcher_kind(choice: str, cfg: RunConfig, torchrun_args: tuple[str, ...] = ()) -> str:
    """``fork`` or ``torchrun`` for this run, or a RunError naming the option at fault — asked
    before the run folder is made, so a bad combination writes nothing and starts nothing."""
    if choice not in LAUNCHERS:
        raise RunError(f"launcher must be one of {', '.join(LAUNCHERS)}, got {choice!r}")
    if choice == "slurm":
        raise RunError("--launcher slurm runs through runner.slurm.run_on_slurm (one torchrun per node under srun)")
    names = _option_names(torchrun_args)
    if names & DERIVED_OPTIONS:
        raise RunError(f"--torchrun-arg {', '.join(sorted(names & DERIVED_OPTIONS))}: golden sets it from the case "
                       f"and --nnodes; leave it out")
    nodes = cfg.launch.nnodes
    if nodes > 1 and not names & MULTI_NODE_OPTIONS:
        raise RunError(f"a run on {nodes} nodes needs --rdzv-endpoint HOST:PORT (node 0's host, the same on every "
                       f"node)")
    endpoint = _option_value(torchrun_args, MULTI_NODE_OPTIONS)
    if nodes > 1 and not re.fullmatch(r".+:\d{1,5}", endpoint or ""):
        raise RunError(f"--rdzv-endpoint must be HOST:PORT, got {endpoint!r}")
    backend = _option_value(torchrun_args, {"--rdzv-backend", "--rdzv_backend"})
    if nodes > 1 and backend not in (None, "static"):
        raise RunError(f"--rdzv-backend {backend}: a multi-node run uses the static rendezvous, where node rank 0 "
                       f"hosts global rank 0 (it creates the run folder and writes the artifact)")
    if nodes == 1 and names & MULTI_NODE_OPTIONS:
        raise RunError(f"{', '.join(sorted(names & MULTI_NODE_OPTIONS))} is for multi-node runs: add --nnodes N")
    forkable = cfg.launch.device == "cpu" and nodes == 1 and not torchrun_args
    if choice == "fork" and not forkable:
        raise RunError("the fork launcher is for single-node CPU runs without torchrun options: use torchrun")
    return "fork" if choice == "fork" or (choice == "auto" and forkable) else "torchrun"


def make_launcher(choice: str, cfg: RunConfig, *, run_dir: Path, torchrun_args: tuple[str, ...] = (),
                  env: Mapping[str, str] | None = None, node_rank: int = 0) -> Launcher:
    if launcher_kind(choice, cfg, torchrun_args) == "fork":
        return ForkLauncher(cfg, run_dir=run_dir, env=env)
    return TorchrunLauncher(cfg, extra_args=torchrun_args, env=env, node_rank=node_rank)


# ---------------------------------------------------------------- naming what went wrong

def _progress_key(state: RankState) -> tuple[int, int]:
    order = STATES.index(state.state) if state.state in STATES else -1
    return (state.step or 0, order)


def explain_failure(phase: int, outcome: Mapping[str, Any], states: Mapping[int, RankState],
                    *, timeout_s: float | None = None) -> str:
    """One line naming the rank(s) and the phase, from the launcher's outcome and rank reports."""
    def where(rank: int) -> str:
        st = states.get(rank)
        if st is None:
            return "before reporting"
        after = f" after step {st.step}" if st.step is not None else ""
        return f"while {st.activity}{after}"

    if outcome.get("status") == "timeout":
        if not states:
            return f"phase {phase} timed out after {timeout_s:g} s before any rank reported (see logs)"
        running = {r: s for r, s in states.items() if s.state not in ("done", "failed")}
        if not running:
            return f"phase {phase} timed out after {timeout_s:g} s"
        slowest = min(_progress_key(s) for s in running.values())
        stuck = sorted(r for r, s in running.items() if _progress_key(s) == slowest)
        names = f"rank {stuck[0]}" if len(stuck) == 1 else "ranks " + ",".join(map(str, stuck))
        others = "" if len(stuck) == len(states) else " (the others waited for it)"
        return f"phase {phase} timed out after {timeout_s:g} s: {names} stuck {where(stuck[0])}{others}"
    failures = [f for f in outcome.get("failures", []) if not f.get("stopped")]
    errors = sorted((s.time, r, s.error) for r, s in states.items() if s.error)
    own_errors = [e for e in errors if not PEER_ERROR.search(e[2])]
    if own_errors:
        _, rank, error = own_errors[0]
        return f"rank {rank} failed in phase {phase} {where(rank)}: {error}"
    by_signal = sorted((f.get("time", 0.0), f["rank"], f) for f in failures if f.get("signal"))
    if by_signal:
        _, rank, f = by_signal[0]
        return f"rank {rank} died in phase {phase} {where(rank)} ({f['signal']})"
    silent = [f for f in failures if not (states.get(f["rank"]) and states[f["rank"]].error)]
    if silent:
        f = min(silent, key=lambda f: f.get("time", 0.0))
        return f"rank {f['rank']} exited with code {f['exitcode']} in phase {phase} {where(f['rank'])}"
    if errors:
        _, rank, error = errors[0]
        return f"rank {rank} failed in phase {phase} {where(rank)}: {error}"
    code = outcome.get("launcher_exit")
    return f"phase {phase} failed" + (f" (launcher exit code {code})" if code is not None else "")


# ---------------------------------------------------------------- running phases

class MetricsTail:
    """Reads a growing metrics.jsonl, returning complete new step lines."""

    def __init__(self, path: Path):
        self.path, self.offset = path, 0

    def new_steps(self) -> list[tuple[int, dict[str, float]]]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        steps = []
        for line in data[:end].splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if "step" in doc:
                steps.append((int(doc["step"]), doc["metrics"]))
        return steps


def run_phase(launcher: Launcher, plan: PhasePlan, *, timeout_s: float,
              on_progress: ProgressFn | None = None) -> PhaseOutcome:
    """Start the phase, follow its progress, stop it at the deadline; never leaves processes."""
    plan.node_dir.mkdir(parents=True, exist_ok=True)
    plan.write()
    started = time.monotonic()
    deadline = started + timeout_s
    tail = MetricsTail(plan.metrics_path)
    launcher.begin(plan)
    try:
        while True:
            outcome = launcher.poll(POLL_S)
            if on_progress is not None:
                for step, metrics in tail.new_steps():
                    on_progress(plan.phase, step, metrics)
            if outcome is not None:
                break
            if time.monotonic() > deadline:
                launcher.kill()
                outcome = {"status": "timeout", "failures": []}
                break
    except BaseException:
        launcher.kill()
        raise
    wall = time.monotonic() - started
    if outcome["status"] == "ok":
        return PhaseOutcome(plan.phase, "ok", wall_s=wall)
    error = explain_failure(plan.phase, outcome, read_states(plan.log_dir), timeout_s=timeout_s)
    return PhaseOutcome(plan.phase, outcome["status"], error, wall)


@dataclass(frozen=True)
class RunOptions:
    """How to run (not what): where, which launcher, torchrun pass-through, test hooks."""

    run_dir: Path
    launcher: str = "auto"
    torchrun_args: tuple[str, ...] = ()
    reuse_phase1_from: Path | None = None  # re-run only phase 2 from another run's checkpoint
    load_optimizer: bool = True
    env: Mapping[str, str] = field(default_factory=dict)  # extra environment for the ranks
    node_rank: int = 0  # multi-node: this node's rank (node 0 creates the run folder, the others join)
    join: bool = False  # a Slurm task: node 0 joins too, the submitter creates the folder and writes the artifact
    slurm_args: tuple[str, ...] = ()  # --launcher slurm: extra srun options (--partition, --time, ...)


@dataclass(frozen=True)
class RunReport:
    """What run_case hands back: the artifact (also on disk) and per-phase wall times."""

    artifact: Artifact | None  # None for a Slurm task: its submitter writes the artifact
    artifact_path: Path
    outcomes: tuple[PhaseOutcome, ...]


def _reuse_phase1(source: Path, run_dir: Path, cfg: RunConfig) -> None:
    """Copy another run's phase-1 logs, checkpoint and data so phase 2 can resume from them."""
    plan_path = source / "logs" / "phase1" / "plan.json"
    if not plan_path.is_file():
        raise RunError(f"{source} is not a run folder with a phase 1 (no {plan_path})")
    if PhasePlan.read(plan_path).run.to_dict() != cfg.to_dict():
        raise RunError(f"run {source} used a different configuration: it cannot seed this run's phase 2")
    for part in (Path("logs") / "phase1", Path("checkpoints"), Path("data")):
        if (source / part).is_dir():
            shutil.copytree(source / part, run_dir / part)


CUDA_PROBE = ("import json, torch; print(json.dumps({'devices': torch.cuda.device_count(), "
              "'torch': torch.__version__, 'cuda': torch.version.cuda}))")


def visible_cuda_devices() -> dict[str, Any]:
    """What a rank would see: CUDA devices, torch version and its CUDA build (None: a CPU build).
    Asked of a fresh interpreter, because torch is never imported in the CLI process."""
    try:
        probe = subprocess.run([sys.executable, "-c", CUDA_PROBE], capture_output=True, text=True, timeout=120,
                               stdin=subprocess.DEVNULL)
        return json.loads(probe.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return {"devices": 0, "torch": None, "cuda": None}


def check_device(cfg: RunConfig) -> None:
    """A CUDA run on a machine without enough GPUs fails here, in one line, before any rank starts
    (otherwise every rank dies inside torch.cuda with an error that names no cause)."""
    if cfg.launch.device != "cuda":
        return
    found = visible_cuda_devices()
    needed = cfg.nproc_per_node
    if found["devices"] < needed:
        build = f"CUDA {found['cuda']}" if found.get("cuda") else "a CPU-only build"
        raise RunError(f"--device cuda needs {needed} CUDA device(s) per node, this machine has {found['devices']} "
                       f"(torch {found.get('torch') or 'not importable'}, {build}): use --device cpu or a GPU machine")


class Terminated(KeyboardInterrupt):
    """SIGTERM, as a CI job's cancel or timeout sends it: handled like Ctrl-C."""


@contextlib.contextmanager
def sigterm_stops_the_run() -> Iterator[None]:
    """While the run is supervised here, SIGTERM stops the ranks and still writes the artifact
    (status ``incomplete``) as Ctrl-C does; Python's default would exit without either."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_case(cfg: RunConfig, options: RunOptions, *, on_progress: ProgressFn | None = None,
             on_phase: Callable[[int], None] | None = None) -> RunReport:
    """Phase 1 (train, save at the midpoint), then for a ckpt-resume case phase 2 (fresh processes,
    resume, train on); writes ``artifact.json`` whatever happens and raises RunError if the run did
    not complete."""
    run_dir = options.run_dir.resolve()
    if options.reuse_phase1_from is not None and not cfg.resumes:
        raise RunError(f"a {cfg.test_type} case has no phase 2 to resume: reusing phase 1 needs a ckpt-resume case")
    multi_node = cfg.launch.nnodes > 1
    if options.node_rank and not multi_node:
        raise RunError("--node-rank is for multi-node runs: add --nnodes N")
    if not 0 <= options.node_rank < cfg.launch.nnodes:
        raise RunError(f"--node-rank must be in [0, {cfg.launch.nnodes - 1}] for a run on {cfg.launch.nnodes} "
                       f"node(s), got {options.node_rank}")
    if multi_node and options.reuse_phase1_from is not None:
        raise RunError("reusing another run's phase 1 is for single-node runs")
    launcher_kind(options.launcher, cfg, options.torchrun_args)
    check_device(cfg)
    creates = options.node_rank == 0 and not options.join  # node 0 creates the run folder, the others join
    if creates:
        run_folder.create(run_dir, cfg)
    else:
        run_folder.join(run_dir, cfg, timeout_s=cfg.launch.phase_timeout_s)
    recorded = multi_node or options.join  # nodes/node<R>.json: who ran where, and how it ended
    if recorded:
        run_folder.register_node(run_dir, options.node_rank)
    node = options.node_rank if multi_node else None
    s = cfg.schedule
    plan1 = PhasePlan(run=cfg, run_dir=run_dir, phase=1, first_step=1, last_step=s.train_iters,
                      save_at=s.save_interval if cfg.resumes else None, node_rank=node)
    plan2 = PhasePlan(run=cfg, run_dir=run_dir, phase=2, first_step=s.save_interval + 1, last_step=s.train_iters,
                      resume_from=s.save_interval, load_optimizer=options.load_optimizer,
                      node_rank=node) if cfg.resumes else None
    outcomes: list[PhaseOutcome] = []
    error: str | None = None
    status = "complete"
    # Every process of the run inherits GOLDEN_RUN_DIR: what `ps e` shows, and how tests prove
    # that nothing outlived the run.
    launcher = make_launcher(options.launcher, cfg, run_dir=run_dir, torchrun_args=options.torchrun_args,
                             env={**options.env, RUN_DIR_ENV: str(run_dir)}, node_rank=options.node_rank)
    try:
        with sigterm_stops_the_run():
            if options.reuse_phase1_from is not None:
                _reuse_phase1(options.reuse_phase1_from, run_dir, cfg)
            else:
                if on_phase:
                    on_phase(1)
                outcomes.append(run_phase(launcher, plan1, timeout_s=cfg.launch.phase_timeout_s,
                                          on_progress=on_progress))
            if plan2 is not None and all(o.status == "ok" for o in outcomes):
                if node:  # global rank 0 commits the checkpoint: wait until node 0's phase 1 has ended
                    run_folder.wait_for(replace(plan1, node_rank=0).outcome_path, cfg.launch.phase_timeout_s,
                                        "node 0 to end phase 1")
                committed = read_tracker(plan2.checkpoint_root)
                if committed != s.save_interval:
                    where = checkpoint_dir(plan2.checkpoint_root, s.save_interval)
                    why = "interrupted save" if where.exists() else "missing checkpoint"
                    raise RunError(f"phase 2 cannot start: {why} — no committed checkpoint of iteration "
                                   f"{s.save_interval} in {plan2.checkpoint_root}")
                if on_phase:
                    on_phase(2)
                outcomes.append(run_phase(launcher, plan2, timeout_s=cfg.launch.phase_timeout_s,
                                          on_progress=on_progress))
    except RunError as exc:
        status, error = "failed", str(exc)
    except Terminated:
        status, error = "incomplete", "terminated (SIGTERM)"
    except KeyboardInterrupt:
        status, error = "incomplete", "interrupted"
    finally:
        launcher.close()
    bad = next((o for o in outcomes if o.status != "ok"), None)
    if bad is not None:
        status = "incomplete" if bad.status == "timeout" else "failed"
        error = bad.error
    if recorded:
        run_folder.finish_node(run_dir, options.node_rank, status=status, error=error,
                               walls={o.phase: o.wall_s for o in outcomes})
    if not creates:  # the artifact is node 0's (or the Slurm submitter's) to write
        return _joined_report(cfg, run_dir, outcomes, status=status, error=error, wait=not options.join)
    artifact = assemble(cfg, run_dir, status=status, error=error, outcomes=outcomes, launcher=launcher.name,
                        reused_phase1=options.reuse_phase1_from)
    path = write(artifact, run_dir)
    artifact = replace(artifact, source=str(path))  # as read back: staging for review points at the file
    if status != "complete":
        raise RunError(f"{error} (artifact: {path}, status {status})")
    return RunReport(artifact=artifact, artifact_path=path, outcomes=tuple(outcomes))


def _joined_report(cfg: RunConfig, run_dir: Path, outcomes: list[PhaseOutcome], *, status: str,
                   error: str | None, wait: bool) -> RunReport:
    """What a node that does not write the artifact returns: node 0's artifact once it is written
    (``wait``), so every node's ``golden run`` reports the run's outcome; a Slurm task, whose
    submitter writes it after the job, returns without it."""
    path = run_dir / ARTIFACT_FILE
    if not wait:
        if status != "complete":
            raise RunError(f"{error} (status {status})")
        return RunReport(artifact=None, artifact_path=path, outcomes=tuple(outcomes))
    run_folder.wait_for(path, cfg.launch.phase_timeout_s, "node 0 to write the artifact")
    artifact = read_artifact(path)
    if artifact.status != "complete":
        raise RunError(f"{artifact.error or error} (artifact: {path}, status {artifact.status})")
    return RunReport(artifact=artifact, artifact_path=path, outcomes=tuple(outcomes))
