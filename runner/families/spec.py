"""The one small interface every model family implements (as torchtitan's ``TrainSpec``).

The training loop (runner/trainer.py, runner/train.py) knows nothing of BERT, GPT or T5: it asks
the family's spec for the model on this pipeline stage, the TransformerConfig fields only that
family sets, the training dataset, the micro-batch stream, and the forward step with its loss —
the pieces Megatron-LM's ``pretrain_<family>.py`` hands to ``pretrain()``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..config import RunConfig


@dataclass(frozen=True)
class TrainSpec:
    name: str
    # (cfg, TransformerConfig, layout) -> the family's megatron-core model on this pipeline stage
    build_model: Callable[[RunConfig, Any, Any], Any]
    # (plan, layout) -> the training dataset (a collective; None where this rank reads no data)
    build_dataset: Callable[[Any, Any], Any]
    # (dataset, cfg, layout, consumed samples) -> this rank's micro-batches, Megatron's order
    batches: Callable[[Any, RunConfig, Any, int], Iterator[dict[str, Any]] | None]
    # cfg -> the forward_step_func megatron's pipeline schedule calls (data_iterator, model)
    forward_step: Callable[[RunConfig], Callable[..., Any]]
    # cfg -> TransformerConfig keyword arguments only this family sets (BERT: none)
    config_fields: Callable[[RunConfig], dict[str, Any]] = lambda cfg: {}
    # preloaded by the fork server (import time paid once per run, not per rank)
    modules: tuple[str, ...] = ()
