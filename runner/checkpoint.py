"""Save and load the resume checkpoint with megatron-core's dist_checkpointing (torch_dist).

The state follows Megatron-LM's ``generate_state_dict``: the model's sharded state dict, the
optimizer's (built from it), the LR scheduler, the iteration and every RNG (python, numpy,
torch CPU, CUDA, megatron's tracker) as a ShardedObject per (pipeline, tensor) rank. A save is
committed by ``latest_checkpointed_iteration.txt``, written by rank 0 after every rank has
finished (Megatron's tracker file): a save interrupted half-way leaves no tracker, so a resume
refuses it instead of loading a torn checkpoint.

Saving speed: megatron's torch_dist writer (``filesystem_async.py``) creates its results queue
with a *spawn*-context ``multiprocessing.Manager()`` — a fresh interpreter that re-imports
``__main__`` and torch (~10 s on 2 cores) — even for a synchronous save, where the queue is
only ever put to and read back in this very process. :func:`use_in_process_results_queue`
gives it a plain ``queue.Queue`` instead (0.5 s saves). The variable is private, so the shim
checks the module still looks as expected and otherwise leaves megatron alone.
"""
from __future__ import annotations

import queue
import random
from pathlib import Path
from typing import Any

from goldens.errors import RunError

from .faults import maybe_inject
from .plan import PhasePlan, checkpoint_dir, read_tracker

# megatron-core versions whose filesystem_async.py was read for the results-queue shim.
RESULTS_QUEUE_CHECKED = ("0.16.",)


def use_in_process_results_queue() -> bool:
    """Let synchronous torch_dist saves use an in-process queue (see the module docstring).

    Returns whether the shim is in place. Guarded: only for megatron-core versions it was checked
    against, and only if ``_results_queue`` / ``_get_write_results_queue`` are still there.
    """
    from megatron.core import package_info
    from megatron.core.dist_checkpointing.strategies import filesystem_async as fsa

    if not package_info.__version__.startswith(RESULTS_QUEUE_CHECKED):
        return False
    if not hasattr(fsa, "_results_queue") or not callable(getattr(fsa, "_get_write_results_queue", None)):
        return False
    if isinstance(fsa._results_queue, queue.Queue):
        return True
    if fsa._results_queue is not None:  # someone else made one (an async save): leave it
        return False
    fsa._results_queue = queue.Queue()
    return True


def _require_psutil() -> None:
    """megatron's torch_dist writer processes call psutil and hang without it (undeclared)."""
    import importlib.util

    if importlib.util.find_spec("psutil") is None:
        raise RunError("psutil is not installed: megatron-core's torch_dist writer hangs without it "
                       "(pip install psutil)")


def _rng_state(device: str) -> dict[str, Any]:
    import numpy as np
    import torch
    from megatron.core import tensor_parallel

    state = {"random_rng_state": random.getstate(), "np_rng_state": np.random.get_state(),
             "torch_rng_state": torch.get_rng_state(),
             "rng_tracker_states": tensor_parallel.get_cuda_rng_tracker().get_states()}
    if device == "cuda":
        state["cuda_rng_state"] = torch.cuda.get_rng_state()
    return state


def _restore_rng(state: dict[str, Any], device: str) -> None:
    import numpy as np
    import torch
    from megatron.core import tensor_parallel

    random.setstate(state["random_rng_state"])
    np.random.set_state(state["np_rng_state"])
    torch.set_rng_state(state["torch_rng_state"])
    if device == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng_state"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["rng_tracker_states"])


def _state_dict(trainer: Any, iteration: int, *, loading: bool, with_optimizer: bool) -> dict[str, Any]:
    from megatron.core.dist_checkpointing.mapping import ShardedObject

    layout, device = trainer.layout, trainer.cfg.launch.device
    model_sd = trainer.core.sharded_state_dict()  # unwrapped, as Megatron-LM saves it
    state: dict[str, Any] = {"checkpoint_version": 3.0, "iteration": iteration, "model": model_sd}
    if with_optimizer:
        state["optimizer"] = trainer.optimizer.sharded_state_dict(model_sd, is_loading=loading)
        state["opt_param_scheduler"] = trainer.scheduler.state_dict()
    state["rng_state"] = ShardedObject("rng_state", [_rng_state(device)], (layout.pp_size, layout.tp_size),
                                       (layout.pp_rank, layout.tp_rank), replica_id=layout.dp_rank)
    return state


