"""The BERT training pieces, as Megatron-LM's ``pretrain_bert.py`` + ``training.py`` assemble them
from megatron-core: TransformerConfig, BertModel on ``bert_layer_local_spec`` with the binary
head (pre/post-process per pipeline stage), megatron DDP, ``get_megatron_optimizer``,
``OptimizerParamScheduler``, the forward step and loss, and one training iteration through
``get_forward_backward_func``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Iterator

from .config import FUSIONS, RunConfig
from .data import BATCH_KEYS
from .distributed import Layout


@dataclass
class Trainer:
    """What one rank trains with; built once per phase."""

    model: Any  # megatron DistributedDataParallel around BertModel (in a Float16Module for bf16/fp16)
    core: Any  # the BertModel itself: what checkpoints hold, as Megatron-LM's unwrap_model gives it
    optimizer: Any  # MegatronOptimizer
    scheduler: Any  # OptimizerParamScheduler
    forward_backward: Any
    cfg: RunConfig
    layout: Layout
    kernels: dict[str, Any]  # runner.kernels.record(): which fused kernels run, and why


def transformer_config(cfg: RunConfig, fusions: dict[str, bool] | None = None) -> Any:
    """megatron-core's TransformerConfig as Megatron-LM's ``core_transformer_config_from_args``
    builds it for BERT; ``fusions`` are the kernel choices (runner.kernels.effective), by default
    the case's own flags."""
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
        sequence_parallel=False,
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
    )


def build(cfg: RunConfig, layout: Layout) -> Trainer:
    """Model on this pipeline stage, wrapped in megatron DDP, its optimizer and LR schedule."""
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.distributed.finalize_model_grads import finalize_model_grads
    from megatron.core.models.bert.bert_layer_specs import bert_layer_local_spec
    from megatron.core.models.bert.bert_model import BertModel
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
    from megatron.core.pipeline_parallel import get_forward_backward_func

    from . import kernels

    m, o, s = cfg.model, cfg.optimizer, cfg.schedule
    choices = kernels.decide(cfg)
    # Megatron-LM's pretrain() warms the jit functions up after seeding, before building the model.
    warmup = kernels.warmup_jit_functions(cfg, choices)
    tconfig = transformer_config(cfg, kernels.effective(cfg, choices))
    bert = BertModel(
        config=tconfig,
        num_tokentypes=2 if m.binary_head else 0,
        transformer_layer_spec=bert_layer_local_spec,
        vocab_size=cfg.padded_vocab_size,
        max_sequence_length=m.max_position_embeddings,
        add_binary_head=m.binary_head,
        share_embeddings_and_output_weights=not m.untie_embeddings_and_output_weights,
        parallel_output=True,
        pre_process=layout.first_stage,
        post_process=layout.last_stage,
    )
    if cfg.launch.device == "cuda":
        import torch

        bert.cuda(torch.cuda.current_device())
    ddp_config = DistributedDataParallelConfig(
        grad_reduce_in_fp32=m.precision != "fp32",  # Megatron-LM accumulates bf16/fp16 grads in fp32
        overlap_grad_reduce=False,
        use_distributed_optimizer=False,
    )
    module = bert
    if m.precision != "fp32":
        from megatron.core.transformer.module import Float16Module

        module = Float16Module(tconfig, bert)  # as Megatron-LM's get_model wraps bf16/fp16 models
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
        lr_warmup_steps=o.warmup_iters(decay_iters) * gbs, lr_decay_steps=decay_iters * gbs,
        lr_decay_style=o.lr_decay_style, start_wd=o.weight_decay, end_wd=o.weight_decay,
        wd_incr_steps=s.train_iters * gbs, wd_incr_style="constant",
        use_checkpoint_opt_param_scheduler=cfg.checkpoint.use_checkpoint_opt_param_scheduler,
    )
    # What Megatron-LM's training loop wires into the config for the pipeline schedule.
    tconfig.grad_scale_func = optimizer.scale_loss
    tconfig.finalize_model_grads_func = finalize_model_grads
    tconfig.no_sync_func = model.no_sync
    return Trainer(model=model, core=bert, optimizer=optimizer, scheduler=scheduler,
                   forward_backward=get_forward_backward_func(), cfg=cfg, layout=layout,
                   kernels=kernels.record(choices, warmup=warmup))


def loss_func(loss_mask: Any, sentence_order: Any, output_tensor: Any) -> tuple[Any, dict[str, Any]]:
    """Masked-LM loss averaged over masked tokens, plus the binary (sentence-order) head loss."""
    import torch
    import torch.nn.functional as F

    lm_loss_, sop_logits = output_tensor
    lm_loss = torch.sum(lm_loss_.float().view(-1) * loss_mask.float().reshape(-1)) / loss_mask.float().sum()
    if sop_logits is None:
        return lm_loss, {"lm loss": lm_loss.detach()}
    sop_loss = F.cross_entropy(sop_logits.view(-1, 2).float(), sentence_order.view(-1), ignore_index=-1).float()
    losses = torch.stack([lm_loss, sop_loss]).detach()
    # Average over data-parallel replicas, as Megatron-LM logs them.
    from megatron.core import parallel_state as ps

    torch.distributed.all_reduce(losses, group=ps.get_data_parallel_group())
    losses /= ps.get_data_parallel_world_size()
    return lm_loss + sop_loss, {"lm loss": losses[0], "sop loss": losses[1]}


def forward_step(binary_head: bool, data_iterator: Iterator[dict[str, Any]] | None, model: Any) -> tuple[Any, Any]:
    """Read a micro-batch on tensor-parallel rank 0, broadcast it to the TP group, run the model."""
    import torch
    from megatron.core import tensor_parallel

    data = next(data_iterator) if data_iterator is not None else None
    batch = tensor_parallel.broadcast_data(list(BATCH_KEYS), data, torch.int64)
    output = model(batch["text"], batch["padding_mask"],
                   tokentype_ids=batch["types"] if binary_head else None, lm_labels=batch["labels"])
    return output, partial(loss_func, batch["loss_mask"], batch["is_random"])


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
        forward_step_func=partial(forward_step, cfg.model.binary_head),
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
    losses = {}
    if trainer.layout.last_stage and reduced:
        for key in reduced[0]:
            losses[key] = float(sum(x[key] for x in reduced) / len(reduced))
    lr = trainer.optimizer.param_groups[0]["lr"]
    return StepResult(losses=losses, grad_norm=None if grad_norm is None else float(grad_norm),
                      num_zeros=None if num_zeros is None else float(num_zeros),
                      learning_rate=float(lr), skipped=not ok)
