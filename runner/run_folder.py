"""The run folder, shared by every node of a run (on a cluster: its shared file system).

The rule, with no race: **node 0 creates, the others join.**

- Node 0 (or, under Slurm, the process that submits the job) creates the folder — new or empty —
  and claims it by creating ``run.json`` exclusively (``open(..., "x")``): of two runs started
  into one folder, the second stops there.
- Node R > 0 never creates a run. It waits (bounded by the phase timeout) for ``run.json``, checks
  that it holds this run's configuration, and joins by creating ``nodes/node<R>.json``
  exclusively: a second node with the same rank is refused, and so is a finished run's folder.
  Node 0 records itself the same way, so ``nodes/`` lists every node of the run.

Who writes what (node 0 hosts global rank 0: golden uses torchrun's static rendezvous, where
the node rank is the agent's group rank):

- once, by global rank 0: the corpus (``data/``), the checkpoint tracker, ``metrics.jsonl``,
  ``environment.json``, ``tensorboard/``; the checkpoint files per (tensor, pipeline) rank by
  data-parallel rank 0, as Megatron's layout says; ``rank<k>.json`` by each global rank;
- per node: ``logs/phase<N>/node<R>/`` (plan, torchrun.log, outcome) and ``nodes/node<R>.json``
  (host, pid, Slurm ids, how the node's run ended);
- the artifact: once, atomically, by node 0 (by the submitter under Slurm) after every phase
  ended; its provenance lists every node's record.

Standard library only (the CLI process imports it).
"""
from __future__ import annotations

import json
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from goldens.core.errors import RunError
from goldens.files.atomic import atomic_write_text

from .config import RunConfig

RUN_FILE = "run.json"
NODES_DIR = "nodes"
WAIT_POLL_S = 0.2
# Slurm's own variables worth keeping in a node's record (what `sacct`/`scontrol` would be asked with).
SLURM_FIELDS = {"job_id": "SLURM_JOB_ID", "step_id": "SLURM_STEP_ID", "node_name": "SLURMD_NODENAME",
                "node_id": "SLURM_NODEID", "nodelist": "SLURM_JOB_NODELIST"}


def prepare_run_dir(run_dir: Path) -> None:
    """Create the (new or empty) run folder, or fail in one line naming why."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"run folder {run_dir} is a file, not a folder: choose another --out")
    try:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise RunError(f"run folder {run_dir} already exists and is not empty: choose another --out")
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".writable"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise RunError(f"cannot use run folder {run_dir}: {exc.strerror or exc}") from None


def create(run_dir: Path, cfg: RunConfig) -> None:
    """Node 0's side: a new or empty folder, claimed by writing ``run.json`` exclusively."""
    prepare_run_dir(run_dir)
    try:
        with (run_dir / RUN_FILE).open("x", encoding="utf-8") as fh:
            fh.write(json.dumps(cfg.to_dict(), indent=2) + "\n")
    except FileExistsError:
        raise RunError(f"run folder {run_dir} was just taken by another run: choose another --out") from None


def wait_for(path: Path, timeout_s: float, waiting_for: str) -> None:
    """Wait until ``path`` exists (another node writes it on the shared folder), or RunError."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise RunError(f"waited {timeout_s:g} s for {waiting_for} ({path} does not exist)")
        time.sleep(WAIT_POLL_S)


def join(run_dir: Path, cfg: RunConfig, *, timeout_s: float) -> None:
    """Node R > 0's side (and every Slurm task's): wait for node 0's ``run.json``, check it is this
    run. Never creates the folder: a typo in --out on one node cannot start a second run."""
    wait_for(run_dir / RUN_FILE, timeout_s, f"node 0 to create the run folder {run_dir}")
    try:
        theirs = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot read {run_dir / RUN_FILE}: {exc}") from None
    if theirs != json.loads(json.dumps(cfg.to_dict())):
        raise RunError(f"run folder {run_dir} holds another configuration than this node's: start every node "
                       f"with the same case, profile and options")
    if (run_dir / "artifact.json").exists():
        raise RunError(f"run folder {run_dir} holds a finished run: choose another --out")


def node_record_path(run_dir: Path, node_rank: int) -> Path:
    return run_dir / NODES_DIR / f"node{node_rank}.json"


def register_node(run_dir: Path, node_rank: int) -> None:
    """Record this node in the run (exclusively: one node per rank)."""
    path = node_record_path(run_dir, node_rank)
    path.parent.mkdir(exist_ok=True)
    record = {"node_rank": node_rank, "host": socket.gethostname(), "pid": os.getpid(),
              "joined": datetime.now(UTC).isoformat(timespec="seconds")}
    slurm = {key: os.environ[var] for key, var in SLURM_FIELDS.items() if var in os.environ}
    if slurm:
        record["slurm"] = slurm
    try:
        with path.open("x", encoding="utf-8") as fh:
            fh.write(json.dumps(record, indent=2) + "\n")
    except FileExistsError:
        raise RunError(f"node rank {node_rank} has already joined the run in {run_dir}: "
                       f"give every node its own --node-rank") from None


def finish_node(run_dir: Path, node_rank: int, *, status: str, error: str | None,
                walls: dict[int, float]) -> None:
    """Add how this node's run ended to its record (atomically: a reader sees old or new)."""
    path = node_record_path(run_dir, node_rank)
    record = read_node_record(path) or {"node_rank": node_rank}
    record.update(status=status, error=error, phase_wall_s={str(k): v for k, v in walls.items()},
                  ended=datetime.now(UTC).isoformat(timespec="seconds"))
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def read_node_record(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def node_records(run_dir: Path) -> dict[int, dict[str, Any]]:
    """Every node's record, by node rank (unreadable ones are left out)."""
    records = {}
    for path in sorted((run_dir / NODES_DIR).glob("node*.json")):
        doc = read_node_record(path)
        if doc is not None and isinstance(doc.get("node_rank"), int):
            records[doc["node_rank"]] = doc
    return records


def new_run_id(case: str, profile: str) -> str:
    """``<case>-<profile>-<UTC time>-<random>``; a case path's '/' becomes '-' (a run id names a folder)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return f"{case.replace('/', '-')}-{profile}-{stamp}-{os.urandom(2).hex()}"
