"""A Megatron-LM functional-test case folder (``model_config.yaml``) as a runner case.

Megatron's CI drives a case with one ``model_config.yaml``: ``MODEL_ARGS`` (the training script's
flags), ``ENV_VARS`` (exported before the launch), ``TEST_TYPE``, ``LAUNCHER`` and, for some
cases, ``METRICS`` (what its comparison checks). :func:`import_model_config` accounts for every
entry, one of three ways:

- **mapped**: it sets a field of the runner's configuration (``--num-layers`` → ``model.num_layers``),
  or names what the runner does in its place (``--save`` → the run folder's ``checkpoints/``);
- **waived**: it does not apply to a run of this toolkit, with the reason (``--wandb-project``:
  no W&B logging; ``--data-path``: the runner generates its corpus);
- **refused**: the runner cannot run the case as Megatron does, with the precise reason (no
  ``--spec local``: Transformer Engine's layer spec; ``--num-layers-per-virtual-pipeline-stage``).

A flag, variable or top-level key the table below does not know is an error naming it: a flag
nobody has read must never be dropped silently. The record of every entry
(:meth:`MegatronCase.record`) travels with the run config into the artifact's provenance.

Profiles: ``full`` is the import itself (the case's own sizes; world size 8 as Megatron's CI runs
BERT); ``cpu-tiny`` is :func:`cpu_tiny_shrink` — an explicit, reviewed list of what changes so the
case runs on 4 CPU ranks in seconds, keeping its parallel layout, test type and checkpoint format.

Only the standard library is imported here (the CLI reads cases before torch is imported).
"""
from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from goldens.core.errors import FormatError, RunError
from goldens.files.bounded import short
from goldens.files.case import check_name, load_yaml

from .case_family import detect

MODEL_CONFIG_FILE = "model_config.yaml"
# Megatron's CI (tests/test_utils/recipes/h100/bert.yaml: ``nodes: 1, gpus: 8``) runs every BERT
# case on one node of 8 GPUs; the file itself does not say, so the import takes it from there.
MEGATRON_CI_GPUS = 8
TOP_LEVEL = ("ENV_VARS", "MODEL_ARGS", "TEST_TYPE", "METRICS")
RUNNABLE_TEST_TYPES = ("regular", "ckpt-resume")
KNOWN_TEST_TYPES = ("regular", "ckpt-resume", "frozen-resume", "frozen-start", "checkpoint-consistency",
                    "release")  # Megatron's run_ci_test.sh


class CaseRefused(RunError):
    """The case cannot run as Megatron runs it; the message names every missing feature (or the
    model family) first, then gives every reason (exit 2)."""

    def __init__(self, case: str, reasons: tuple[str, ...], features: tuple[str, ...] = (), unread: int = 0):
        self.case, self.reasons, self.features = case, reasons, features
        needs = f"needs {', '.join(features)}: " if features else ""
        tail = f" (and {unread} flag(s) this runner has not read)" if unread else ""
        super().__init__(f"case {case} cannot run here: {needs}" + "; ".join(reasons) + tail)


@dataclass(frozen=True)
class Entry:
    """What became of one entry of model_config.yaml."""

    key: str  # "--num-layers", "ENV_VARS.NCCL_ALGO", "TEST_TYPE", ...
    value: Any
    outcome: str  # mapped | waived | refused
    target: str | None = None  # mapped: the runner field or what stands in for it
    reason: str | None = None  # waived / refused / unread: why
    feature: str | None = None  # refused: the feature (or family) missing here, e.g. "Transformer Engine"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": _plain(self.value), "outcome": self.outcome}
        if self.target is not None:
            out["target"] = self.target
        if self.reason is not None:
            out["reason"] = self.reason
        if self.feature is not None:
            out["feature"] = self.feature
        return out


@dataclass(frozen=True)
class MegatronCase:
    """A model_config.yaml translated: the ``full`` sections and the fate of every entry."""

    name: str
    path: Path | None
    test_type: str
    sections: dict[str, dict[str, Any]]
    entries: tuple[Entry, ...]
    metrics: tuple[str, ...] | None = None  # METRICS: what Megatron's comparison checks
    # (section, field) pairs a flag or variable set: a case.yaml may not restate them
    from_entries: frozenset[tuple[str, str]] = frozenset()
    family: str = "bert"  # runner/families: the builder this case needs
    family_evidence: str = ""
    # The pre-flight's substitutions (feature → what runs in its place), where the refusals are
    # only Transformer Engine's (or a GPU-only kernel's); empty otherwise. See preflight().
    substitutions: Mapping[str, str] = field(default_factory=dict)

    @property
    def refusals(self) -> tuple[str, ...]:
        return tuple(f"{e.key}: {e.reason}" for e in self.entries if e.outcome == "refused")

    @property
    def features(self) -> tuple[str, ...]:
        """The missing features (or family) the refusals name, each once: Transformer Engine first
        (what most of Megatron's cases need), then in the file's order."""
        named = dict.fromkeys(e.feature for e in self.entries if e.outcome == "refused" and e.feature)
        return tuple(sorted(named, key=lambda feature: feature != TE))

    @property
    def unread(self) -> tuple[str, ...]:
        """Flags nobody has mapped or waived, in a case refused for a feature or family anyway."""
        return tuple(e.key for e in self.entries if e.outcome == "unread")

    @property
    def runnable(self) -> bool:
        return not self.refusals

    @property
    def preflight_ready(self) -> bool:
        """Refused only for what the pre-flight substitutes, every flag read."""
        return bool(self.substitutions)

    def entry(self, key: str) -> Entry:
        return next(e for e in self.entries if e.key == key)

    def record(self) -> dict[str, Any]:
        """What the artifact's provenance lists: the source file and every entry's fate."""
        return {"source": str(self.path) if self.path is not None else None, "test_type": self.test_type,
                "family": self.family,
                "metrics": list(self.metrics) if self.metrics is not None else None,
                "entries": {e.key: e.to_json() for e in self.entries}}

    def check_runnable(self) -> None:
        if self.refusals:
            raise CaseRefused(self.name, self.refusals, self.features, len(self.unread))


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


