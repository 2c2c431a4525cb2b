"""The training pieces every family shares, as Megatron-LM's ``training.py`` assembles them from
megatron-core: TransformerConfig, the family's model (its TrainSpec) wrapped in megatron DDP,
``get_megatron_optimizer``, ``OptimizerParamScheduler``, and one training iteration through
``get_forward_backward_func`` with the losses logged as ``training_log`` reduces them.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import kernels
from .config import FUSIONS, RunConfig
from .distributed import Layout
from .families import train_spec
from .families.spec import TrainSpec


@dataclass
class Trainer:
    """What one rank trains with; built once per phase."""

    model: Any  # megatron DistributedDataParallel around the model (in a Float16Module for bf16/fp16)
    core: Any  # the family's model itself: what checkpoints hold, as Megatron-LM's unwrap_model gives it
    optimizer: Any  # MegatronOptimizer
    scheduler: Any  # OptimizerParamScheduler
    forward_backward: Any
    cfg: RunConfig
    layout: Layout
    kernels: dict[str, Any]  # runner.kernels.record(): which fused kernels run, and why
    spec: TrainSpec


def transformer_config(cfg: RunConfig, fusions: dict[str, bool] | None = None) -> Any:
    """megatron-core's TransformerConfig as Megatron-LM's ``core_transformer_config_from_args``
    builds it; ``fusions`` are the kernel choices (runner.kernels.effective), by default the case's
    own flags; the family adds the fields only it sets (MoE, T5, GPT's)."""
    import torch
    import torch.nn.functional as F
    from megatron.core.transformer.enums import AttnBackend
    from megatron.core.transformer.transformer_config import TransformerConfig

    m, p = cfg.model, cfg.parallelism
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[m.precision]
    cpu = cfg.launch.device == "cpu"
    fused = {name: getattr(m, name) for name in FUSIONS}
    fused.update(fusions or {})
    return TransformerConfig(
        num_layers=m.num_layers,
        hidden_size=m.hidden_size,
        ffn_hidden_size=m.ffn_size,
        num_attention_heads=m.num_attention_heads,
        hidden_dropout=m.hidden_dropout,
        attention_dropout=m.attention_dropout,
        init_method_std=m.init_method_std,
        layernorm_epsilon=m.layernorm_epsilon,
        activation_func=F.gelu,
        tensor_model_parallel_size=p.tensor_model_parallel_size,
        pipeline_model_parallel_size=p.pipeline_model_parallel_size,
        sequence_parallel=p.sequence_parallel,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        bf16=m.precision == "bf16",
        fp16=m.precision == "fp16",
        attention_backend=AttnBackend[m.attention_backend],
        bias_dropout_fusion=fused["bias_dropout_fusion"],
        bias_activation_fusion=fused["bias_activation_fusion"],
        masked_softmax_fusion=fused["masked_softmax_fusion"],
        persist_layer_norm=fused["persist_layer_norm"],
        gradient_accumulation_fusion=fused["gradient_accumulation_fusion"],
        deterministic_mode=cfg.determinism.deterministic_mode,
        # Megatron-LM hard-codes this (core_transformer_config_from_args; no flag): a pipeline
        # stage frees its sent activations' data and backward runs through the autograd engine
        # directly. Memory only: the numbers are the same.
        deallocate_pipeline_outputs=True,
        use_cpu_initialization=cpu,
        perform_initialization=True,
        **family_fields(cfg),
    )


def family_fields(cfg: RunConfig) -> dict[str, Any]:
    """TransformerConfig fields the architecture sets beyond BERT's (none for BERT: its config is
    what it was before families existed)."""
    return train_spec(cfg.model.family).config_fields(cfg)


def grad_reduce_in_fp32(precision: str) -> bool:
    """Megatron-LM accumulates and all-reduces gradients in fp32 for bf16 only (arguments.py sets
    accumulate_allreduce_grads_in_fp32 for bf16; training.py hands it to DDP as
    grad_reduce_in_fp32): fp16 gradients are reduced in fp16, fp32 ones in fp32."""
    return precision == "bf16"


def build(cfg: RunConfig, layout: Layout) -> Trainer:
    """The family's model on this pipeline stage, wrapped in megatron DDP, its optimizer and LR
    schedule."""
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.distributed.finalize_model_grads import finalize_model_grads
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
    from megatron.core.pipeline_parallel import get_forward_backward_func

    m, o, s = cfg.model, cfg.optimizer, cfg.schedule
    spec = train_spec(m.family)
    choices = kernels.decide(cfg)
    # Megatron-LM's pretrain() warms the jit functions up after seeding, before building the model.
    warmup = kernels.warmup_jit_functions(cfg, choices)
    tconfig = transformer_config(cfg, kernels.effective(cfg, choices))
    core = spec.build_model(cfg, tconfig, layout)
    if cfg.launch.device == "cuda":
        import torch

        core.cuda(torch.cuda.current_device())
    ddp_config = DistributedDataParallelConfig(
        grad_reduce_in_fp32=grad_reduce_in_fp32(m.precision),
        overlap_grad_reduce=False,
        use_distributed_optimizer=False,
    )
    module = core
    if m.precision != "fp32":
        from megatron.core.transformer.module import Float16Module

        module = Float16Module(tconfig, core)  # as Megatron-LM's get_model wraps bf16/fp16 models
    model = DistributedDataParallel(config=tconfig, ddp_config=ddp_config, module=module)
    optimizer = get_megatron_optimizer(
        OptimizerConfig(
            optimizer="adam", lr=o.lr, min_lr=o.min_lr, weight_decay=o.weight_decay,
            adam_beta1=o.adam_beta1, adam_beta2=o.adam_beta2, adam_eps=o.adam_eps, clip_grad=o.clip_grad,
            bf16=m.precision == "bf16", fp16=m.precision == "fp16", params_dtype=tconfig.params_dtype,
            use_distributed_optimizer=False, log_num_zeros_in_grad=True,
        ),
        [model],
        use_gloo_process_groups=cfg.launch.device != "cpu",
    )
    decay_iters = o.lr_decay_iters or s.train_iters
    gbs = s.global_batch_size
    scheduler = OptimizerParamScheduler(
        optimizer, init_lr=0.0, max_lr=o.lr, min_lr=o.min_lr,
        lr_warmup_steps=o.warmup_steps(decay_iters, gbs), lr_decay_steps=decay_iters * gbs,
        lr_decay_style=o.lr_decay_style, start_wd=o.weight_decay, end_wd=o.weight_decay,
        wd_incr_steps=s.train_iters * gbs, wd_incr_style="constant",
        use_checkpoint_opt_param_scheduler=cfg.checkpoint.use_checkpoint_opt_param_scheduler,
    )
    # What Megatron-LM's training loop wires into the config for the pipeline schedule.
    tconfig.grad_scale_func = optimizer.scale_loss
    tconfig.finalize_model_grads_func = finalize_model_grads
    tconfig.no_sync_func = model.no_sync
    return Trainer(model=model, core=core, optimizer=optimizer, scheduler=scheduler,
                   forward_backward=get_forward_backward_func(), cfg=cfg, layout=layout,
                   kernels=kernels.record(choices, warmup=warmup,
                                          optimizer=kernels.optimizer_choice(cfg.launch.device, optimizer)),
                   spec=spec)


@dataclass(frozen=True)
class StepResult:
    losses: dict[str, float]  # on the last pipeline stage; empty elsewhere
    grad_norm: float | None
    num_zeros: float | None
    learning_rate: float
    skipped: bool


def train_step(trainer: Trainer, data_iterator: Iterator[dict[str, Any]] | None) -> StepResult:
    """One iteration: zero grads, pipeline forward/backward over the micro-batches, optimizer and
    LR step; losses averaged over micro-batches as Megatron-LM logs them."""
    cfg = trainer.cfg
    trainer.model.zero_grad_buffer()
    trainer.optimizer.zero_grad()
    reduced = trainer.forward_backward(
        forward_step_func=trainer.spec.forward_step(cfg),
        data_iterator=data_iterator,
        model=trainer.model,
        num_microbatches=cfg.num_microbatches,
        seq_length=cfg.model.seq_length,
        micro_batch_size=cfg.schedule.micro_batch_size,
        decoder_seq_length=cfg.model.seq_length,
        forward_only=False,
    )
    ok, grad_norm, num_zeros = trainer.optimizer.step()
    if ok:
        trainer.scheduler.step(increment=cfg.schedule.global_batch_size)
    losses = logged_losses(reduced) if trainer.layout.last_stage and reduced else {}
    lr = trainer.optimizer.param_groups[0]["lr"]
    return StepResult(losses=losses, grad_norm=None if grad_norm is None else float(grad_norm),
                      num_zeros=None if num_zeros is None else float(num_zeros),
                      learning_rate=float(lr), skipped=not ok)


def logged_losses(reduced: list[dict[str, Any]]) -> dict[str, float]:
    """The micro-batches' losses as Megatron-LM's ``train_step`` reduces them for logging: a
    (sum, token count) pair per micro-batch (GPT, T5, MoE) is summed over micro-batches,
    all-reduced over the data-parallel group and divided; a single value (BERT's, already
    averaged over data-parallel ranks by its loss function) is the mean over micro-batches."""
    import torch
    from megatron.core import parallel_state as ps

    losses = {}
    for key in reduced[0]:
        values = [x[key] for x in reduced]
        if values[0].numel() == 2:
            total = torch.vstack([v.view(-1) for v in values]).sum(dim=0)
            torch.distributed.all_reduce(total, group=ps.get_data_parallel_group(with_context_parallel=True))
            losses[key] = float(total[0] / total[1])
        else:
            losses[key] = float(sum(values) / len(values))
    return losses