def save(trainer: Any, plan: PhasePlan, iteration: int) -> Path:
    """Collective: every rank saves its shards; rank 0 commits the tracker file last."""
    import torch
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.serialization import get_default_save_sharded_strategy

    from goldens.atomic import atomic_write_text

    _require_psutil()
    target = checkpoint_dir(plan.checkpoint_root, iteration)
    if trainer.layout.rank == 0:
        target.mkdir(parents=True, exist_ok=True)
    torch.distributed.barrier()
    strategy = get_default_save_sharded_strategy("torch_dist")
    strategy.thread_count = trainer.cfg.checkpoint.writer_processes
    use_in_process_results_queue()
    state = _state_dict(trainer, iteration, loading=False, with_optimizer=True)
    dist_checkpointing.save(state, str(target), strategy)
    maybe_inject("save", phase=plan.phase, rank=trainer.layout.rank)
    torch.distributed.barrier()
    if trainer.layout.rank == 0:
        atomic_write_text(plan.checkpoint_root / "latest_checkpointed_iteration.txt", f"{iteration}\n")
    torch.distributed.barrier()
    return target


def find(plan: PhasePlan) -> Path:
    """The committed checkpoint a phase resumes from, or a RunError saying what is wrong."""
    from megatron.core import dist_checkpointing

    want = plan.resume_from
    committed = read_tracker(plan.checkpoint_root)
    target = checkpoint_dir(plan.checkpoint_root, want)
    if committed is None:
        why = "a save was interrupted" if target.exists() else "no checkpoint was saved"
        raise RunError(f"no committed checkpoint in {plan.checkpoint_root} ({why})")
    if committed != want:
        raise RunError(f"the last committed checkpoint is iteration {committed}, not {want}")
    if not dist_checkpointing.check_is_distributed_checkpoint(str(target)):
        raise RunError(f"{target} is missing or not a distributed checkpoint")
    return target


def _load_failure(exc: BaseException) -> str:
    """One line for a failed load; torch's CheckpointException carries each rank's own error."""
    from .status import one_line

    failures = getattr(exc, "failures", None)
    if isinstance(failures, dict) and failures:
        ranks = sorted(failures)
        first = failures[ranks[0]]
        cause = first[0] if isinstance(first, tuple) and first else first
        label = "rank" if len(ranks) == 1 else "ranks"
        return f"{label} {', '.join(map(str, ranks))} could not read their shards: " + (
            one_line(cause) if isinstance(cause, BaseException) else str(cause))
    return one_line(exc)


def load(trainer: Any, plan: PhasePlan) -> int:
    """Collective: load model, optimizer (unless the plan says not to), scheduler and RNG."""
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.serialization import get_default_load_sharded_strategy

    target = find(plan)
    template = _state_dict(trainer, plan.resume_from, loading=True, with_optimizer=plan.load_optimizer)
    try:
        loaded = dist_checkpointing.load(template, str(target), get_default_load_sharded_strategy(str(target)))
    except (RunError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - torch's CheckpointException derives from BaseException
        # Corrupt or truncated shards surface as any exception type, on any rank.
        raise RunError(f"cannot load checkpoint {target}: {_load_failure(exc)}") from exc
    if loaded.get("iteration") != plan.resume_from:
        raise RunError(f"checkpoint {target} holds iteration {loaded.get('iteration')}, expected {plan.resume_from}")
    trainer.core.load_state_dict(loaded["model"])
    if plan.load_optimizer:
        trainer.optimizer.load_state_dict(loaded["optimizer"])
        trainer.scheduler.load_state_dict(loaded["opt_param_scheduler"])
    else:
        # Without optimizer state the LR schedule still has to be at the resume point.
        trainer.scheduler.step(increment=plan.resume_from * trainer.cfg.schedule.global_batch_size)
    _restore_rng(loaded["rng_state"][0], trainer.cfg.launch.device)
    return int(loaded["iteration"])