# ---------------------------------------------------------------- value conversion

class _Bad(ValueError):
    pass


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise _Bad(f"expected an integer, got {short(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    digits = value.strip().lstrip("-") if isinstance(value, str) else ""
    if digits.isascii() and digits.isdigit() and len(digits) <= 18:  # "²" is a digit to str.isdigit, not to int
        return int(value)
    raise _Bad(f"expected an integer, got {short(value)}")


def _as_float(value: Any) -> float:
    """argparse's ``type=float``: YAML 1.1 reads ``1e-2`` as text, Megatron's parser as 0.01."""
    if isinstance(value, bool):
        raise _Bad(f"expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _Bad(f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise _Bad(f"expected a finite number, got {value!r}")
    return number


def _as_text(value: Any) -> str:
    if isinstance(value, (bool, dict, list)) or value is None:
        raise _Bad(f"expected a value, got {value!r}")
    return str(value)


# ---------------------------------------------------------------- the flag table

@dataclass
class _Context:
    args: Mapping[str, Any]  # every MODEL_ARGS flag: rules may look at others
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    from_entries: set[tuple[str, str]] = field(default_factory=set)  # fields a flag or variable set

    def set(self, section: str, name: str, value: Any) -> None:
        self.sections.setdefault(section, {})[name] = value
        self.from_entries.add((section, name))

    def int_arg(self, flag: str) -> int | None:
        try:
            return _as_int(self.args[flag]) if flag in self.args else None
        except _Bad:
            return None


Rule = Callable[[Any, _Context, str], Entry]


def to(section: str, name: str, convert: Callable[[Any], Any] = _as_int) -> Rule:
    """A flag whose value becomes ``section.name``."""
    def rule(value: Any, ctx: _Context, flag: str) -> Entry:
        ctx.set(section, name, convert(value))
        return Entry(flag, value, "mapped", f"{section}.{name}")
    return rule


def switch(section: str, name: str, fixed: Any) -> Rule:
    """A store_true/store_false flag: ``true`` sets ``section.name`` to ``fixed``."""
    def rule(value: Any, ctx: _Context, flag: str) -> Entry:
        if value is not True:
            # Megatron's CI passes `--flag false` for anything but `true`, which its parser rejects.
            raise _Bad(f"a switch takes `true` (Megatron's CI passes anything else as a value its parser "
                       f"rejects), got {value!r}: remove the line to leave the switch off")
        ctx.set(section, name, fixed)
        return Entry(flag, value, "mapped", f"{section}.{name} = {fixed!r}")
    return rule


def stands_for(target: str) -> Rule:
    """A flag whose job the runner does itself (a path in the run folder, a metric it records)."""
    def rule(value: Any, ctx: _Context, flag: str) -> Entry:
        return Entry(flag, value, "mapped", target)
    return rule


def waive(reason: str) -> Rule:
    def rule(value: Any, ctx: _Context, flag: str) -> Entry:
        return Entry(flag, value, "waived", reason=reason)
    return rule


def refuse(reason: str, feature: str) -> Rule:
    def rule(value: Any, ctx: _Context, flag: str) -> Entry:
        return Entry(flag, value, "refused", reason=reason, feature=feature)
    return rule


TE = "Transformer Engine"  # the feature a pre-flight substitutes (see preflight)


def _spec(value: Any, ctx: _Context, flag: str) -> Entry:
    if _as_text(value) == "local":
        ctx.set("model", "layer_spec", "local")
        return Entry(flag, value, "mapped", "model.layer_spec = 'local' (megatron-core's local layer spec)")
    return Entry(flag, value, "refused", reason=f"layer spec {value!r}: this runner builds megatron-core's local "
                                                 "layer specs only", feature="a custom layer spec")


def _transformer_impl(value: Any, ctx: _Context, flag: str) -> Entry:
    text = _as_text(value)
    if text == "local":
        ctx.set("model", "layer_spec", "local")
        return Entry(flag, value, "mapped", "model.layer_spec = 'local' (megatron-core's local layer spec)")
    if text == "transformer_engine":
        return Entry(flag, value, "refused", reason="Transformer Engine's layer spec (TE linears, attention and "
                                                    "norms; CUDA only)", feature=TE)
    return Entry(flag, value, "refused", reason=f"--transformer-impl {text}: megatron-core's {text} layers",
                 feature=f"{text} layers")


def _attention_backend(value: Any, ctx: _Context, flag: str) -> Entry:
    text = _as_text(value)
    if text in ("local", "unfused"):
        ctx.set("model", "attention_backend", text)
        return Entry(flag, value, "mapped", "model.attention_backend")
    return Entry(flag, value, "refused", reason=f"attention backend {text!r} needs Transformer Engine "
                                                 "(flash/fused attention)", feature=TE)


def _distributed_backend(value: Any, ctx: _Context, flag: str) -> Entry:
    text = _as_text(value)
    if text == "nccl":
        ctx.set("launch", "device", "cuda")
        return Entry(flag, value, "mapped", "launch.device = 'cuda' (nccl; a cpu profile runs gloo)")
    if text == "gloo":
        ctx.set("launch", "device", "cpu")
        return Entry(flag, value, "mapped", "launch.device = 'cpu' (gloo)")
    raise _Bad(f"expected nccl or gloo, got {value!r}")


def _ckpt_format(value: Any, ctx: _Context, flag: str) -> Entry:
    text = _as_text(value)
    if text in ("torch", "torch_dist"):
        ctx.set("checkpoint", "format", text)
        return Entry(flag, value, "mapped", "checkpoint.format")
    return Entry(flag, value, "refused", reason=f"checkpoint format {text!r}: the runner writes 'torch' "
                                                 "(Megatron's legacy per-rank files) and 'torch_dist' only",
                 feature=f"checkpoint format {text}")


def _exit_interval(value: Any, ctx: _Context, flag: str) -> Entry:
    exit_at, iters = _as_int(value), ctx.int_arg("--train-iters")
    if iters is not None and exit_at >= iters:
        return Entry(flag, value, "waived", reason="exits at or after --train-iters, where the run ends anyway "
                                                   "(Megatron's CI sets it to --train-iters)")
    return Entry(flag, value, "refused", reason=f"the run stops at step {exit_at}, before --train-iters {iters}: "
                                                "the runner trains to --train-iters", feature="an exit before the end")


def _eval_interval(value: Any, ctx: _Context, flag: str) -> Entry:
    every, iters = _as_int(value), ctx.int_arg("--train-iters")
    if iters is not None and every > iters:
        return Entry(flag, value, "waived", reason=f"no evaluation falls within the run ({every} > --train-iters "
                                                   f"{iters}), and Megatron's CI exits before the final one")
    return Entry(flag, value, "refused", reason=f"evaluates every {every} steps within the run: the runner has "
                                                "no evaluation loop", feature="evaluation within the run")


def _eval_iters(value: Any, ctx: _Context, flag: str) -> Entry:
    _as_int(value)
    return Entry(flag, value, "waived", reason="length of an evaluation; none runs (see --eval-interval)")


def _log_interval(value: Any, ctx: _Context, flag: str) -> Entry:
    if _as_int(value) == 1:
        return Entry(flag, value, "mapped", "metrics are logged every step (iteration-time from each process's "
                                            "second step, as Megatron's)")
    return Entry(flag, value, "refused", reason=f"Megatron logs iteration-time every {value} steps; the runner "
                                                "logs every step", feature="a log interval above 1")


def _timing_log_level(value: Any, ctx: _Context, flag: str) -> Entry:
    if _as_int(value) == 0:
        return Entry(flag, value, "mapped", "metrics.iteration-time (the level-0 interval timer, the only one "
                                            "Megatron records at level 0)")
    return Entry(flag, value, "waived", reason="timers above level 0 are not recorded (no golden holds them)")


def _with_distributed_optimizer(value: Any, ctx: _Context, flag: str) -> Entry:
    """Settings of the distributed optimizer: refused with it, meaningless without it."""
    if ctx.args.get("--use-distributed-optimizer") is True:
        return Entry(flag, value, "refused", reason="a setting of the distributed optimizer",
                     feature="the distributed optimizer")
    if flag == "--dist-ckpt-optim-fully-reshardable":
        return Entry(flag, value, "waived", reason="the distributed optimizer's checkpoint layout; this case "
                                                   "does not use it")
    return Entry(flag, value, "refused", reason="overlapping communication with the backward pass (CUDA streams)",
                 feature="overlapped gradient/parameter communication")


def _position_embedding(value: Any, ctx: _Context, flag: str) -> Entry:
    text = _as_text(value)
    if text in ("learned_absolute", "rope"):
        ctx.set("model", "position_embedding_type", text)
        return Entry(flag, value, "mapped", "model.position_embedding_type")
    return Entry(flag, value, "refused", reason=f"position embedding {text!r} is not built here",
                 feature=f"{text} position embeddings")


def _context_parallel(value: Any, ctx: _Context, flag: str) -> Entry:
    if _as_int(value) == 1:
        return Entry(flag, value, "mapped", "context parallel 1 (none), the runner's only layout")
    return Entry(flag, value, "refused", reason=f"context parallelism {value} (the sequence split over ranks) is "
                                                "not built by this runner", feature="context parallelism")


def _deterministic(value: Any, ctx: _Context, flag: str) -> Entry:
    switch("determinism", "deterministic_mode", True)(value, ctx, flag)
    return Entry(flag, value, "mapped", "determinism.deterministic_mode = True (TransformerConfig."
                                        "deterministic_mode, torch.use_deterministic_algorithms, the "
                                        "NCCL/cuBLAS/TE environment on CUDA)")


NO_DATA = ("the runner generates its own corpus and feeds it through megatron-core's dataset of the "
           "family (section data); metrics compare only with goldens recorded by this runner")
VIRTUAL_PIPELINE = ("virtual pipeline parallelism (interleaved 1F1B, model chunks model0..N) is not "
                    "implemented by this runner")
SYNC_SAVE = ("the runner saves synchronously: the same checkpoint files, written before training goes on "
             "(an asynchronous save changes when they are written, not what)")
NO_VALIDATION = "no validation runs within the case (see --eval-interval)"

MODEL_ARGS: dict[str, Rule] = {
    # model
    "--num-layers": to("model", "num_layers"),
    "--hidden-size": to("model", "hidden_size"),
    "--ffn-hidden-size": to("model", "ffn_hidden_size"),
    "--num-attention-heads": to("model", "num_attention_heads"),
    "--seq-length": to("model", "seq_length"),
    "--max-position-embeddings": to("model", "max_position_embeddings"),
    "--make-vocab-size-divisible-by": to("model", "make_vocab_size_divisible_by"),
    "--hidden-dropout": to("model", "hidden_dropout", _as_float),
    "--attention-dropout": to("model", "attention_dropout", _as_float),
    "--init-method-std": to("model", "init_method_std", _as_float),
    "--spec": _spec,
    "--transformer-impl": _transformer_impl,
    "--use-mcore-models": waive("megatron-core's models are the only ones here (Megatron-LM's legacy models are gone)"),
    "--kv-channels": to("model", "kv_channels"),
    "--disable-bias-linear": switch("model", "add_bias_linear", False),
    "--apply-query-key-layer-scaling": switch("model", "apply_query_key_layer_scaling", True),
    "--calculate-per-token-loss": switch("model", "calculate_per_token_loss", True),
    "--attention-softmax-in-fp32": switch("model", "attention_softmax_in_fp32", True),
    "--position-embedding-type": _position_embedding,
    "--context-parallel-size": _context_parallel,
    "--attention-backend": _attention_backend,
    "--bf16": switch("model", "precision", "bf16"),
    "--fp16": switch("model", "precision", "fp16"),
    "--untie-embeddings-and-output-weights": switch("model", "untie_embeddings_and_output_weights", True),
    "--no-bias-dropout-fusion": switch("model", "bias_dropout_fusion", False),
    "--no-bias-gelu-fusion": switch("model", "bias_activation_fusion", False),
    "--no-masked-softmax-fusion": switch("model", "masked_softmax_fusion", False),
    "--no-persist-layer-norm": switch("model", "persist_layer_norm", False),
    "--no-gradient-accumulation-fusion": switch("model", "gradient_accumulation_fusion", False),
    # parallelism
    "--tensor-model-parallel-size": to("parallelism", "tensor_model_parallel_size"),
    "--pipeline-model-parallel-size": to("parallelism", "pipeline_model_parallel_size"),
    "--num-layers-per-virtual-pipeline-stage": refuse(VIRTUAL_PIPELINE, "virtual pipeline parallelism"),
    "--num-virtual-stages-per-pipeline-rank": refuse(VIRTUAL_PIPELINE, "virtual pipeline parallelism"),
    "--distributed-backend": _distributed_backend,
    "--sequence-parallel": switch("parallelism", "sequence_parallel", True),
    "--use-tp-pp-dp-mapping": switch("parallelism", "order", "tp-cp-ep-pp-dp"),
    "--use-distributed-optimizer": refuse("megatron-core's distributed optimizer (sharded optimizer state, "
                                          "reduce-scatter of gradients, all-gather of parameters) is not built "
                                          "by this runner", "the distributed optimizer"),
    "--overlap-grad-reduce": _with_distributed_optimizer,
    "--overlap-param-gather": _with_distributed_optimizer,
    "--dist-ckpt-optim-fully-reshardable": _with_distributed_optimizer,
    # schedule
    "--train-iters": to("schedule", "train_iters"),
    "--save-interval": to("schedule", "save_interval"),
    "--micro-batch-size": to("schedule", "micro_batch_size"),
    "--global-batch-size": to("schedule", "global_batch_size"),
    "--exit-interval": _exit_interval,
    "--eval-interval": _eval_interval,
    "--eval-iters": _eval_iters,
    # optimizer and learning-rate schedule
    "--lr": to("optimizer", "lr", _as_float),
    "--min-lr": to("optimizer", "min_lr", _as_float),
    "--lr-warmup-fraction": to("optimizer", "lr_warmup_fraction", _as_float),
    "--lr-warmup-iters": to("optimizer", "lr_warmup_iters"),
    "--lr-decay-iters": to("optimizer", "lr_decay_iters"),
    "--lr-decay-style": to("optimizer", "lr_decay_style", _as_text),
    "--weight-decay": to("optimizer", "weight_decay", _as_float),
    "--clip-grad": to("optimizer", "clip_grad", _as_float),
    "--adam-beta1": to("optimizer", "adam_beta1", _as_float),
    "--adam-beta2": to("optimizer", "adam_beta2", _as_float),
    "--adam-eps": to("optimizer", "adam_eps", _as_float),
    # determinism
    "--seed": to("determinism", "seed"),
    "--deterministic-mode": _deterministic,
    # data
    "--data-path": waive(NO_DATA),
    "--vocab-file": waive(NO_DATA),
    "--merge-file": waive(NO_DATA),
    "--tokenizer-type": waive(NO_DATA),
    "--num-workers": waive("data-loader worker processes change where samples are read, not which or in what "
                           "order; the runner reads them in the rank's own process"),
    "--split": waive("the runner builds the training split only (split 1,0,0); " + NO_VALIDATION),
    "--data-cache-path": stands_for("the run folder's data/cache (megatron's dataset index cache)"),
    # checkpoints
    "--ckpt-format": _ckpt_format,
    "--save": stands_for("the run folder's checkpoints/"),
    "--load": stands_for("the run folder's checkpoints/ (phase 2 of a ckpt-resume case)"),
    "--use-checkpoint-args": waive("phase 2 runs the same configuration as phase 1, so copying the model "
                                   "arguments from the checkpoint changes nothing; instead the checkpoint's "
                                   "configuration hash is checked against the run's on load"),
    "--use-checkpoint-opt_param-scheduler": switch("checkpoint", "use_checkpoint_opt_param_scheduler", True),
    "--dist-ckpt-strictness": to("checkpoint", "dist_ckpt_strictness", _as_text),
    "--async-save": waive(SYNC_SAVE),
    "--use-persistent-ckpt-worker": waive(SYNC_SAVE),
    "--verify-integrity": waive("checks a torch_dist save's files after writing; the resume of a ckpt-resume "
                                "case reads every one of them back"),
    "--save-retain-interval": waive("the runner keeps the one checkpoint its resume needs; retention only "
                                    "deletes older ones"),
    # logging
    "--log-interval": _log_interval,
    "--timing-log-level": _timing_log_level,
    "--log-timers-to-tensorboard": stands_for("metrics.iteration-time (TensorBoard and the artifact)"),
    "--log-memory-to-tensorboard": stands_for("metrics: mem-allocated-bytes / mem-max-allocated-bytes on "
                                              "CUDA, cpu-max-rss-anon-bytes on CPU"),
    "--log-num-zeros-in-grad": stands_for("metrics.num-zeros (OptimizerConfig.log_num_zeros_in_grad)"),
    "--log-params-norm": waive("params-norm is not recorded: no case's METRICS or policy checks it"),
    "--log-validation-ppl-to-tensorboard": waive(NO_VALIDATION),
    "--tensorboard-dir": stands_for("the run folder's tensorboard/"),
    "--wandb-project": waive("no Weights & Biases logging: the artifact and TensorBoard hold the metrics"),
    "--wandb-entity": waive("no Weights & Biases logging: the artifact and TensorBoard hold the metrics"),
    "--wandb-exp-name": waive("no Weights & Biases logging: the artifact and TensorBoard hold the metrics"),
    "--wandb-save-dir": waive("no Weights & Biases logging: the artifact and TensorBoard hold the metrics"),
}

# Flags only one family's script reads: a flag of another family is unknown to a case.
FAMILY_FLAGS: dict[str, dict[str, Rule]] = {
    "bert": {
        "--bert-no-binary-head": switch("model", "binary_head", False),
        "--mask-prob": to("data", "mask_prob", _as_float),
        "--short-seq-prob": to("data", "short_seq_prob", _as_float),
    },
    "gpt": {},
    "moe": {
        "--num-experts": to("model", "num_experts"),
        "--moe-router-topk": to("model", "moe_router_topk"),
        "--moe-router-load-balancing-type": to("model", "moe_router_load_balancing_type", _as_text),
        "--moe-aux-loss-coeff": to("model", "moe_aux_loss_coeff", _as_float),
        "--moe-token-dispatcher-type": to("model", "moe_token_dispatcher_type", _as_text),
        "--expert-model-parallel-size": to("parallelism", "expert_model_parallel_size"),
        "--expert-tensor-parallel-size": to("parallelism", "expert_tensor_parallel_size"),
        "--moe-grouped-gemm": refuse("grouped GEMM experts (CUTLASS / Transformer Engine kernels, CUDA only)",
                                     "grouped GEMM"),
    },
    "t5": {
        "--encoder-num-layers": to("model", "num_layers"),
        "--decoder-num-layers": to("model", "decoder_num_layers"),
        "--encoder-seq-length": to("model", "seq_length"),
        "--decoder-seq-length": to("model", "decoder_seq_length"),
        "--vocab-extra-ids": to("model", "vocab_extra_ids"),
        "--mask-prob": to("data", "mask_prob", _as_float),
    },
}

ON_CUDA = "exported to the ranks of a CUDA run"
ENV_VARS: dict[str, str] = {
    "CUDA_DEVICE_MAX_CONNECTIONS": f"determinism.env ({ON_CUDA}; CUDA work-queue count)",
    "NVTE_ALLOW_NONDETERMINISTIC_ALGO": f"determinism.env ({ON_CUDA}; read by Transformer Engine, which "
                                        "the local spec does not use)",
    "NCCL_ALGO": f"determinism.env ({ON_CUDA}; checked as --deterministic-mode checks it)",
    "CUBLAS_WORKSPACE_CONFIG": f"determinism.env ({ON_CUDA}; checked as --deterministic-mode checks it)",
}
ENV_WAIVED: dict[str, str] = {
    "NON_DETERMINSTIC_RESULTS": "read by Megatron's comparison (approximate checks), not by training: the "
                                "case's tolerance policies decide here",
    "SKIP_PYTEST": "read by Megatron's CI harness (whether it runs the golden comparison), not by training",
}

# What Megatron-LM's argument parser defaults to where the runner's dataclasses (megatron-core's
# defaults) differ; applied before the flags, so a flag always wins.
MEGATRON_LM_DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"bias_dropout_fusion": True, "bias_activation_fusion": True, "masked_softmax_fusion": True,
              "persist_layer_norm": True, "gradient_accumulation_fusion": True, "ffn_hidden_size": None},
    "determinism": {"deterministic_mode": False},
    "checkpoint": {"format": "torch_dist", "use_checkpoint_opt_param_scheduler": False},
    "launch": {"device": "cuda"},
}
# What a Megatron case cannot say and the runner must choose for its `full` profile: the generated
# corpus at BERT's sizes (WordPiece vocabulary 30592 = bert-large's 30522 padded to a multiple of
# 128; documents long enough for 512-token sentence pairs) and an hour per phase.
FULL_DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {"vocab_size": 30592, "num_documents": 10000, "sentences_per_document": 40},
    "launch": {"phase_timeout_s": 3600},
}


