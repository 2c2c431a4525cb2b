"""BERT, as Megatron-LM's ``pretrain_bert.py`` builds it: BertModel on megatron-core's
``bert_layer_local_spec`` with the binary (sentence-order) head, megatron-core's
BERTMaskedWordPieceDataset over the generated corpus, and its masked-LM + SOP loss."""
from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

from .. import data
from ..config import RunConfig
from .spec import TrainSpec


def build_model(cfg: RunConfig, tconfig: Any, layout: Any) -> Any:
    from megatron.core.models.bert.bert_layer_specs import bert_layer_local_spec
    from megatron.core.models.bert.bert_model import BertModel

    m = cfg.model
    return BertModel(
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


def build_dataset(plan: Any, layout: Any) -> Any:
    """The BERT training dataset (collective; None off tensor-parallel rank 0)."""
    cfg = plan.run
    return data.build_dataset(
        cfg.data, directory=plan.data_dir, seq_length=cfg.model.seq_length, seed=cfg.determinism.seed,
        num_samples=cfg.schedule.train_iters * cfg.schedule.global_batch_size,
        binary_head=cfg.model.binary_head, builds_on_this_rank=layout.tp_rank == 0)


def batches(dataset: Any, cfg: RunConfig, layout: Any, consumed_train_samples: int) -> Iterator[dict[str, Any]] | None:
    if dataset is None:
        return None
    return data.batches(dataset, first_sample=consumed_train_samples, micro_batch_size=cfg.schedule.micro_batch_size,
                        dp_rank=layout.dp_rank, dp_size=layout.dp_size)


def loss_func(loss_mask: Any, sentence_order: Any, output_tensor: Any) -> tuple[Any, dict[str, Any]]:
    """Masked-LM loss averaged over masked tokens, plus the binary (sentence-order) head loss;
    the logged values averaged over data-parallel replicas with or without the binary head, as
    Megatron-LM's ``pretrain_bert.loss_func`` does (``average_losses_across_data_parallel_group``)."""
    import torch
    import torch.nn.functional as F

    lm_loss_, sop_logits = output_tensor
    lm_loss = torch.sum(lm_loss_.float().view(-1) * loss_mask.float().reshape(-1)) / loss_mask.float().sum()
    if sop_logits is None:
        return lm_loss, {"lm loss": average_over_data_parallel([lm_loss])[0]}
    sop_loss = F.cross_entropy(sop_logits.view(-1, 2).float(), sentence_order.view(-1), ignore_index=-1).float()
    averaged = average_over_data_parallel([lm_loss, sop_loss])
    return lm_loss + sop_loss, {"lm loss": averaged[0], "sop loss": averaged[1]}


def average_over_data_parallel(losses: list[Any]) -> Any:
    """Megatron-LM's ``average_losses_across_data_parallel_group``: all-reduce, divide by the size."""
    import torch
    from megatron.core import parallel_state as ps

    averaged = torch.stack(losses).detach()
    torch.distributed.all_reduce(averaged, group=ps.get_data_parallel_group())
    averaged /= ps.get_data_parallel_world_size()
    return averaged


def forward_step(binary_head: bool, data_iterator: Iterator[dict[str, Any]] | None, model: Any) -> tuple[Any, Any]:
    """Read a micro-batch on tensor-parallel rank 0, broadcast it to the TP group, run the model."""
    import torch
    from megatron.core import tensor_parallel

    micro_batch = next(data_iterator) if data_iterator is not None else None
    batch = tensor_parallel.broadcast_data(list(data.BATCH_KEYS), micro_batch, torch.int64)
    output = model(batch["text"], batch["padding_mask"],
                   tokentype_ids=batch["types"] if binary_head else None, lm_labels=batch["labels"])
    return output, partial(loss_func, batch["loss_mask"], batch["is_random"])


SPEC = TrainSpec(name="bert", build_model=build_model, build_dataset=build_dataset, batches=batches,
                 forward_step=lambda cfg: partial(forward_step, cfg.model.binary_head),
                 modules=("megatron.core.models.bert.bert_model", "megatron.core.datasets.bert_dataset"))
