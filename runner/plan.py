"""What one phase of a run does, and where everything of a run lives on disk.

The launcher writes a :class:`PhasePlan` as JSON; every rank of that phase reads it (torchrun
passes its path). Standard library only: the torchrun entry reads it before importing torch.

Run folder layout (``runs/<run-id>/``)::

    artifact.json                       the normalized result (goldens.files.formats.artifact schema)
    run.json                            the resolved RunConfig
    checkpoints/iter_0000010/           the resume checkpoint in the case's format: torch (Megatron's
                                        legacy mp_rank_XX[_YYY]/model_optim_rng.pt) or torch_dist
    checkpoints/latest_checkpointed_iteration.txt   written last: the save's commit point
    data/                               generated corpus (IndexedDataset) + megatron's index cache
    tensorboard/phase<N>/               event files with Megatron's tag names
    logs/phase<N>/plan.json             this plan
    logs/phase<N>/metrics.jsonl         rank 0: one line per step (full precision) + events
    logs/phase<N>/rank<k>.json          each rank's state, step and error (what failed where)
    logs/phase<N>/environment.json      rank 0: the fingerprint's fields
    logs/phase<N>/torchrun.log          torchrun's and the ranks' stdout/stderr
    logs/phase<N>/node<R>/              multi-node: node R's plan.json, torchrun.log, outcome.json
    nodes/node<R>.json                  multi-node: who node R was and how it ended (runner/run_folder.py)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goldens.files.atomic import atomic_write_text

from .config import RunConfig

TRACKER_FILE = "latest_checkpointed_iteration.txt"


@dataclass(kw_only=True, slots=True, frozen=True)
class PhasePlan:
    """Phase 1 trains from scratch over [first_step, last_step] and saves at ``save_at`` (a
    ckpt-resume case; a regular case does not save); phase 2 loads the checkpoint of iteration
    ``resume_from`` and trains on from there, reading data from the consumed-sample count saved
    in it."""

    run: RunConfig
    run_dir: Path
    phase: int
    first_step: int
    last_step: int
    save_at: int | None = None
    resume_from: int | None = None
    load_optimizer: bool = True
    node_rank: int | None = None  # multi-node: this node's own files go under logs/phase<N>/node<R>/

    def __post_init__(self) -> None:
        if self.phase not in (1, 2):
            raise ValueError(f"phase must be 1 or 2, got {self.phase}")
        if not 1 <= self.first_step <= self.last_step:
            raise ValueError(f"bad step range [{self.first_step}, {self.last_step}]")
        if self.resume_from is not None and self.resume_from != self.first_step - 1:
            raise ValueError(f"resuming from {self.resume_from} must start at step {self.resume_from + 1}")
        if self.save_at is not None and not self.first_step <= self.save_at <= self.last_step:
            raise ValueError(f"save_at {self.save_at} is outside [{self.first_step}, {self.last_step}]")

    # ------------------------------------------------------------ paths
    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs" / f"phase{self.phase}"

    @property
    def node_dir(self) -> Path:
        """Where this node's own files go: the phase folder, or node<R>/ in it on a multi-node run."""
        return self.log_dir if self.node_rank is None else self.log_dir / f"node{self.node_rank}"

    @property
    def plan_path(self) -> Path:
        return self.node_dir / "plan.json"

    @property
    def metrics_path(self) -> Path:
        return self.log_dir / "metrics.jsonl"

    @property
    def environment_path(self) -> Path:
        return self.log_dir / "environment.json"

    @property
    def torchrun_log(self) -> Path:
        return self.node_dir / "torchrun.log"

    @property
    def outcome_path(self) -> Path:
        return self.node_dir / "outcome.json"

    def rank_status_path(self, rank: int) -> Path:
        return self.log_dir / f"rank{rank}.json"

    @property
    def checkpoint_root(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def tensorboard_dir(self) -> Path:
        return self.run_dir / "tensorboard" / f"phase{self.phase}"

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    # ------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run.to_dict(), "run_dir": str(self.run_dir), "phase": self.phase,
                "first_step": self.first_step, "last_step": self.last_step, "save_at": self.save_at,
                "resume_from": self.resume_from, "load_optimizer": self.load_optimizer, "node_rank": self.node_rank}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> PhasePlan:
        return cls(run=RunConfig.from_dict(doc["run"]), run_dir=Path(doc["run_dir"]), phase=doc["phase"],
                   first_step=doc["first_step"], last_step=doc["last_step"], save_at=doc["save_at"],
                   resume_from=doc["resume_from"], load_optimizer=doc["load_optimizer"],
                   node_rank=doc.get("node_rank"))

    def write(self) -> Path:
        atomic_write_text(self.plan_path, json.dumps(self.to_dict(), indent=2) + "\n")
        return self.plan_path

    @classmethod
    def read(cls, path: str | Path) -> PhasePlan:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def checkpoint_dir(root: Path, iteration: int) -> Path:
    """Megatron's naming: ``iter_0000050``."""
    return root / f"iter_{iteration:07d}"


def read_tracker(root: Path) -> int | None:
    """The iteration of the last completed save, or None when no save completed."""
    try:
        text = (root / TRACKER_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None