def _bad(path: object, key: str, message: str) -> FormatError:
    return FormatError(message, path=path, key=key)


def import_model_config(doc: Mapping[str, Any], *, name: str, path: Path | None = None,
                        folder: str | None = None) -> MegatronCase:
    """Translate Megatron's ``model_config.yaml`` (parsed) into the runner's sections, accounting for
    every entry. The model family comes first (runner/case_family.detect; ``folder`` is the folder
    holding the case folder): a family not built here is refused by name before any flag is read.
    A case refused for a feature lists the flags nobody has read as ``unread``; in a case that
    would run, an unknown flag, variable or key is a FormatError naming it."""
    if not isinstance(doc, Mapping):
        raise FormatError("expected a mapping at the top level", path=path)
    family = detect(doc, folder=folder, name=name)
    test_type = str(doc.get("TEST_TYPE") or "regular")
    if not family.built:
        entry = Entry("family", family.name, "refused", reason=family.refusal(), feature=f"model family {family.name}")
        return MegatronCase(name=name, path=path, test_type=test_type, sections={}, entries=(entry,),
                            family=family.name, family_evidence=family.evidence)
    args = doc.get("MODEL_ARGS")
    if not isinstance(args, Mapping):
        raise _bad(path, "MODEL_ARGS", "expected a mapping of Megatron flags")
    table = {**MODEL_ARGS, **FAMILY_FLAGS[family.name]}
    ctx = _Context(args=args, sections=copy.deepcopy(MEGATRON_LM_DEFAULTS))
    ctx.set("model", "family", family.name)
    entries: list[Entry] = [Entry("family", family.name, "mapped", f"model.family (told from {family.evidence})")]
    problems: list[tuple[str, str]] = []  # (key, message): errors unless the case is refused anyway
    for key in doc:
        if key not in TOP_LEVEL and key not in TOP_LEVEL_RULES:
            problems.append((str(key), f"unknown top-level key {key!r}: the runner knows "
                                       f"{', '.join((*TOP_LEVEL, *TOP_LEVEL_RULES))}"))
            entries.append(Entry(str(key), doc[key], "unread", reason="not read by this runner"))
    for flag, value in args.items():
        rule = table.get(flag) if isinstance(flag, str) else None
        if rule is None:
            message = (f"unknown Megatron flag {flag} for a {family.name} case: the runner does not know what it "
                       f"does; map or waive it in runner/megatron_case.py")
            problems.append((f"MODEL_ARGS.{flag}", message))
            entries.append(Entry(str(flag), value, "unread", reason="not read by this runner"))
            continue
        try:
            entries.append(rule(value, ctx, flag))
        except _Bad as exc:
            problems.append((f"MODEL_ARGS.{flag}", str(exc)))
            entries.append(Entry(str(flag), value, "unread", reason=str(exc)))
    if "--spec" not in args and "--transformer-impl" not in args:
        entries.append(Entry("--transformer-impl", None, "refused",
                             reason="neither --spec local nor --transformer-impl local: Megatron-LM builds "
                                    "Transformer Engine's layer spec (TE linears, attention and norms; CUDA only)",
                             feature=TE))
    entries += _env_entries(doc.get("ENV_VARS"), ctx, path, problems)
    test_type = _test_type(doc.get("TEST_TYPE"), path, entries)
    for key, rule in TOP_LEVEL_RULES.items():
        if key in doc:
            entries.append(rule(doc[key], ctx, key))
    metrics = _metrics(doc.get("METRICS"), path) if "METRICS" in doc else None
    if metrics is not None:
        entries.append(Entry("METRICS", list(metrics), "mapped",
                             "the comparison: golden diff/check --policy megatron checks these metrics"))
    refused = [e for e in entries if e.outcome == "refused"]
    if problems and not refused:
        raise _bad(path, *problems[0])
    for section, values in FULL_DEFAULTS.items():
        for key, value in values.items():
            ctx.sections.setdefault(section, {}).setdefault(key, value)
    par = ctx.sections.setdefault("parallelism", {})
    try:
        model_parallel = _as_int(par.get("tensor_model_parallel_size", 1)) * _as_int(
            par.get("pipeline_model_parallel_size", 1))
    except _Bad:
        model_parallel = 1
    par.setdefault("tensor_model_parallel_size", 1)
    par.setdefault("pipeline_model_parallel_size", 1)
    par["world_size"] = MEGATRON_CI_GPUS if MEGATRON_CI_GPUS % model_parallel == 0 else model_parallel
    substitutions = {}
    if refused and not problems and all(e.feature in SUBSTITUTES for e in refused):
        substitutions = {feature: SUBSTITUTES[feature] for e in refused if (feature := e.feature) is not None}
    return MegatronCase(name=name, path=path, test_type=test_type, sections=ctx.sections,
                        entries=tuple(entries), metrics=metrics, from_entries=frozenset(ctx.from_entries),
                        family=family.name, family_evidence=family.evidence, substitutions=substitutions)


