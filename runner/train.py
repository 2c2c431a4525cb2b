"""One phase on one rank: set up → build → data → (load) → train, saving where planned → close."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from . import checkpoint, distributed
from . import trainer as trainers
from .faults import maybe_inject
from .metrics import IntervalTimer, MemoryTracker, Recorder
from .plan import PhasePlan
from .provenance import environment_fields
from .status import RankStatus


def run_phase(plan: PhasePlan, status: RankStatus) -> None:
    cfg = plan.run
    status.update("building")
    layout = distributed.setup(cfg)
    recorder = Recorder(metrics_path=plan.metrics_path, tensorboard_dir=plan.tensorboard_dir,
                        phase=plan.phase, rank=layout.rank, device=cfg.launch.device)
    try:
        trainer = trainers.build(cfg, layout)
        if layout.rank == 0:
            plan.environment_path.write_text(json.dumps(environment_fields(cfg, trainer.kernels), indent=2) + "\n")
        dataset = build_dataset(plan, trainer)
        consumed = 0
        if plan.resume_from is not None:  # last before training: it restores every RNG
            status.update("loading")
            started = time.perf_counter()
            resumed = checkpoint.load(trainer, plan)
            consumed = resumed.consumed_train_samples  # the data position comes from the checkpoint
            recorder.event("load", seconds=time.perf_counter() - started, iteration=resumed.iteration,
                           consumed_train_samples=consumed)
        batches = micro_batches(plan, trainer, dataset, consumed)
        recorder.event("ready")
        train(plan, trainer, batches, recorder, status, consumed)
        recorder.event("done")
    finally:
        recorder.close()
    distributed.teardown()


def build_dataset(plan: PhasePlan, trainer: trainers.Trainer) -> Any:
    """The family's training dataset (collective; None where this rank reads no data)."""
    return trainer.spec.build_dataset(plan, trainer.layout)


def micro_batches(plan: PhasePlan, trainer: trainers.Trainer, dataset: Any,
                  consumed_train_samples: int) -> Iterator[dict[str, Any]] | None:
    """This rank's micro-batch stream from ``consumed_train_samples`` on (Megatron's pretraining
    sampler starts at the consumed count the checkpoint saved)."""
    return trainer.spec.batches(dataset, plan.run, trainer.layout, consumed_train_samples)


def train(plan: PhasePlan, trainer: trainers.Trainer, batches: Iterator[dict[str, Any]] | None, recorder: Recorder,
          status: RankStatus, consumed_train_samples: int = 0) -> None:
    """Steps first_step..last_step, recording each and saving at ``plan.save_at``.

    Timed as Megatron-LM times ``iteration-time``: an interval timer started (behind a barrier)
    before the loop, read behind a barrier after each step, stopped around a save; the first step
    a process runs is not logged and its time is folded into the next reading (Megatron's
    ``training_log`` with ``is_first_iteration``), so a phase's series starts at its second step.
    Memory is read after every step on the last rank, the one Megatron's TensorBoard writer runs on.
    """
    cfg, layout = plan.run, trainer.layout
    device = cfg.launch.device
    # The last rank reports timing and memory, as Megatron's TensorBoard writer does.
    memory = MemoryTracker(device) if layout.rank == layout.world_size - 1 else None
    gbs = cfg.schedule.global_batch_size
    timer = IntervalTimer(device)
    status.update("training")
    timer.start()
    iterations = 0  # since the last logged reading
    for step in range(plan.first_step, plan.last_step + 1):
        result = trainers.train_step(trainer, batches)
        consumed_train_samples += gbs
        iterations += 1
        first = step == plan.first_step
        elapsed = timer.elapsed(reset=not first)
        local = {**result.losses, "learning-rate": result.learning_rate}
        if memory is not None:
            if not first:
                local["iteration-time"] = elapsed / iterations
            local.update(memory.read())
        if not first:
            iterations = 0
        if result.num_zeros is not None:
            local["num-zeros"] = result.num_zeros
        if result.grad_norm is not None:
            local["grad-norm"] = result.grad_norm
        recorder.record(step, local)
        status.update("training", step)
        maybe_inject(f"step{step}", phase=plan.phase, rank=layout.rank)
        if step == plan.save_at:
            status.update("saving", step)
            timer.stop()  # saves are not iteration time
            started = time.perf_counter()
            checkpoint.save(trainer, plan, step, consumed_train_samples)
            recorder.event("save", seconds=time.perf_counter() - started, iteration=step)
            timer.start()
            status.update("training", step)
