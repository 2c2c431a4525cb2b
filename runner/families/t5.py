"""T5, as Megatron-LM's ``examples/t5/pretrain_t5.py`` builds it with ``--transformer-impl local``:
T5Model on megatron-core's local encoder and decoder block specs, megatron-core's
T5MaskedWordPieceDataset (span corruption with sentinel tokens) over the generated corpus, and
``pretrain_gpt.loss_func`` (T5 imports GPT's). Megatron refuses pipeline parallelism for T5
(RunConfig does too)."""
from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from .. import data
from ..config import RunConfig
from . import gpt
from .spec import TrainSpec

BATCH_KEYS = ("text_enc", "text_dec", "labels", "loss_mask", "enc_mask", "dec_mask")
SPECIALS = ("[BOS]", "[EOS]")


def vocabulary(cfg: RunConfig) -> list[str]:
    """The corpus's pieces, then BOS/EOS and the ``--vocab-extra-ids`` sentinels (Megatron's BERT
    WordPiece tokenizer adds ``<extra_id_N>`` the same way), within ``data.vocab_size``."""
    extra = [*SPECIALS, *(f"<extra_id_{i}>" for i in range(cfg.model.vocab_extra_ids))]
    return [*data.vocabulary(corpus_config(cfg)), *extra]


def corpus_config(cfg: RunConfig) -> Any:
    """The corpus is generated over the pieces left once the sentinels have their ids."""
    extra = len(SPECIALS) + cfg.model.vocab_extra_ids
    if cfg.data.vocab_size - extra < 64:
        raise ValueError(f"vocab_size {cfg.data.vocab_size} leaves fewer than 64 pieces beside {extra} special "
                         "and sentinel tokens: raise data.vocab_size")
    return dataclasses.replace(cfg.data, vocab_size=cfg.data.vocab_size - extra)


class T5CorpusTokenizer(data.CorpusTokenizer):
    """What megatron's T5 dataset reads beyond BERT's: ``bos``, ``eos`` and the sentinels
    (``additional_special_tokens_ids``)."""

    def __init__(self, pieces: list[str]):
        super().__init__(pieces)
        self.unique_identifiers = {"class": type(self).__name__,
                                   "vocab_sha256": hashlib.sha256("\n".join(pieces).encode()).hexdigest()[:16]}

    bos = property(lambda self: self.vocab["[BOS]"])
    eos = property(lambda self: self.vocab["[EOS]"])
    additional_special_tokens_ids = property(
        lambda self: [i for piece, i in self.vocab.items() if piece.startswith("<extra_id_")])


def build_dataset(plan: Any, layout: Any) -> Any:
    """megatron-core's T5MaskedWordPieceDataset with pretrain_t5's masking settings, built on
    tensor-parallel rank 0 (collective)."""
    import torch
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.t5_dataset import T5MaskedWordPieceDataset, T5MaskedWordPieceDatasetConfig

    cfg = plan.run
    directory = plan.data_dir
    prefix = str(directory / data.CORPUS_NAME)
    if torch.distributed.get_rank() == 0 and not Path(prefix + ".idx").exists():
        data.write_corpus(data.generate_corpus(corpus_config(cfg)), directory)
    torch.distributed.barrier()
    config = T5MaskedWordPieceDatasetConfig(
        random_seed=cfg.determinism.seed,
        sequence_length=cfg.model.seq_length,
        sequence_length_decoder=cfg.model.decoder_seq_length,
        blend=([prefix], None),
        split="1,0,0",
        path_to_cache=str(directory / "cache"),
        tokenizer=T5CorpusTokenizer(vocabulary(cfg)),
        masking_probability=cfg.data.mask_prob,
        short_sequence_probability=cfg.data.short_seq_prob,
        masking_max_ngram=10,
        masking_do_full_word=True,
        masking_do_permutation=False,
        masking_use_longer_ngrams=False,
        masking_use_geometric_distribution=True,
    )
    num_samples = cfg.schedule.train_iters * cfg.schedule.global_batch_size
    train, _, _ = BlendedMegatronDatasetBuilder(T5MaskedWordPieceDataset, [num_samples, None, None],
                                                lambda: layout.tp_rank == 0, config).build()
    return train


def batches(dataset: Any, cfg: RunConfig, layout: Any, consumed_train_samples: int) -> Iterator[dict[str, Any]] | None:
    """Micro-batches in Megatron's pretraining-sampler order, T5's keys as int64 tensors."""
    if dataset is None:
        return None
    return data.batches(dataset, first_sample=consumed_train_samples, micro_batch_size=cfg.schedule.micro_batch_size,
                        dp_rank=layout.dp_rank, dp_size=layout.dp_size, collate=data.int64_batch(BATCH_KEYS))


def forward_step(data_iterator: Iterator[dict[str, Any]] | None, model: Any) -> tuple[Any, Any]:
    """``pretrain_t5.get_batch`` + ``forward_step``: broadcast over the TP group, the local spec's
    b1ss attention masks, the encoder-decoder forward with labels."""
    import torch
    from megatron.core import tensor_parallel
    from megatron.core.datasets.t5_dataset import T5MaskedWordPieceDataset

    micro_batch = next(data_iterator) if data_iterator is not None else None
    b = tensor_parallel.broadcast_data(list(BATCH_KEYS), micro_batch, torch.int64)
    tokens_enc, tokens_dec = b["text_enc"].long(), b["text_dec"].long()
    enc_mask, dec_mask, enc_dec_mask = T5MaskedWordPieceDataset.config_attention_mask(
        tokens_enc, tokens_dec, b["enc_mask"] < 0.5, b["dec_mask"] < 0.5, True)
    output = model(tokens_enc, tokens_dec, enc_mask, dec_mask, enc_dec_mask, lm_labels=b["labels"].long())
    return output, partial(gpt.loss_func, b["loss_mask"].float())


def build_model(cfg: RunConfig, tconfig: Any, layout: Any) -> Any:
    """``pretrain_t5.model_provider``: the decoder's config is the run's with the decoder's depth,
    the encoder's a copy with the encoder's."""
    from megatron.core.models.T5.t5_model import T5Model
    from megatron.core.models.T5.t5_spec import (
        get_t5_decoder_with_local_block_spec,
        get_t5_encoder_with_local_block_spec,
    )

    m = cfg.model
    encoder_config = copy.deepcopy(tconfig)
    encoder_config.num_layers = m.num_layers
    decoder_config = copy.deepcopy(tconfig)
    decoder_config.num_layers = m.decoder_num_layers or m.num_layers
    return T5Model(
        config=decoder_config,
        encoder_config=encoder_config,
        transformer_encoder_layer_spec=get_t5_encoder_with_local_block_spec(encoder_config.num_layers),
        transformer_decoder_layer_spec=get_t5_decoder_with_local_block_spec(decoder_config.num_layers),
        vocab_size=cfg.padded_vocab_size,
        max_sequence_length=m.max_position_embeddings,
        pre_process=layout.first_stage,
        post_process=layout.last_stage,
        parallel_output=True,
        share_embeddings_and_output_weights=not m.untie_embeddings_and_output_weights,
        position_embedding_type="learned_absolute",
    )


SPEC = TrainSpec(name="t5", build_model=build_model, build_dataset=build_dataset, batches=batches,
                 forward_step=lambda cfg: forward_step, config_fields=gpt.config_fields,
                 modules=("megatron.core.models.T5.t5_model", "megatron.core.datasets.t5_dataset"))
