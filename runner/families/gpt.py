"""GPT, as Megatron-LM's ``pretrain_gpt.py`` + ``gpt_builders.py`` build it with
``--transformer-impl local``: GPTModel on megatron-core's ``get_gpt_layer_local_spec``,
megatron-core's GPTDataset over the generated corpus (each document ends in an end-of-document
token, as Megatron's preprocessing writes it), and ``pretrain_gpt.loss_func``: the masked sum of
token losses with the token count, which megatron's schedule and ``train_step`` turn into the
per-token mean (trainer.logged_losses).

The MoE family (runner/families/moe.py) is this module with megatron-core's MoE layers.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib.util
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .. import data
from ..config import RunConfig
from .spec import TrainSpec

GPT_CORPUS = "gpt_corpus"
INT_KEYS = ("tokens", "labels", "position_ids")


class GPTCorpusTokenizer:
    """What megatron's GPTDataset reads of a tokenizer: ``eod``, ``vocab_size``,
    ``unique_identifiers`` (no ``pad``: like GPT-2's BPE tokenizer, megatron then pads with -1)."""

    def __init__(self, pieces: list[str]):
        self.vocab_size = len(pieces)
        self.eod = pieces.index("[SEP]")  # ends every document, as <|endoftext|> does for GPT-2
        digest = hashlib.sha256("\n".join(pieces).encode()).hexdigest()[:16]
        self.unique_identifiers = {"class": type(self).__name__, "vocab_sha256": digest}


def write_corpus(cfg: RunConfig, directory: Path) -> str:
    """The generated corpus as one sequence per document, each ended by ``eod`` (Megatron's
    ``tools/preprocess_data.py --append-eod``); returns the path prefix."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    corpus = data.generate_corpus(cfg.data)
    eod = GPTCorpusTokenizer(corpus.pieces).eod
    directory.mkdir(parents=True, exist_ok=True)
    prefix = directory / GPT_CORPUS
    builder = IndexedDatasetBuilder(str(prefix) + ".bin", dtype=np.int32)
    for sentences in corpus.documents:
        document = np.concatenate([*sentences, np.asarray([eod], dtype=np.int32)])
        builder.add_document(document, [len(document)])
    builder.finalize(str(prefix) + ".idx")
    return str(prefix)


def build_dataset(plan: Any, layout: Any) -> Any:
    """megatron-core's GPTDataset, built on tensor-parallel rank 0 of the first and last stages
    (``pretrain_gpt.is_dataset_built_on_rank``); collective (megatron's builder has barriers)."""
    import torch
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    cfg = plan.run
    prefix = str(plan.data_dir / GPT_CORPUS)
    if torch.distributed.get_rank() == 0 and not Path(prefix + ".idx").exists():
        write_corpus(cfg, plan.data_dir)
    torch.distributed.barrier()
    config = GPTDatasetConfig(
        random_seed=cfg.determinism.seed,
        sequence_length=cfg.model.seq_length,
        blend=([prefix], None),
        split="1,0,0",
        path_to_cache=str(plan.data_dir / "cache"),
        tokenizer=GPTCorpusTokenizer(data.vocabulary(cfg.data)),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=True,  # Megatron-LM's --create-attention-mask-in-dataloader default
    )
    builds = layout.tp_rank == 0 and (layout.first_stage or layout.last_stage)
    num_samples = cfg.schedule.train_iters * cfg.schedule.global_batch_size
    train, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [num_samples, None, None], lambda: builds,
                                                config).build()
    return train


def _stacked(samples: list[Any]) -> dict[str, Any]:
    """GPTDataset's samples are dicts of tensors (tokens, labels, loss_mask, …): stacked as they are."""
    import torch

    return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}


def batches(dataset: Any, cfg: RunConfig, layout: Any, consumed_train_samples: int) -> Iterator[dict[str, Any]] | None:
    """Micro-batches in Megatron's pretraining-sampler order from ``consumed_train_samples`` on."""
    if dataset is None:
        return None
    return data.batches(dataset, first_sample=consumed_train_samples, micro_batch_size=cfg.schedule.micro_batch_size,
                        dp_rank=layout.dp_rank, dp_size=layout.dp_size, collate=_stacked)


def get_batch(data_iterator: Iterator[dict[str, Any]] | None) -> dict[str, Any] | None:
    """The micro-batch on the first and last stages, broadcast from tensor-parallel rank 0 (what
    ``get_batch_on_this_tp_rank`` does); None on middle stages, which read no data."""
    import torch
    from megatron.core import parallel_state as ps
    from megatron.core import tensor_parallel

    if not (ps.is_pipeline_first_stage() or ps.is_pipeline_last_stage()):
        return None
    micro_batch = next(data_iterator) if data_iterator is not None else None
    batch = dict(tensor_parallel.broadcast_data(list(INT_KEYS), micro_batch, torch.int64))
    batch.update(tensor_parallel.broadcast_data(["loss_mask"], micro_batch, torch.float32))
    batch.update(tensor_parallel.broadcast_data(["attention_mask"], micro_batch, torch.bool))
    return batch


