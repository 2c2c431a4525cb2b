"""Per-step metrics: measured on the ranks that own them, gathered to rank 0, written twice.

Rank 0 appends one JSON line per step to ``logs/phase<N>/metrics.jsonl`` (full precision —
Python's float repr round-trips) and writes TensorBoard scalars with Megatron's tag names.
The launcher tails the JSONL for the progress display and builds the artifact from it, so a
phase that dies half-way still leaves the steps it finished.

Metrics, defined as Megatron-LM defines them (``training.py``'s ``training_log``):

- ``lm loss``, ``sop loss`` (the binary head): the last pipeline stage's micro-batch mean of
  the data-parallel-averaged losses;
- ``num-zeros``: zeros in the fp32 main gradients after clipping, summed over the model-parallel
  ranks by megatron's optimizer; ``grad-norm``; ``learning-rate``;
- ``iteration-time``: :class:`IntervalTimer` — wall time between barrier-synchronised readings
  after each step, saves excluded, the first step of each process not logged (its time goes into
  the second step's average): a phase's series starts at its second step (2, and the first
  resumed step + 1), as Megatron's goldens do;
- memory, on the last rank (Megatron's TensorBoard writer, rank world_size − 1), every step: on
  CUDA the caching allocator's ``mem-allocated-bytes`` / ``mem-max-allocated-bytes``
  (``allocated_bytes.all.current`` / ``.peak``, the peak never reset); on CPU
  ``cpu-max-rss-anon-bytes``: the largest anonymous resident set (``RssAnon`` of
  /proc/self/status) seen after any step of this process so far. Anonymous pages are what the
  code allocates (heaps, tensors, the interpreter); file-backed pages (``libtorch_cpu.so``'s
  text, read-only data) are left out because how many of them are resident depends on the page
  cache, not on the code — ``ru_maxrss``, which counts them, moved by 96 MB between two fresh
  environments of one commit.

One all-reduce(MAX) over a float64 vector per step gathers them: a rank that does not own a
metric contributes -inf.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, TextIO

ARTIFACT_METRICS = ("lm loss", "sop loss", "num-zeros", "iteration-time")
CPU_MEMORY = ("cpu-max-rss-anon-bytes",)
CUDA_MEMORY = ("mem-allocated-bytes", "mem-max-allocated-bytes")
TENSORBOARD_ONLY = ("grad-norm", "learning-rate")
STATUS_FILE = "/proc/self/status"


def metric_names(device: str) -> tuple[str, ...]:
    """The per-step metrics a run on ``device`` records, in artifact order."""
    return (*ARTIFACT_METRICS, *(CUDA_MEMORY if device == "cuda" else CPU_MEMORY), *TENSORBOARD_ONLY)


def artifact_metric_names(device: str) -> tuple[str, ...]:
    return tuple(n for n in metric_names(device) if n not in TENSORBOARD_ONLY)


def rss_anon_bytes(status_text: str | None = None) -> int:
    """``RssAnon`` of /proc/self/status in bytes (Linux); the text may be given (tests)."""
    if status_text is None:
        with open(STATUS_FILE, encoding="ascii") as fh:
            status_text = fh.read()
    for line in status_text.splitlines():
        if line.startswith("RssAnon:"):
            value, unit = line.split()[1:3]
            if unit != "kB":
                raise ValueError(f"unexpected unit in {line!r}")
            return int(value) * 1024
    raise ValueError("no RssAnon line in /proc/self/status (a Linux kernel ≥ 4.5 has one)")


class MemoryTracker:
    """This process's memory measures after a step (see the module docstring)."""

    def __init__(self, device: str):
        self.device = device
        self.peak_anon = 0

    def read(self) -> dict[str, float]:
        if self.device == "cuda":
            import torch

            stats = torch.cuda.memory_stats()
            return {"mem-allocated-bytes": float(stats["allocated_bytes.all.current"]),
                    "mem-max-allocated-bytes": float(stats["allocated_bytes.all.peak"])}
        self.peak_anon = max(self.peak_anon, rss_anon_bytes())
        return {"cpu-max-rss-anon-bytes": float(self.peak_anon)}


class IntervalTimer:
    """Megatron's ``interval-time`` timer: wall time between readings, each behind a barrier of
    every rank (then a CUDA synchronise on GPUs), so the slowest rank's step is what is timed.
    Megatron's ``Timer.elapsed`` stops and restarts, with a barrier each; one barrier per reading
    marks the same instant on every rank."""

    def __init__(self, device: str, clock: Any = time.perf_counter, barrier: Any = None):
        self.device, self.clock = device, clock
        self._barrier = barrier
        self.accumulated = 0.0
        self.started_at: float | None = None

    def _sync(self) -> None:
        if self._barrier is not None:
            self._barrier()
            return
        import torch

        torch.distributed.barrier()  # then the device, in Megatron's Timer order
        if self.device == "cuda":
            torch.cuda.synchronize()

    def start(self) -> None:
        self._sync()
        self.started_at = self.clock()

    def stop(self) -> None:
        self._sync()
        if self.started_at is not None:
            self.accumulated += self.clock() - self.started_at
        self.started_at = None

    def elapsed(self, *, reset: bool) -> float:
        """Seconds timed since the last reset (the timer keeps running); ``reset`` starts the
        next interval now."""
        self._sync()
        now = self.clock()
        total = self.accumulated + (now - self.started_at if self.started_at is not None else 0.0)
        if reset:
            self.accumulated = 0.0
            if self.started_at is not None:
                self.started_at = now
        return total


class Recorder:
    """Gathers one step's metrics to rank 0 and writes them (JSONL + TensorBoard) there."""

    def __init__(self, *, metrics_path: Path, tensorboard_dir: Path, phase: int, rank: int, device: str):
        self.names = metric_names(device)
        self.device = device
        self.rank = rank
        self.phase = phase
        self._jsonl: TextIO | None = None
        self._writer = None
        if rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            metrics_path.parent.mkdir(parents=True, exist_ok=True)
            self._jsonl = metrics_path.open("a", encoding="utf-8")
            self._writer = SummaryWriter(log_dir=str(tensorboard_dir))

    def event(self, name: str, **fields: Any) -> None:
        """A timing or lifecycle event (rank 0 only), e.g. ready, save, load."""
        if self._jsonl is not None:
            _write_line(self._jsonl, {"event": name, "time": time.time(), **fields})

    def record(self, step: int, local: dict[str, float]) -> dict[str, float]:
        """Collective: every rank passes what it owns; rank 0 returns and writes the gathered step."""
        import torch

        device = "cuda" if self.device == "cuda" else "cpu"
        vector = torch.tensor([local.get(n, -math.inf) for n in self.names], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(vector, op=torch.distributed.ReduceOp.MAX)
        values = dict(zip(self.names, vector.tolist(), strict=True))  # the vector holds one value per name
        gathered = {n: v for n, v in values.items() if v != -math.inf}
        if self._jsonl is not None:  # rank 0: the log and TensorBoard
            _write_line(self._jsonl, {"step": step, "phase": self.phase, "time": time.time(), "metrics": gathered})
        if self._writer is not None:
            for name, value in gathered.items():
                # float64 tensors (not float32 simple_value): import-tb then gives back these exact numbers
                self._writer.add_scalar(name, value, step, new_style=True, double_precision=True)
        return gathered

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._jsonl is not None:
            self._jsonl.close()


def _write_line(jsonl: TextIO, doc: dict[str, Any]) -> None:
    jsonl.write(json.dumps(doc, allow_nan=True) + "\n")
    jsonl.flush()


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
