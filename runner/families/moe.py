"""MoE: GPT with megatron-core's mixture-of-experts layers on the local spec, as
``gpt_builders.gpt_builder`` builds it for ``--num-experts`` with ``--transformer-impl local``
(``get_gpt_decoder_block_spec(config, use_transformer_engine=False)``): the router (top-k, its
load balancing: sinkhorn, aux loss, ...), the token dispatcher, SequentialMLP experts sharded over
the expert-parallel group. Data, batches, forward step and loss are GPT's."""
from __future__ import annotations

from typing import Any

from ..config import RunConfig
from . import gpt
from .spec import TrainSpec


def config_fields(cfg: RunConfig) -> dict[str, Any]:
    m, p = cfg.model, cfg.parallelism
    return {**gpt.config_fields(cfg),
            "num_moe_experts": m.num_experts, "moe_router_topk": m.moe_router_topk,
            "moe_router_load_balancing_type": m.moe_router_load_balancing_type,
            "moe_aux_loss_coeff": m.moe_aux_loss_coeff, "moe_token_dispatcher_type": m.moe_token_dispatcher_type,
            "moe_grouped_gemm": False,
            "expert_model_parallel_size": p.expert_model_parallel_size,
            "expert_tensor_parallel_size": p.expert_tp_size}


def define_te_gemm_without_te() -> bool:
    """megatron-core 0.16's router (``moe_utils.router_gating_linear``) tests ``te_general_gemm is
    not None`` but defines the name only where Transformer Engine imports: without TE every MoE
    forward raises NameError. Define it as None — the value that selects its own torch.mm path,
    as the module means — once, where TE is absent; returns whether it did."""
    from megatron.core.transformer.moe import moe_utils

    if moe_utils.HAVE_TE or hasattr(moe_utils, "te_general_gemm"):
        return False
    moe_utils.te_general_gemm = None
    return True


def build_model(cfg: RunConfig, tconfig: Any, layout: Any) -> Any:
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_decoder_block_spec

    define_te_gemm_without_te()
    return gpt.build_model(cfg, tconfig, layout, get_gpt_decoder_block_spec(tconfig, use_transformer_engine=False))


SPEC = TrainSpec(name="moe", build_model=build_model, build_dataset=gpt.build_dataset, batches=gpt.batches,
                 forward_step=lambda cfg: gpt.forward_step, config_fields=config_fields,
                 modules=(*gpt.SPEC.modules, "megatron.core.transformer.moe.moe_layer"))
