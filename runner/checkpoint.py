"""Save and load the resume checkpoint in either of Megatron's formats (``checkpoint.format``).

Behind one small base class, :class:`Checkpointer`:

- ``torch`` (:class:`LegacyCheckpointer`): Megatron-LM's legacy layout as its ``save_checkpoint``
  writes it — ``<root>/iter_0000010/mp_rank_<tp:02d>[_<pp:03d>]/model_optim_rng.pt`` (the pipeline
  suffix whenever pipeline parallel > 1, for stage 0 too), one file per (tensor, pipeline) rank,
  written by data-parallel rank 0; each rank loads its own file. Each file holds ``args`` (a
  Namespace), ``checkpoint_version`` 3.0, ``iteration``, ``model`` (the unwrapped model's
  ``state_dict_for_save_checkpoint``), ``optimizer``, ``opt_param_scheduler`` and ``rng_state`` (a
  one-element list of this rank's generator states). Not written:
  ``num_floating_point_operations_so_far`` (the runner counts no FLOPs; Megatron's loader reads
  it with a default of 0) and, on CPU, ``cuda_rng_state`` (no CUDA generator; the model-parallel
  tracker's CPU states stand in under ``rng_tracker_states``).
- ``torch_dist`` (:class:`DistCheckpointer`): megatron-core's dist_checkpointing with the
  torch_dist backend — the same state as a sharded state dict (``args`` in the common part, the
  RNG states as a ShardedObject per (pipeline, tensor) rank).

Both: every rank takes part; ``latest_checkpointed_iteration.txt`` (``str(iteration)``, as
Megatron writes it) is written by rank 0 after every rank has finished — the save's commit
point: an interrupted save leaves no tracker and is refused on resume, never loaded torn. ``args``
carries every field Megatron-LM's legacy loader reads (:func:`training_args`), among them
``consumed_train_samples`` (where the data stream resumes: the loader returns it and the
phase starts reading there) and ``golden_training_hash`` (RunConfig.training_hash); a checkpoint
of another configuration is refused on load.

Saving speed (torch_dist): megatron's writer (``filesystem_async.py``) creates its results queue
with a *spawn*-context ``multiprocessing.Manager()`` — a fresh interpreter that re-imports
``__main__`` and torch (~10 s on 2 cores) — even for a synchronous save, where the queue is
only ever put to and read back in this very process. :func:`use_in_process_results_queue`
gives it a plain ``queue.Queue`` instead (0.5 s saves). The variable is private, so the shim
checks the module still looks as expected and otherwise leaves megatron alone.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import queue
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goldens.core.errors import RunError
from goldens.files.atomic import atomic_write_text

from .faults import maybe_inject
from .plan import TRACKER_FILE, PhasePlan, checkpoint_dir, read_tracker
from .status import one_line

# megatron-core versions whose filesystem_async.py was read for the results-queue shim.
RESULTS_QUEUE_CHECKED = ("0.16.",)
LEGACY_FILE = "model_optim_rng.pt"
CHECKPOINT_VERSION = 3.0  # Megatron-LM's generate_state_dict


@dataclass(frozen=True)
class Resumed:
    """What a load hands the training loop: where the run continues."""

    iteration: int
    consumed_train_samples: int


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
    if importlib.util.find_spec("psutil") is None:
        raise RunError("psutil is not installed: megatron-core's torch_dist writer hangs without it "
                       "(pip install psutil)")


# ---------------------------------------------------------------- state shared by both formats

def rng_state(device: str) -> dict[str, Any]:
    """This rank's generator states, under Megatron's keys (``get_rng_state``)."""
    import numpy as np
    import torch
    from megatron.core import tensor_parallel

    state = {"random_rng_state": random.getstate(), "np_rng_state": np.random.get_state(),
             "torch_rng_state": torch.get_rng_state(),
             "rng_tracker_states": tensor_parallel.get_cuda_rng_tracker().get_states()}
    if device == "cuda":
        state["cuda_rng_state"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict[str, Any], device: str) -> None:
    import numpy as np
    import torch
    from megatron.core import tensor_parallel

    random.setstate(state["random_rng_state"])
    np.random.set_state(state["np_rng_state"])
    torch.set_rng_state(state["torch_rng_state"])
    if device == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng_state"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["rng_tracker_states"])


# Fields Megatron-LM's loader reads from ``args`` (tests/data/megatron_checkpoint_args.json lists
# them all) that carry the same name and meaning on megatron-core's TransformerConfig: taken from
# the config the model was built with, as ``core_transformer_config_from_args`` filled it from args.
TRANSFORMER_CONFIG_ARGS = (
    "add_bias_linear", "add_qkv_bias", "apply_query_key_layer_scaling", "attention_dropout", "hidden_dropout",
    "kv_channels", "num_query_groups", "normalization", "rotary_interleaved", "mtp_num_layers",
    "virtual_pipeline_model_parallel_size", "expert_model_parallel_size",
    "moe_ffn_hidden_size", "moe_grouped_gemm", "moe_latent_size", "moe_layer_freq", "moe_router_enable_expert_bias",
    "moe_router_pre_softmax", "moe_router_score_function", "moe_router_topk", "moe_router_topk_scaling_factor",
    "moe_shared_expert_intermediate_size", "moe_token_dispatcher_type",
    "mamba_state_dim", "mamba_head_dim", "mamba_num_groups", "mamba_num_heads",
)
# The generated corpus's own tokenizer (no vocabulary file): Megatron compares ``tokenizer_type``
# only when a vocab file is given; this names what the run used.
TOKENIZER_TYPE = "GoldenCorpusTokenizer"


def training_args(trainer: Any, iteration: int, consumed_train_samples: int) -> argparse.Namespace:
    """The ``args`` Megatron keeps in a checkpoint, under its names and meanings: every field its
    legacy loader reads (``check_checkpoint_args``, ``load_args_from_checkpoint``,
    ``load_checkpoint``; the argparse default where this run has no such feature), the data
    position, and the run's own hash."""
    cfg, layout = trainer.cfg, trainer.layout
    m, s = cfg.model, cfg.schedule
    tconfig = trainer.core.config
    from_config = {name: getattr(tconfig, name) for name in TRANSFORMER_CONFIG_ARGS}
    return argparse.Namespace(
        **from_config,
        num_layers=m.num_layers, hidden_size=m.hidden_size, ffn_hidden_size=tconfig.ffn_hidden_size,
        num_attention_heads=m.num_attention_heads, seq_length=m.seq_length,
        max_position_embeddings=m.max_position_embeddings, add_position_embedding=True,
        position_embedding_type=m.position_embedding_type, use_rotary_position_embeddings=False,
        rotary_base=10000, rotary_percent=1.0,  # Megatron's defaults, what a rope model here is built with
        group_query_attention=tconfig.num_query_groups not in (None, m.num_attention_heads),
        disable_bias_linear=not tconfig.add_bias_linear,
        swiglu=bool(tconfig.gated_linear_unit), squared_relu=False, apply_layernorm_1p=False,
        untie_embeddings_and_output_weights=m.untie_embeddings_and_output_weights,
        num_experts=m.num_experts, moe_single_grouped_weight=False, moe_single_grouped_bias=False,
        spec=None, hybrid_layer_pattern=None, hybrid_override_pattern=None, mtp_hybrid_override_pattern=None,
        mtp_use_repeated_layer=False, heterogeneous_layers_config_path=None,
        heterogeneous_layers_config_encoded_json=None, gdp_num_householder=3,  # Megatron's loader's default
        make_vocab_size_divisible_by=m.make_vocab_size_divisible_by, padded_vocab_size=cfg.padded_vocab_size,
        tokenizer_type=TOKENIZER_TYPE, tokenizer_model=None, tiktoken_pattern=None,
        tensor_model_parallel_size=layout.tp_size, pipeline_model_parallel_size=layout.pp_size,
        num_layers_per_virtual_pipeline_stage=None,
        data_parallel_size=layout.dp_size, world_size=layout.world_size, data_parallel_random_init=False,
        micro_batch_size=s.micro_batch_size, global_batch_size=s.global_batch_size, train_iters=s.train_iters,
        bf16=m.precision == "bf16", fp16=m.precision == "fp16", seed=cfg.determinism.seed,
        ckpt_format=cfg.checkpoint.format, ckpt_fully_parallel_save=False, no_save_optim=None, no_save_rng=None,
        iteration=iteration,
        consumed_train_samples=consumed_train_samples, skipped_train_samples=0, consumed_valid_samples=0,
        golden_case=cfg.case, golden_profile=cfg.profile, golden_training_hash=cfg.training_hash(),
    )


