"""One phase on one rank: set up → build → data → (load) → train, saving where planned → close."""
from __future__ import annotations

import json
import time
from typing import Any, Iterator

from . import bert, checkpoint, data, distributed
from .faults import maybe_inject
from .metrics import Recorder, memory_readings
from .plan import PhasePlan
from .status import RankStatus


def run_phase(plan: PhasePlan, status: RankStatus) -> None:
    cfg = plan.run
    status.update("building")
    layout = distributed.setup(cfg)
    recorder = Recorder(metrics_path=plan.metrics_path, tensorboard_dir=plan.tensorboard_dir,
                        phase=plan.phase, rank=layout.rank, device=cfg.launch.device)
    try:
        if layout.rank == 0:
            from .provenance import environment_fields

            plan.environment_path.write_text(json.dumps(environment_fields(cfg), indent=2) + "\n")
        trainer = bert.build(cfg, layout)
        batches = micro_batches(plan, trainer)
        if plan.resume_from is not None:  # last before training: it restores every RNG
            status.update("loading")
            started = time.perf_counter()
            checkpoint.load(trainer, plan)
            recorder.event("load", seconds=time.perf_counter() - started, iteration=plan.resume_from)
        recorder.event("ready")
        train(plan, trainer, batches, recorder, status)
        recorder.event("done")
    finally:
        recorder.close()
    distributed.teardown()


def micro_batches(plan: PhasePlan, trainer: bert.Trainer) -> Iterator[dict[str, Any]] | None:
    """This rank's micro-batch stream from the phase's first step (None off tensor-parallel rank 0)."""
    cfg, layout = plan.run, trainer.layout
    dataset = data.build_dataset(
        cfg.data, directory=plan.data_dir, seq_length=cfg.model.seq_length, seed=cfg.determinism.seed,
        num_samples=cfg.schedule.train_iters * cfg.schedule.global_batch_size,
        binary_head=cfg.model.binary_head, builds_on_this_rank=layout.tp_rank == 0)
    if dataset is None:
        return None
    return data.batches(dataset, first_sample=(plan.first_step - 1) * cfg.schedule.global_batch_size,
                        micro_batch_size=cfg.schedule.micro_batch_size, dp_rank=layout.dp_rank,
                        dp_size=layout.dp_size)


def train(plan: PhasePlan, trainer: bert.Trainer, batches: Iterator[dict[str, Any]] | None, recorder: Recorder,
          status: RankStatus) -> None:
    """Steps first_step..last_step, recording each and saving at ``plan.save_at``."""
    device, rank = plan.run.launch.device, trainer.layout.rank
    status.update("training")
    for step in range(plan.first_step, plan.last_step + 1):
        started = time.perf_counter()
        result = bert.train_step(trainer, batches)
        local = {**result.losses, "iteration-time": time.perf_counter() - started,
                 "learning-rate": result.learning_rate, **memory_readings(device)}
        if result.num_zeros is not None:
            local["num-zeros"] = result.num_zeros
        if result.grad_norm is not None:
            local["grad-norm"] = result.grad_norm
        recorder.record(step, local)
        status.update("training", step)
        maybe_inject(f"step{step}", phase=plan.phase, rank=rank)
        if step == plan.save_at:
            status.update("saving", step)
            started = time.perf_counter()
            checkpoint.save(trainer, plan, step)
            recorder.event("save", seconds=time.perf_counter() - started, iteration=step)
            status.update("training", step)