def _before_script(value: Any, ctx: _Context, key: str) -> Entry:
    """Megatron's CI runs it before training; the runner waives the one kind a local-spec run makes
    true anyway (uninstalling Transformer Engine / Apex), and refuses any other."""
    lines = [line.split("#", 1)[0].strip() for line in str(value).splitlines()]
    lines = [line for line in lines if line]
    if lines and all(UNINSTALL.fullmatch(line) for line in lines):
        return Entry(key, value, "waived", reason="uninstalls Transformer Engine / Apex: the local spec uses neither "
                                                  "(on CUDA, runner/kernels.py records which Apex kernels ran)")
    return Entry(key, value, "refused", reason="a shell script Megatron's CI runs around training",
                 feature="a CI shell script")


UNINSTALL = re.compile(r"pip uninstall -y (transformer_engine|Apex|apex)( \|\| true)?")
TOP_LEVEL_RULES: dict[str, Callable[[Any, _Context, str], Entry]] = {
    "LAUNCHER": waive("how Megatron's CI starts the ranks; the runner starts them itself (fork or torchrun) and "
                      "supervises them"),
    "MODE": lambda value, ctx, key: (
        Entry(key, value, "mapped", "training (MODE pretraining)") if value == "pretraining" else
        Entry(key, value, "refused", reason=f"MODE {value!r}: the runner trains (MODE pretraining)",
              feature=f"MODE {value}")),
    "BEFORE_SCRIPT": _before_script,
    "AFTER_SCRIPT": _before_script,
}
# What the CPU pre-flight runs in place of a refused feature (see preflight()).
SUBSTITUTES: dict[str, str] = {
    TE: "megatron-core's local layer spec (the same architecture on torch's own kernels)",
    "grouped GEMM": "megatron-core's SequentialMLP experts (one GEMM per expert: the same arithmetic)",
}