def check_args(args: Any, trainer: Any, where: Path, iteration: int) -> int:
    """The checkpoint's ``args`` against this run; returns its consumed-sample count."""
    expected = trainer.cfg.training_hash()
    found = getattr(args, "golden_training_hash", None)
    if found != expected:
        raise RunError(f"checkpoint {where} was saved by another training configuration (hash {found}, this "
                       f"run's is {expected}): it cannot resume this run")
    consumed = getattr(args, "consumed_train_samples", None)
    if not isinstance(consumed, int) or isinstance(consumed, bool) or consumed < 0:
        raise RunError(f"checkpoint {where} records no consumed-sample count (args.consumed_train_samples)")
    if getattr(args, "iteration", iteration) != iteration:
        raise RunError(f"checkpoint {where}: args.iteration {args.iteration} is not its iteration {iteration}")
    return consumed


def commit(trainer: Any, root: Path, iteration: int) -> None:
    """Collective: after every rank's write, rank 0 writes the tracker, Megatron's commit point."""
    import torch

    torch.distributed.barrier()
    if trainer.layout.rank == 0:
        atomic_write_text(root / TRACKER_FILE, str(iteration))  # as Megatron: no newline
    torch.distributed.barrier()


def find(plan: PhasePlan) -> tuple[Path, int]:
    """The committed checkpoint folder a phase resumes from and its iteration, or a RunError saying
    what is wrong."""
    want = plan.resume_from
    if want is None:
        raise RunError(f"phase {plan.phase} does not resume from a checkpoint")
    committed = read_tracker(plan.checkpoint_root)
    target = checkpoint_dir(plan.checkpoint_root, want)
    if committed is None:
        why = "a save was interrupted" if target.exists() else "no checkpoint was saved"
        raise RunError(f"no committed checkpoint in {plan.checkpoint_root} ({why})")
    if committed != want:
        raise RunError(f"the last committed checkpoint is iteration {committed}, not {want}")
    if not target.is_dir():
        raise RunError(f"{target} is missing")
    return target, want


