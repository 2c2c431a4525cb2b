"""Process-group setup for one rank: torch.distributed, megatron's parallel_state, seeds, threads.

CPU: gloo, the compatibility layer, the CPU RNG tracker. CUDA: nccl, one GPU per local rank,
stock megatron-core (no shim). Seeds follow Megatron-LM's ``_set_random_seed``: the base seed
plus 100 × pipeline rank for python/numpy/torch, and megatron's model-parallel seed offsets.

Determinism is Megatron-LM's ``--deterministic-mode`` (``megatron/training/determinism.py``):
``TransformerConfig.deterministic_mode`` (set in trainer.py), ``torch.use_deterministic_algorithms(True)``
on every device, and on CUDA the environment it checks and completes before NCCL, cuBLAS or TE
start (:func:`determinism_env`). On CPU those variables mean nothing (no NCCL, cuBLAS or TE) and
are not set. ``use_deterministic_algorithms`` imports torch._dynamo (1.2 s on 2 cores); so does
megatron's Adam, so it costs nothing extra, and the fork launcher imports it once for all ranks.
Measured on the cpu-tiny case: bit-identical metrics with and without it (no CPU kernel this
model uses has a nondeterministic variant).
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from datetime import timedelta

from . import compat
from .config import RunConfig

# What --deterministic-mode requires of the environment (Megatron-LM's determinism.py): a value
# already set must be one of these, an unset one gets the first.
DETERMINISM_ENV: dict[str, tuple[str, ...]] = {
    "NVTE_ALLOW_NONDETERMINISTIC_ALGO": ("0",),
    "CUBLAS_WORKSPACE_CONFIG": (":4096:8", ":16:8"),
}
NCCL_ALGO_TOKENS = ("Ring", "CollnetDirect", "CollnetChain", "^NVLS")  # Tree is not deterministic


@dataclass(frozen=True)
class Layout:
    """Where this rank sits in the TP × PP × DP grid."""

    rank: int
    local_rank: int
    world_size: int
    tp_rank: int
    pp_rank: int
    dp_rank: int
    tp_size: int
    pp_size: int
    dp_size: int

    @property
    def first_stage(self) -> bool:
        return self.pp_rank == 0

    @property
    def last_stage(self) -> bool:
        return self.pp_rank == self.pp_size - 1


def determinism_env(env: dict[str, str]) -> dict[str, str]:
    """The variables --deterministic-mode adds to ``env`` (a RuntimeError names a value it refuses)."""
    added = {}
    algo = env.get("NCCL_ALGO")
    if algo is None:
        added["NCCL_ALGO"] = "Ring"
    elif not all(token.strip() in NCCL_ALGO_TOKENS for token in algo.split(",")):
        raise RuntimeError(f"NCCL_ALGO={algo!r} is not deterministic: use {', '.join(NCCL_ALGO_TOKENS)}")
    for name, accepted in DETERMINISM_ENV.items():
        value = env.get(name)
        if value is None:
            added[name] = accepted[0]
        elif value not in accepted:
            raise RuntimeError(f"{name}={value!r} is not deterministic: use {' or '.join(accepted)}")
    for name in ("MAMBA_DETERMINISTIC", "CAUSAL_CONV1D_DETERMINISTIC"):
        if env.get(name) and not env[name].startswith("1"):
            raise RuntimeError(f"{name}={env[name]!r}: deterministic mode needs 1")
    return added


def setup(cfg: RunConfig) -> Layout:
    """Initialise everything process-wide before the model is built; returns this rank's place."""
    import numpy as np
    import torch
    from megatron.core import parallel_state as ps

    torch.set_num_threads(cfg.determinism.threads_per_rank)
    if cfg.determinism.deterministic_mode:
        if cfg.launch.device == "cuda":  # before the first NCCL communicator and cuBLAS handle
            os.environ.update(determinism_env(dict(os.environ)))
        torch.use_deterministic_algorithms(True)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world != cfg.parallelism.world_size:
        raise RuntimeError(f"torchrun started {world} ranks but the case needs world_size "
                           f"{cfg.parallelism.world_size}")
    cpu = cfg.launch.device == "cpu"
    if cpu:
        compat.install()
    else:
        torch.cuda.set_device(local_rank)
    timeout = timedelta(seconds=cfg.launch.phase_timeout_s)
    torch.distributed.init_process_group(backend=cfg.launch.backend, rank=rank, world_size=world, timeout=timeout)
    ps.initialize_model_parallel(
        tensor_model_parallel_size=cfg.parallelism.tensor_model_parallel_size,
        pipeline_model_parallel_size=cfg.parallelism.pipeline_model_parallel_size,
        expert_model_parallel_size=cfg.parallelism.expert_model_parallel_size,
        expert_tensor_parallel_size=cfg.parallelism.expert_tensor_parallel_size,
        order=cfg.parallelism.order,
        distributed_timeout_minutes=max(1, int(cfg.launch.phase_timeout_s // 60) + 1),
        create_gloo_process_groups=not cpu,  # on CPU the default groups are gloo already
    )
    layout = Layout(rank=rank, local_rank=local_rank, world_size=world,
                    tp_rank=ps.get_tensor_model_parallel_rank(), pp_rank=ps.get_pipeline_model_parallel_rank(),
                    dp_rank=ps.get_data_parallel_rank(), tp_size=ps.get_tensor_model_parallel_world_size(),
                    pp_size=ps.get_pipeline_model_parallel_world_size(), dp_size=ps.get_data_parallel_world_size())
    seed = cfg.determinism.seed + 100 * layout.pp_rank
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if cpu:
        compat.model_parallel_cpu_manual_seed(seed, tp_rank=layout.tp_rank,
                                              ep_rank=ps.get_expert_model_parallel_rank(),
                                              etp_rank=ps.get_expert_tensor_parallel_rank())
    else:
        from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

        model_parallel_cuda_manual_seed(seed)
    return layout


def teardown() -> None:
    import torch
    from megatron.core import parallel_state as ps

    ps.destroy_model_parallel()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