def _env_entries(env: Any, ctx: _Context, path: object, problems: list[tuple[str, str]]) -> list[Entry]:
    if env is None:
        return []
    if not isinstance(env, Mapping):
        raise _bad(path, "ENV_VARS", "expected a mapping of variable names to values")
    entries = []
    exported: dict[str, str] = {}
    for name, value in env.items():
        key = f"ENV_VARS.{name}"
        if isinstance(value, (dict, list)) or value is None:
            problems.append((key, f"expected a value, got {value!r}"))
            entries.append(Entry(key, value, "unread", reason=f"expected a value, got {value!r}"))
        elif name in ENV_VARS:
            exported[str(name)] = str(value)
            entries.append(Entry(key, value, "mapped", ENV_VARS[name]))
        elif name in ENV_WAIVED:
            entries.append(Entry(key, value, "waived", reason=ENV_WAIVED[name]))
        else:
            problems.append((key, f"unknown environment variable {name}: the runner does not know what it "
                                  f"changes; map or waive it in runner/megatron_case.py"))
            entries.append(Entry(key, value, "unread", reason="not read by this runner"))
    if exported:
        ctx.set("determinism", "env", exported)
    return entries


def _test_type(value: Any, path: object, entries: list[Entry]) -> str:
    if value is None:
        value = "regular"  # what Megatron's harness assumes without one
    if value not in KNOWN_TEST_TYPES:
        raise _bad(path, "TEST_TYPE", f"unknown TEST_TYPE {value!r}; Megatron's are {', '.join(KNOWN_TEST_TYPES)}")
    if value in RUNNABLE_TEST_TYPES:
        entries.append(Entry("TEST_TYPE", value, "mapped",
                             "test_type: " + ("one phase" if value == "regular" else
                                              "two phases, the second resumed in fresh processes from the "
                                              "checkpoint of --save-interval")))
    elif value == "frozen-resume":
        entries.append(Entry("TEST_TYPE", value, "refused",
                             reason="frozen-resume loads a checkpoint an earlier Megatron-LM release stored in "
                                    "NVIDIA's CI artifacts (_CHECKPOINT_LOAD_PATH); the toolkit has none",
                             feature="a frozen-resume checkpoint"))
    elif value == "release":
        entries.append(Entry("TEST_TYPE", value, "refused",
                             reason="release runs are long convergence runs on many nodes with real data, "
                                    "judged approximately; not a functional case this runner reproduces",
                             feature="a release run"))
    else:
        entries.append(Entry("TEST_TYPE", value, "refused",
                             reason=f"TEST_TYPE {value} is not implemented (the runner runs regular and "
                                    "ckpt-resume cases)", feature=f"the {value} test"))
    return str(value)