def _load_failure(exc: BaseException) -> str:
    """One line for a failed load; torch's CheckpointException carries each rank's own error."""
    failures = getattr(exc, "failures", None)
    if isinstance(failures, dict) and failures:
        ranks = sorted(failures)
        first = failures[ranks[0]]
        cause = first[0] if isinstance(first, tuple) and first else first
        label = "rank" if len(ranks) == 1 else "ranks"
        return f"{label} {', '.join(map(str, ranks))} could not read their shards: " + (
            one_line(cause) if isinstance(cause, BaseException) else str(cause))
    return one_line(exc)


# ---------------------------------------------------------------- the two formats

class Checkpointer(ABC):
    """One checkpoint format: a collective save of iteration N, a collective load of it."""

    format: str

    @abstractmethod
    def save(self, trainer: Any, root: Path, iteration: int, consumed_train_samples: int) -> Path: ...

    @abstractmethod
    def load(self, trainer: Any, plan: PhasePlan) -> Resumed: ...

    @staticmethod
    def _apply(trainer: Any, state: dict[str, Any], plan: PhasePlan, model: Any) -> None:
        """Model, optimizer and LR schedule (unless the plan says not to), then every RNG."""
        trainer.core.load_state_dict(model)
        if plan.load_optimizer:
            trainer.optimizer.load_state_dict(state["optimizer"])
            trainer.scheduler.load_state_dict(state["opt_param_scheduler"])
        else:
            # Without optimizer state the LR schedule still has to be at the resume point.
            trainer.scheduler.step(increment=plan.resume_from * trainer.cfg.schedule.global_batch_size)


