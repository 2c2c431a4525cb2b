"""Training data: a generated WordPiece corpus through megatron-core's own BERT dataset path.

Why this path: it is the one Megatron's ``pretrain_bert.py`` uses — an ``IndexedDataset``
(.bin/.idx written by ``IndexedDatasetBuilder``), sample mapping by the compiled
``helpers.build_mapping``, sentence-pair construction and masking by
``BERTMaskedWordPieceDataset``, built through ``BlendedMegatronDatasetBuilder`` on tensor-parallel
rank 0 and broadcast to the other tensor-parallel ranks with ``tensor_parallel.broadcast_data``.
Only the text is ours: a seeded Markov "language" of Zipf-distributed words spelled with
WordPiece pieces (``w17 ##c3``), so the repo ships no corpus and no licence question arises,
and the loss visibly falls (unigram frequencies, fixed spellings and word successions are
learnable in a few steps).

Determinism: the corpus uses numpy's legacy ``RandomState`` (its streams are frozen across numpy
versions); megatron's sampling is seeded per sample index; batches are consumed in Megatron's
order (iteration i takes samples [i·global_batch, (i+1)·global_batch), each data-parallel rank
its micro-batch slice), so a resumed run reads exactly the samples the uninterrupted one did.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import DataConfig

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
BATCH_KEYS = ("text", "types", "labels", "is_random", "loss_mask", "padding_mask")
CORPUS_NAME = "corpus"


class CorpusTokenizer:
    """The vocabulary of the generated corpus, with the attributes megatron's BERT dataset reads
    (``cls``, ``sep``, ``mask``, ``pad``, ``inv_vocab``, ``unique_identifiers``)."""

    def __init__(self, pieces: list[str]):
        self.vocab = {piece: i for i, piece in enumerate(pieces)}
        self.inv_vocab = dict(enumerate(pieces))
        digest = hashlib.sha256("\n".join(pieces).encode()).hexdigest()[:16]
        self.unique_identifiers = {"class": type(self).__name__, "vocab_sha256": digest}

    pad = property(lambda self: self.vocab["[PAD]"])
    cls = property(lambda self: self.vocab["[CLS]"])
    sep = property(lambda self: self.vocab["[SEP]"])
    mask = property(lambda self: self.vocab["[MASK]"])


@dataclass(frozen=True)
class Corpus:
    """Documents as lists of sentences of token ids, plus the vocabulary."""

    pieces: list[str]
    documents: list[list[np.ndarray]]


def vocabulary(cfg: DataConfig) -> list[str]:
    """Special tokens, then word-initial pieces ``w<i>``, then continuation pieces ``##c<j>``."""
    free = cfg.vocab_size - len(SPECIAL_TOKENS)
    n_words = (free * 3) // 4
    return [*SPECIAL_TOKENS, *(f"w{i}" for i in range(n_words)), *(f"##c{j}" for j in range(free - n_words))]


def generate_corpus(cfg: DataConfig) -> Corpus:
    """A deterministic corpus: words with fixed spellings, Markov successions, Zipf frequencies."""
    rs = np.random.RandomState(cfg.seed)
    pieces = vocabulary(cfg)
    first_word = len(SPECIAL_TOKENS)
    n_words = sum(p.startswith("w") for p in pieces)
    first_cont, n_cont = first_word + n_words, len(pieces) - first_word - n_words
    # Each word is spelled by its own piece plus 0-2 fixed continuation pieces.
    extra = rs.choice(3, size=n_words, p=[0.6, 0.3, 0.1])
    spelling = [np.asarray([first_word + w, *(first_cont + rs.randint(n_cont, size=k))], dtype=np.int32)
                for w, k in enumerate(extra)]
    zipf_cdf = np.cumsum(1.0 / np.arange(1, n_words + 1))
    zipf_cdf /= zipf_cdf[-1]
    successors = np.searchsorted(zipf_cdf, rs.random_sample((n_words, 4)))
    documents = []
    for _ in range(cfg.num_documents):
        sentences = []
        word = int(np.searchsorted(zipf_cdf, rs.random_sample()))
        for _ in range(cfg.sentences_per_document):
            length = max(2, cfg.words_per_sentence + rs.randint(-3, 4))
            # Per word: follow one of the word's 4 successors (60 %) or draw from the Zipf law.
            follow, pick, fresh = rs.random_sample(length) < 0.6, rs.randint(4, size=length), rs.random_sample(length)
            words = []
            for i in range(length):
                word = int(successors[word, pick[i]] if follow[i] else np.searchsorted(zipf_cdf, fresh[i]))
                words.append(word)
            sentences.append(np.concatenate([spelling[w] for w in words]))
        documents.append(sentences)
    return Corpus(pieces=pieces, documents=documents)