def _metrics(value: Any, path: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _bad(path, "METRICS", "expected a list of metric names")
    return tuple(value)


def load_model_config(folder: str | Path) -> MegatronCase:
    """``<folder>/model_config.yaml`` imported; the folder's name is the case's name."""
    folder = Path(folder)
    path = folder / MODEL_CONFIG_FILE
    if not path.is_file():
        raise FormatError(f"no Megatron case definition ({MODEL_CONFIG_FILE}) in {folder}", path=path)
    return import_model_config(load_yaml(path), name=check_name(folder.resolve().name), path=path,
                               folder=folder.resolve().parent.name)


# ---------------------------------------------------------------- the cpu-tiny shrink

def cpu_tiny_shrink(case: MegatronCase, *, keep_data_parallel: bool = False) -> dict[str, dict[str, Any]]:
    """The reviewed shrink that makes a case's ``cpu-tiny`` profile (overrides of its sections).

    Kept from the case: the model family, the parallel layout (TP × PP; data parallel 1 on TP·PP CPU
    ranks unless ``keep_data_parallel`` or the experts need more), expert parallelism and sequence
    parallelism, the test type and save point structure, the checkpoint format, determinism,
    dropout, the binary head, the number of experts and the router. Changed, and why:

    - the model: 4 layers (at least one per pipeline stage), hidden 64, 4 heads (or TP), sequence
      64 — the family's structure at a size 4 ranks train in a fraction of a second per step; T5:
      2 encoder and 2 decoder layers, decoder sequence 32, 16 channels per head; a given
      --ffn-hidden-size becomes 4 × hidden;
    - precision fp32 and every fusion off: bf16/fp16, Apex kernels and torch.compile fusions are
      GPU paths (the CPU profile must say so explicitly; RunConfig refuses them on cpu);
    - 20 steps, micro-batch 2, global batch 8 (4 micro-batches at data parallel 1, so the pipeline
      schedule runs warm-up, steady state and cool-down); a ckpt-resume case saves at step 10 and
      resumes there;
    - learning rate 1e-3 → 1e-4 over 20 steps with 2 warm-up steps: Megatron's 1e-4 with 9900
      warm-up iterations would keep the rate near zero and the loss flat for the whole run;
    - a 1000-piece vocabulary and a small generated corpus; the CUDA-only environment dropped.

    Data parallelism: kept when ``keep_data_parallel`` (the ``cpu-tiny-dp`` profile) where the case
    has it (world 8 / (TP·PP) ≥ 2), at 2 — the gradient all-reduce and the data-parallel loss
    averaging run as they do with more replicas, on as few CPU ranks as possible; and always as much
    as expert parallelism needs (TP × DP a multiple of EP × expert TP).
    """
    sec = case.sections
    par = sec["parallelism"]
    tp = int(par["tensor_model_parallel_size"])
    pp = int(par["pipeline_model_parallel_size"])
    dp = min(data_parallel_size(case), 2) if keep_data_parallel else 1
    family = sec.get("model", {}).get("family", "bert")
    if family == "moe":
        experts = int(par.get("expert_model_parallel_size", 1)) * int(par.get("expert_tensor_parallel_size") or tp)
        while (tp * dp) % experts:
            dp += 1
    heads = max(4, tp)
    layers = pp * max(1, -(-4 // pp))
    schedule: dict[str, Any] = {"train_iters": 20, "micro_batch_size": 2, "global_batch_size": 8}
    if case.test_type == "ckpt-resume":
        schedule["save_interval"] = 10
    model: dict[str, Any] = {
        "num_layers": layers, "hidden_size": 16 * heads, "num_attention_heads": heads,
        "seq_length": 64, "max_position_embeddings": 64, "precision": "fp32",
        "bias_dropout_fusion": False, "bias_activation_fusion": False, "masked_softmax_fusion": False,
        "persist_layer_norm": False, "gradient_accumulation_fusion": False}
    if family == "t5":
        model.update(num_layers=2, decoder_num_layers=2, decoder_seq_length=32, kv_channels=16,
                     ffn_hidden_size=4 * 16 * heads)
    elif "ffn_hidden_size" in sec.get("model", {}) and sec["model"]["ffn_hidden_size"] is not None:
        model["ffn_hidden_size"] = 4 * 16 * heads
    if "kv_channels" in sec.get("model", {}):
        model["kv_channels"] = 16
    return {
        "model": model,
        "parallelism": {"world_size": tp * pp * dp},
        "schedule": schedule,
        "optimizer": {"lr": 1.0e-3, "min_lr": 1.0e-4, "lr_warmup_fraction": None, "lr_warmup_iters": 2,
                      "lr_decay_iters": 20},
        "data": {"vocab_size": 1000, "num_documents": 400, "sentences_per_document": 6},
        "determinism": {"env": {}},
        "launch": {"device": "cpu", "phase_timeout_s": 240},
    }


def data_parallel_size(case: MegatronCase) -> int:
    """The case's data parallelism on Megatron's CI (world size over TP × PP)."""
    par = case.sections["parallelism"]
    return int(par["world_size"]) // (int(par["tensor_model_parallel_size"]) * int(par["pipeline_model_parallel_size"]))