class LegacyCheckpointer(Checkpointer):
    """``--ckpt-format torch``: Megatron-LM's per-rank ``model_optim_rng.pt`` files."""

    format = "torch"

    @staticmethod
    def rank_file(root: Path, iteration: int, tp_rank: int, pp_rank: int, pp_size: int) -> Path:
        """Megatron's ``get_checkpoint_name`` for this runner (no expert parallelism)."""
        common = f"mp_rank_{tp_rank:02d}" + (f"_{pp_rank:03d}" if pp_size > 1 else "")
        return checkpoint_dir(root, iteration) / common / LEGACY_FILE

    def _file(self, trainer: Any, root: Path, iteration: int) -> Path:
        layout = trainer.layout
        return self.rank_file(root, iteration, layout.tp_rank, layout.pp_rank, layout.pp_size)

    def save(self, trainer: Any, root: Path, iteration: int, consumed_train_samples: int) -> Path:
        import torch

        rng = rng_state(trainer.cfg.launch.device)  # every rank, as Megatron (a collective there)
        if trainer.layout.dp_rank == 0:
            state = {"args": training_args(trainer, iteration, consumed_train_samples),
                     "checkpoint_version": CHECKPOINT_VERSION, "iteration": iteration,
                     "model": trainer.core.state_dict_for_save_checkpoint(),
                     "optimizer": trainer.optimizer.state_dict(),
                     "opt_param_scheduler": trainer.scheduler.state_dict(),
                     "rng_state": [rng]}
            path = self._file(trainer, root, iteration)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.partial")
            torch.save(state, partial)
            os.replace(partial, path)
        return checkpoint_dir(root, iteration)

    def load(self, trainer: Any, plan: PhasePlan) -> Resumed:
        import torch

        _, iteration = find(plan)
        path = self._file(trainer, plan.checkpoint_root, iteration)
        if not path.is_file():
            raise RunError(f"checkpoint {path.parent.parent} has no file for this rank "
                           f"({path.relative_to(plan.checkpoint_root)})")
        try:
            # weights_only (torch's default): megatron.core registers Namespace & co. as safe globals.
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise RunError(f"cannot load checkpoint {path}: {one_line(exc)}") from exc
        if not isinstance(state, dict) or state.get("iteration") != iteration:
            held = state.get("iteration") if isinstance(state, dict) else None
            raise RunError(f"checkpoint {path} holds iteration {held}, expected {iteration}")
        consumed = check_args(state.get("args"), trainer, path, iteration)
        self._apply(trainer, state, plan, state["model"])
        restore_rng(state["rng_state"][0], trainer.cfg.launch.device)
        return Resumed(iteration, consumed)


