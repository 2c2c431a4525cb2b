"""Per-step metrics: measured on the ranks that own them, gathered to rank 0, written twice.

Rank 0 appends one JSON line per step to ``logs/phase<N>/metrics.jsonl`` (full precision —
Python's float repr round-trips) and writes TensorBoard scalars with Megatron's tag names.
The launcher tails the JSONL for the progress display and builds the artifact from it, so a
phase that dies half-way still leaves the steps it finished.

Metrics (Megatron's names): ``lm loss``, ``sop loss`` (the binary head) from the last pipeline
stage, averaged over micro-batches; ``num-zeros`` (zeros in the gradients, summed over the
model-parallel ranks by megatron's optimizer); ``grad-norm``; ``learning-rate``;
``iteration-time`` (seconds, the slowest rank); memory — on CUDA the allocator's
``mem-allocated-bytes`` / ``mem-max-allocated-bytes``, on CPU ``cpu-max-rss-bytes`` (the peak
resident set size of the largest rank process: a process measure, not an allocator one).
One all-reduce(MAX) over a float64 vector per step gathers them: a rank that does not own a
metric contributes -inf.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

ARTIFACT_METRICS = ("lm loss", "sop loss", "num-zeros", "iteration-time")
CPU_MEMORY = ("cpu-max-rss-bytes",)
CUDA_MEMORY = ("mem-allocated-bytes", "mem-max-allocated-bytes")
TENSORBOARD_ONLY = ("grad-norm", "learning-rate")


def metric_names(device: str) -> tuple[str, ...]:
    """The per-step metrics a run on ``device`` records, in artifact order."""
    return (*ARTIFACT_METRICS, *(CUDA_MEMORY if device == "cuda" else CPU_MEMORY), *TENSORBOARD_ONLY)


def artifact_metric_names(device: str) -> tuple[str, ...]:
    return tuple(n for n in metric_names(device) if n not in TENSORBOARD_ONLY)


def memory_readings(device: str) -> dict[str, float]:
    """This process's memory measures (see the module docstring for what each means)."""
    if device == "cuda":
        import torch

        return {"mem-allocated-bytes": float(torch.cuda.memory_allocated()),
                "mem-max-allocated-bytes": float(torch.cuda.max_memory_allocated())}
    import resource

    return {"cpu-max-rss-bytes": float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)}


class Recorder:
    """Gathers one step's metrics to rank 0 and writes them (JSONL + TensorBoard) there."""

    def __init__(self, *, metrics_path: Path, tensorboard_dir: Path, phase: int, rank: int, device: str):
        self.names = metric_names(device)
        self.device = device
        self.rank = rank
        self.phase = phase
        self._jsonl = None
        self._writer = None
        if rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            metrics_path.parent.mkdir(parents=True, exist_ok=True)
            self._jsonl = metrics_path.open("a", encoding="utf-8")
            self._writer = SummaryWriter(log_dir=str(tensorboard_dir))

    def event(self, name: str, **fields: Any) -> None:
        """A timing or lifecycle event (rank 0 only), e.g. ready, save, load."""
        if self._jsonl is not None:
            self._write({"event": name, "time": time.time(), **fields})

    def record(self, step: int, local: dict[str, float]) -> dict[str, float]:
        """Collective: every rank passes what it owns; rank 0 returns and writes the gathered step."""
        import torch

        device = "cuda" if self.device == "cuda" else "cpu"
        vector = torch.tensor([local.get(n, -math.inf) for n in self.names], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(vector, op=torch.distributed.ReduceOp.MAX)
        values = dict(zip(self.names, vector.tolist()))
        gathered = {n: v for n, v in values.items() if v != -math.inf}
        if self.rank == 0:
            self._write({"step": step, "phase": self.phase, "time": time.time(), "metrics": gathered})
            for name, value in gathered.items():
                # float64 tensors (not float32 simple_value): import-tb then gives back these exact numbers
                self._writer.add_scalar(name, value, step, new_style=True, double_precision=True)
        return gathered

    def _write(self, doc: dict[str, Any]) -> None:
        self._jsonl.write(json.dumps(doc, allow_nan=True) + "\n")
        self._jsonl.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._jsonl is not None:
            self._jsonl.close()


def read_log(path: Path) -> tuple[dict[int, dict[str, float]], list[dict[str, Any]]]:
    """Parse a phase's metrics.jsonl into {step: metrics} and the event list (a torn last line,
    from a rank killed mid-write, is ignored)."""
    steps: dict[int, dict[str, float]] = {}
    events: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return steps, events
    for line in lines:
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "step" in doc:
            steps[int(doc["step"])] = {k: float(v) for k, v in doc["metrics"].items()}
        elif "event" in doc:
            events.append(doc)
    return steps, events
