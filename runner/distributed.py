"""Process-group setup for one rank: torch.distributed, megatron's parallel_state, seeds, threads.

CPU: gloo, the compatibility layer, the CPU RNG tracker. CUDA: nccl, one GPU per local rank,
stock megatron-core (no shim). Seeds follow Megatron-LM's ``_set_random_seed``: the base seed
plus 100 × pipeline rank for python/numpy/torch, and megatron's model-parallel seed offsets.

Determinism is Megatron-LM's ``--deterministic-mode``: ``TransformerConfig.deterministic_mode``
(set in bert.py) plus the case's environment (NCCL_ALGO, CUBLAS_WORKSPACE_CONFIG, ...), which the
launcher exports. Like Megatron-LM, ``torch.use_deterministic_algorithms`` is not called — on
torch 2.13 it also imports inductor and dynamo (~4 s per rank on 2 cores).
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from datetime import timedelta

from .config import RunConfig


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


def setup(cfg: RunConfig) -> Layout:
    """Initialise everything process-wide before the model is built; returns this rank's place."""
    import numpy as np
    import torch
    from megatron.core import parallel_state as ps

    torch.set_num_threads(cfg.determinism.threads_per_rank)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world != cfg.parallelism.world_size:
        raise RuntimeError(f"torchrun started {world} ranks but the case needs world_size "
                           f"{cfg.parallelism.world_size}")
    cpu = cfg.launch.device == "cpu"
    if cpu:
        from . import compat

        compat.install()
    else:
        torch.cuda.set_device(local_rank)
    timeout = timedelta(seconds=cfg.launch.phase_timeout_s)
    torch.distributed.init_process_group(backend=cfg.launch.backend, rank=rank, world_size=world, timeout=timeout)
    ps.initialize_model_parallel(
        tensor_model_parallel_size=cfg.parallelism.tensor_model_parallel_size,
        pipeline_model_parallel_size=cfg.parallelism.pipeline_model_parallel_size,
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
        compat.model_parallel_cpu_manual_seed(seed, tp_rank=layout.tp_rank)
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