class DistCheckpointer(Checkpointer):
    """``--ckpt-format torch_dist``: megatron-core dist_checkpointing, torch_dist backend."""

    format = "torch_dist"

    @staticmethod
    def _state(trainer: Any, iteration: int, *, loading: bool, with_optimizer: bool,
               consumed_train_samples: int = 0) -> dict[str, Any]:
        from megatron.core.dist_checkpointing.mapping import ShardedObject

        layout, device = trainer.layout, trainer.cfg.launch.device
        model_sd = trainer.core.sharded_state_dict()  # unwrapped, as Megatron-LM saves it
        state: dict[str, Any] = {"args": training_args(trainer, iteration, consumed_train_samples),
                                 "checkpoint_version": CHECKPOINT_VERSION, "iteration": iteration, "model": model_sd}
        if with_optimizer:
            state["optimizer"] = trainer.optimizer.sharded_state_dict(model_sd, is_loading=loading)
            state["opt_param_scheduler"] = trainer.scheduler.state_dict()
        state["rng_state"] = ShardedObject("rng_state", [rng_state(device)], (layout.pp_size, layout.tp_size),
                                           (layout.pp_rank, layout.tp_rank), replica_id=layout.dp_rank)
        return state

    def save(self, trainer: Any, root: Path, iteration: int, consumed_train_samples: int) -> Path:
        import torch
        from megatron.core import dist_checkpointing
        from megatron.core.dist_checkpointing.serialization import get_default_save_sharded_strategy

        _require_psutil()
        target = checkpoint_dir(root, iteration)
        if trainer.layout.rank == 0:
            target.mkdir(parents=True, exist_ok=True)
        torch.distributed.barrier()
        strategy = get_default_save_sharded_strategy("torch_dist")
        strategy.thread_count = trainer.cfg.checkpoint.writer_processes
        use_in_process_results_queue()
        state = self._state(trainer, iteration, loading=False, with_optimizer=True,
                            consumed_train_samples=consumed_train_samples)
        dist_checkpointing.save(state, str(target), strategy)
        return target

    def load(self, trainer: Any, plan: PhasePlan) -> Resumed:
        from megatron.core import dist_checkpointing
        from megatron.core.dist_checkpointing.serialization import get_default_load_sharded_strategy

        target, iteration = find(plan)
        if not dist_checkpointing.check_is_distributed_checkpoint(str(target)):
            raise RunError(f"{target} is not a distributed (torch_dist) checkpoint")
        template = self._state(trainer, iteration, loading=True, with_optimizer=plan.load_optimizer)
        try:
            loaded = dist_checkpointing.load(template, str(target), get_default_load_sharded_strategy(str(target)),
                                             strict=trainer.cfg.checkpoint.dist_ckpt_strictness)
        except (RunError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            # Corrupt or truncated shards surface as any exception type, on any rank.
            raise RunError(f"cannot load checkpoint {target}: {_load_failure(exc)}") from exc
        if isinstance(loaded, tuple):  # the return_* strictness modes add the mismatched keys
            loaded = loaded[0]
        if loaded.get("iteration") != iteration:
            raise RunError(f"checkpoint {target} holds iteration {loaded.get('iteration')}, expected {iteration}")
        consumed = check_args(loaded.get("args"), trainer, target, iteration)
        self._apply(trainer, loaded, plan, loaded["model"])
        restore_rng(loaded["rng_state"][0], trainer.cfg.launch.device)
        return Resumed(iteration, consumed)


CHECKPOINTERS: dict[str, type[Checkpointer]] = {c.format: c for c in (LegacyCheckpointer, DistCheckpointer)}


def checkpointer(fmt: str) -> Checkpointer:
    return CHECKPOINTERS[fmt]()


def save(trainer: Any, plan: PhasePlan, iteration: int, consumed_train_samples: int) -> Path:
    """Collective: every rank writes its part in the case's format; rank 0 commits the tracker last."""
    target = checkpointer(trainer.cfg.checkpoint.format).save(trainer, plan.checkpoint_root, iteration,
                                                              consumed_train_samples)
    maybe_inject("save", phase=plan.phase, rank=trainer.layout.rank)
    commit(trainer, plan.checkpoint_root, iteration)
    return target


def load(trainer: Any, plan: PhasePlan) -> Resumed:
    """Collective: load model, optimizer (unless the plan says not to), scheduler and RNG; returns
    the iteration and the consumed-sample count the data stream resumes from."""
    return checkpointer(trainer.cfg.checkpoint.format).load(trainer, plan)