def loss_func(loss_mask: Any, output_tensor: Any) -> tuple[Any, Any, dict[str, Any]]:
    """``pretrain_gpt.loss_func``: the masked token-loss sum, the token count, and the pair the
    log reduces (sum, count) over micro-batches and data-parallel ranks."""
    import torch

    losses = output_tensor.view(-1).float()
    loss_mask = loss_mask.view(-1).float()
    loss = torch.sum(losses * loss_mask)
    num_tokens = loss_mask.sum().clone().detach().to(torch.int)
    report = {"lm loss": torch.cat([loss.clone().detach().view(1), num_tokens.view(1)])}
    return loss, num_tokens, report


def forward_step(data_iterator: Iterator[dict[str, Any]] | None, model: Any) -> tuple[Any, Any]:
    batch = get_batch(data_iterator)
    if batch is None:  # a middle stage: the input comes from the previous stage
        return model(None, None, None), partial(loss_func, None)
    output = model(batch["tokens"], batch["position_ids"], batch["attention_mask"], labels=batch["labels"])
    return output, partial(loss_func, batch["loss_mask"])


def config_fields(cfg: RunConfig) -> dict[str, Any]:
    """TransformerConfig fields Megatron-LM's ``core_transformer_config_from_args`` sets from the
    flags a GPT case has."""
    m = cfg.model
    fields: dict[str, Any] = {"add_bias_linear": m.add_bias_linear,
                              "apply_query_key_layer_scaling": m.apply_query_key_layer_scaling,
                              "attention_softmax_in_fp32": m.attention_softmax_in_fp32,
                              "calculate_per_token_loss": m.calculate_per_token_loss}
    if m.kv_channels is not None:
        fields["kv_channels"] = m.kv_channels
    return fields


class SequenceParallelTorchNorm:
    """torch's LayerNorm with its parameters marked ``sequence_parallel`` — what Apex's
    FusedLayerNorm (megatron-core's local-spec norm where Apex is installed, as on Megatron's CI)
    does, so finalize_model_grads all-reduces their gradients over the tensor-parallel group.
    megatron-core's fallback without Apex (WrappedTorchNorm) refuses sequence parallelism
    instead; the arithmetic is the same layer norm. A class (megatron's build_module calls
    classes and returns functions as they are), constructed like WrappedTorchNorm."""

    def __new__(cls, config: Any, hidden_size: int, eps: float = 1e-5, **_: Any) -> Any:
        import torch

        norm = torch.nn.LayerNorm(normalized_shape=hidden_size, eps=eps)
        for param in norm.parameters():
            # megatron's own attribute on a torch Parameter (its norms set it the same way)
            param.sequence_parallel = config.sequence_parallel  # type: ignore[attr-defined]
        return norm


def with_sequence_parallel_norms(spec: Any) -> Any:
    """A copy of a layer or block spec with megatron's WrappedTorchNorm swapped for
    :class:`SequenceParallelTorchNorm` (only where Apex is absent; see there)."""
    from megatron.core.transformer.spec_utils import ModuleSpec
    from megatron.core.transformer.torch_norm import WrappedTorchNorm

    def swap(node: Any) -> Any:
        if node is WrappedTorchNorm:
            return SequenceParallelTorchNorm
        if isinstance(node, list):
            return [swap(item) for item in node]
        if isinstance(node, ModuleSpec):
            node.submodules = swap(node.submodules)
            return node
        if dataclasses.is_dataclass(node) and not isinstance(node, type):
            for f in dataclasses.fields(node):
                setattr(node, f.name, swap(getattr(node, f.name)))
        return node

    return swap(copy.deepcopy(spec))


def block_spec(tconfig: Any, layer_spec: Any) -> Any:
    """The decoder block as megatron-core assembles it from a layer spec (``_get_block_submodules``),
    spelled out so its final norm can be swapped too."""
    from megatron.core.transformer.transformer_block import (
        LayerNormImpl,
        TransformerBlockSubmodules,
        get_num_layers_to_build,
    )

    return TransformerBlockSubmodules(layer_specs=[layer_spec] * get_num_layers_to_build(tconfig),
                                      layer_norm=LayerNormImpl)


def build_model(cfg: RunConfig, tconfig: Any, layout: Any, layer_spec: Any = None) -> Any:
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.models.gpt.gpt_model import GPTModel

    m = cfg.model
    spec = layer_spec if layer_spec is not None else get_gpt_layer_local_spec()
    if tconfig.sequence_parallel and not importlib.util.find_spec("apex"):
        if not hasattr(spec, "layer_specs"):
            spec = block_spec(tconfig, spec)
        spec = with_sequence_parallel_norms(spec)
    return GPTModel(
        config=tconfig,
        transformer_layer_spec=spec,
        vocab_size=cfg.padded_vocab_size,
        max_sequence_length=m.max_position_embeddings,
        pre_process=layout.first_stage,
        post_process=layout.last_stage,
        parallel_output=True,
        share_embeddings_and_output_weights=not m.untie_embeddings_and_output_weights,
        position_embedding_type=m.position_embedding_type,
    )


SPEC = TrainSpec(name="gpt", build_model=build_model, build_dataset=build_dataset, batches=batches,
                 forward_step=lambda cfg: forward_step, config_fields=config_fields,
                 modules=("megatron.core.models.gpt.gpt_model", "megatron.core.datasets.gpt_dataset"))