def write_corpus(corpus: Corpus, directory: Path) -> str:
    """Write the corpus as a megatron IndexedDataset (+ vocab.txt); returns the path prefix."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    directory.mkdir(parents=True, exist_ok=True)
    prefix = directory / CORPUS_NAME
    builder = IndexedDatasetBuilder(str(prefix) + ".bin", dtype=np.int32)
    for sentences in corpus.documents:
        builder.add_document(np.concatenate(sentences), [len(s) for s in sentences])
    builder.finalize(str(prefix) + ".idx")
    (directory / "vocab.txt").write_text("\n".join(corpus.pieces) + "\n", encoding="utf-8")
    return str(prefix)


def build_dataset(cfg: DataConfig, *, directory: Path, seq_length: int, seed: int, num_samples: int,
                  binary_head: bool, builds_on_this_rank: bool) -> Any:
    """The BERT training dataset, built collectively (rank 0 writes corpus and caches first).

    Every rank must call this (megatron's builder synchronises with barriers); ranks where
    ``builds_on_this_rank`` is false get ``None``, as in Megatron's pretrain_bert.
    """
    import torch
    from megatron.core.datasets.bert_dataset import BERTMaskedWordPieceDataset, BERTMaskedWordPieceDatasetConfig
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder

    prefix = str(directory / CORPUS_NAME)
    if torch.distributed.get_rank() == 0 and not Path(prefix + ".idx").exists():
        write_corpus(generate_corpus(cfg), directory)
    torch.distributed.barrier()
    config = BERTMaskedWordPieceDatasetConfig(
        random_seed=seed,
        sequence_length=seq_length,
        blend=([prefix], None),
        split="1,0,0",
        path_to_cache=str(directory / "cache"),
        tokenizer=CorpusTokenizer(vocabulary(cfg)),
        masking_probability=cfg.mask_prob,
        short_sequence_probability=cfg.short_seq_prob,
        masking_max_ngram=3,
        masking_do_full_word=True,
        masking_do_permutation=False,
        masking_use_longer_ngrams=False,
        masking_use_geometric_distribution=False,
        classification_head=binary_head,
    )
    train, _, _ = BlendedMegatronDatasetBuilder(
        BERTMaskedWordPieceDataset, [num_samples, None, None], lambda: builds_on_this_rank, config,
    ).build()
    return train


def int64_batch(keys: tuple[str, ...]) -> Callable[[list[Any]], dict[str, Any]]:
    """Collate samples of numpy arrays into one int64 tensor per key in ``keys`` (BERT's, T5's)."""
    def collate(samples: list[Any]) -> dict[str, Any]:
        import torch

        return {key: torch.as_tensor(np.stack([np.asarray(s[key]) for s in samples]), dtype=torch.int64)
                for key in keys}
    return collate


BERT_BATCH = int64_batch(BATCH_KEYS)  # BERT's samples, the default collation


def batches(dataset: Any, *, first_sample: int, micro_batch_size: int, dp_rank: int, dp_size: int,
            collate: Callable[[list[Any]], dict[str, Any]] = BERT_BATCH) -> Iterator[dict[str, Any]]:
    """Micro-batches in Megatron's pretraining-sampler order, starting at ``first_sample``
    (= consumed samples, i.e. iteration × global batch size on resume); ``collate`` makes one batch of
    a micro-batch's samples (each family's dataset yields its own sample type)."""
    start = first_sample
    while True:
        lo = start + dp_rank * micro_batch_size
        yield collate([dataset[i] for i in range(lo, lo + micro_batch_size)])
        start += micro_batch_size * dp_size
