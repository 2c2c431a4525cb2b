"""The case as typed configuration: one small dataclass per concern, validated on construction.

A ``case.yaml`` holds base sections (``model``, ``parallelism``, ``schedule``, ``optimizer``,
``data``, ``determinism``, ``checkpoint``, ``launch``) plus ``profiles`` whose sections override
the base key by key; :meth:`CaseDefinition.run_config` resolves one profile into a
:class:`RunConfig`. The ``metrics`` section (tolerance policies) is carried through untouched for
the comparison engine. Precedence, stated once: command-line options > the chosen profile > base
sections > the dataclass defaults.

A case may instead be defined by Megatron's own ``model_config.yaml`` (``runner/megatron_case.py``):
either a Megatron case folder as it is (profiles ``full`` and the reviewed ``cpu-tiny`` shrink), or
a case.yaml whose ``megatron: model_config.yaml`` makes that file its base sections — the case.yaml
then adds profiles, tolerance policies and what Megatron's file cannot say, never a flag's value.

Only the standard library is imported here: the CLI and the torchrun entry read configs before
torch is imported.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from goldens.core.errors import FormatError, GoldenError, StoreError
from goldens.files.case import CASE_FILE, check_case_path, check_name, load_yaml

from .case_family import BUILT
from .megatron_case import (
    MODEL_CONFIG_FILE,
    MegatronCase,
    cpu_tiny_shrink,
    data_parallel_size,
    import_model_config,
    load_model_config,
)

DEVICES = ("cpu", "cuda")
MOE_LOAD_BALANCING = ("aux_loss", "seq_aux_loss", "sinkhorn", "none")
MOE_DISPATCHERS = ("allgather", "alltoall")
# Fields the model families added (issue 25): recorded in a run's model_args only where set, so the
# arguments of runs recorded before them stay comparable (runner/provenance.model_args).
FAMILY_FIELD = {"family_field": True}
PRECISIONS = ("fp32", "bf16", "fp16")
LR_DECAY_STYLES = ("constant", "linear", "cosine", "inverse-square-root")
CHECKPOINT_FORMATS = ("torch", "torch_dist")
# megatron.core.dist_checkpointing.validation.StrictHandling values (--dist-ckpt-strictness)
DIST_CKPT_STRICTNESS = ("assume_ok_unexpected", "log_unexpected", "log_all", "raise_unexpected", "raise_all",
                        "return_unexpected", "return_all", "ignore_all")
TEST_TYPES = ("regular", "ckpt-resume")
# numpy takes seeds below 2**32 and each rank adds offsets to the case's seed (100 per pipeline
# stage, megatron's 2718 + tensor rank): 2**31 - 1 leaves room for any layout.
MAX_SEED = 2**31 - 1
# A Megatron case folder's profiles besides full and cpu-tiny: the shrink with the case's data
# parallelism kept, and the CPU pre-flight of a Transformer Engine case (runner/megatron_case.py).
DP_PROFILE = "cpu-tiny-dp"
PREFLIGHT_PROFILE = "cpu-preflight"
SECTIONS = ("model", "parallelism", "schedule", "optimizer", "data", "determinism", "checkpoint",
            "launch")


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _fraction(name: str, value: float, *, upper_open: bool = True) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not (
            0.0 <= value < 1.0 if upper_open else 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")


@dataclass(kw_only=True, slots=True, frozen=True)
class ModelConfig:
    """The architecture, by Megatron's flag names (--num-layers, --hidden-size, ...). ``family``
    picks the builder (runner/families); the fields after it that only some families read say
    which in their comment."""

    num_layers: int
    hidden_size: int
    num_attention_heads: int
    seq_length: int
    max_position_embeddings: int
    ffn_hidden_size: int | None = None  # Megatron's default: 4 × hidden_size
    make_vocab_size_divisible_by: int = 128
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    init_method_std: float = 0.02
    layernorm_epsilon: float = 1e-5
    binary_head: bool = True
    untie_embeddings_and_output_weights: bool = False
    layer_spec: str = "local"
    attention_backend: str = "local"
    precision: str = "fp32"
    # Megatron-LM turns these on by default. The bias fusions route through megatron.core.jit's
    # fuser (torch.compile); the masked softmax, the persistent layer norm and the gradient
    # accumulation fusion are Apex CUDA kernels. On CUDA each is used only where it is available
    # (runner/kernels.py decides and records it); a cpu profile must switch them all off.
    bias_dropout_fusion: bool = False
    bias_activation_fusion: bool = False
    masked_softmax_fusion: bool = False
    persist_layer_norm: bool = False
    gradient_accumulation_fusion: bool = False
    family: str = field(default="bert", metadata=FAMILY_FIELD)
    attention_softmax_in_fp32: bool = field(default=False, metadata=FAMILY_FIELD)
    position_embedding_type: str = field(default="learned_absolute", metadata=FAMILY_FIELD)  # gpt, moe
    add_bias_linear: bool = field(default=True, metadata=FAMILY_FIELD)  # --disable-bias-linear
    apply_query_key_layer_scaling: bool = field(default=False, metadata=FAMILY_FIELD)
    kv_channels: int | None = field(default=None, metadata=FAMILY_FIELD)  # None: hidden / heads
    # moe: megatron-core's MoE layer on the local spec
    num_experts: int | None = field(default=None, metadata=FAMILY_FIELD)
    moe_router_topk: int = field(default=2, metadata=FAMILY_FIELD)
    moe_router_load_balancing_type: str = field(default="aux_loss", metadata=FAMILY_FIELD)
    moe_aux_loss_coeff: float = field(default=0.0, metadata=FAMILY_FIELD)
    moe_token_dispatcher_type: str = field(default="allgather", metadata=FAMILY_FIELD)
    # t5: encoder and decoder depth (num_layers is the encoder's), the decoder's sequence
    decoder_num_layers: int | None = field(default=None, metadata=FAMILY_FIELD)
    decoder_seq_length: int | None = field(default=None, metadata=FAMILY_FIELD)
    vocab_extra_ids: int = field(default=0, metadata=FAMILY_FIELD)
    calculate_per_token_loss: bool = field(default=False, metadata=FAMILY_FIELD)

    def __post_init__(self) -> None:
        if self.family not in BUILT:
            raise ValueError(f"family must be one of {', '.join(BUILT)}, got {self.family!r}")
        for name in ("kv_channels", "num_experts", "decoder_num_layers", "decoder_seq_length"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        _positive("moe_router_topk", self.moe_router_topk)
        if (self.family == "moe") != (self.num_experts is not None):
            raise ValueError("num_experts is set exactly when family is 'moe'")
        if self.num_experts is not None and self.moe_router_topk > self.num_experts:
            raise ValueError(f"moe_router_topk {self.moe_router_topk} exceeds num_experts {self.num_experts}")
        if self.moe_router_load_balancing_type not in MOE_LOAD_BALANCING:
            raise ValueError(f"moe_router_load_balancing_type must be one of {', '.join(MOE_LOAD_BALANCING)}")
        if self.moe_token_dispatcher_type not in MOE_DISPATCHERS:
            raise ValueError(f"moe_token_dispatcher_type must be one of {', '.join(MOE_DISPATCHERS)}")
        if self.position_embedding_type not in ("learned_absolute", "rope"):
            raise ValueError(f"position_embedding_type must be 'learned_absolute' or 'rope', got "
                             f"{self.position_embedding_type!r}")
        if self.position_embedding_type == "rope" and self.family not in ("gpt", "moe"):
            raise ValueError("rope position embeddings are built for the gpt and moe families here")
        if self.vocab_extra_ids < 0:
            raise ValueError("vocab_extra_ids must be >= 0")
        for name in ("num_layers", "hidden_size", "num_attention_heads", "seq_length",
                     "max_position_embeddings", "make_vocab_size_divisible_by"):
            _positive(name, getattr(self, name))
        if self.ffn_hidden_size is not None:
            _positive("ffn_hidden_size", self.ffn_hidden_size)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by "
                             f"num_attention_heads {self.num_attention_heads}")
        if self.seq_length > self.max_position_embeddings:
            raise ValueError(f"seq_length {self.seq_length} exceeds max_position_embeddings "
                             f"{self.max_position_embeddings}: raise max_position_embeddings")
        _fraction("hidden_dropout", self.hidden_dropout)
        _fraction("attention_dropout", self.attention_dropout)
        if self.layer_spec != "local":
            raise ValueError(f"layer_spec {self.layer_spec!r} is not supported: this runner builds "
                             "megatron-core's local layer specs ('local')")
        if self.attention_backend not in ("local", "unfused"):
            raise ValueError(f"attention_backend must be 'local' or 'unfused', got "
                             f"{self.attention_backend!r} (the others need Transformer Engine)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    @property
    def ffn_size(self) -> int:
        return self.ffn_hidden_size or 4 * self.hidden_size

    @property
    def fusions(self) -> tuple[str, ...]:
        return tuple(name for name in FUSIONS if getattr(self, name))


FUSIONS = ("bias_dropout_fusion", "bias_activation_fusion", "masked_softmax_fusion", "persist_layer_norm",
           "gradient_accumulation_fusion")


@dataclass(kw_only=True, slots=True, frozen=True)
class ParallelConfig:
    """Tensor × pipeline × data parallel; data parallel is derived from the world size."""

    tensor_model_parallel_size: int
    pipeline_model_parallel_size: int
    world_size: int
    sequence_parallel: bool = field(default=False, metadata=FAMILY_FIELD)
    expert_model_parallel_size: int = field(default=1, metadata=FAMILY_FIELD)
    expert_tensor_parallel_size: int | None = field(default=None, metadata=FAMILY_FIELD)  # None: TP
    order: str = field(default="tp-cp-ep-dp-pp", metadata=FAMILY_FIELD)  # megatron's rank order

    def __post_init__(self) -> None:
        _positive("expert_model_parallel_size", self.expert_model_parallel_size)
        if self.expert_tensor_parallel_size is not None:
            _positive("expert_tensor_parallel_size", self.expert_tensor_parallel_size)
        if self.order not in ("tp-cp-ep-dp-pp", "tp-cp-ep-pp-dp"):
            raise ValueError(f"order must be 'tp-cp-ep-dp-pp' or 'tp-cp-ep-pp-dp', got {self.order!r}")
        if self.sequence_parallel and self.tensor_model_parallel_size == 1:
            raise ValueError("sequence_parallel needs tensor_model_parallel_size > 1")
        _positive("tensor_model_parallel_size", self.tensor_model_parallel_size)
        _positive("pipeline_model_parallel_size", self.pipeline_model_parallel_size)
        _positive("world_size", self.world_size)
        if self.world_size % self.model_parallel_size:
            raise ValueError(f"world_size {self.world_size} must be a multiple of tensor × pipeline "
                             f"parallel size {self.model_parallel_size}")

    @property
    def model_parallel_size(self) -> int:
        return self.tensor_model_parallel_size * self.pipeline_model_parallel_size

    @property
    def data_parallel_size(self) -> int:
        return self.world_size // self.model_parallel_size

    @property
    def expert_tp_size(self) -> int:
        return self.expert_tensor_parallel_size or self.tensor_model_parallel_size


@dataclass(kw_only=True, slots=True, frozen=True)
class ScheduleConfig:
    """Iterations and batch sizes. Phase 1 trains 1..train_iters; a ckpt-resume case saves at
    ``save_interval`` and phase 2 resumes from that checkpoint in fresh processes and trains to
    train_iters. A regular case runs phase 1 only (Megatron's save-interval 10000: no save)."""

    train_iters: int
    save_interval: int
    micro_batch_size: int
    global_batch_size: int

    def __post_init__(self) -> None:
        for name in ("train_iters", "save_interval", "micro_batch_size", "global_batch_size"):
            _positive(name, getattr(self, name))

    def num_microbatches(self, data_parallel_size: int) -> int:
        per_step = self.micro_batch_size * data_parallel_size
        if self.global_batch_size % per_step:
            raise ValueError(f"global_batch_size {self.global_batch_size} must be a multiple of "
                             f"micro_batch_size × data parallel size = {per_step}")
        return self.global_batch_size // per_step


@dataclass(kw_only=True, slots=True, frozen=True)
class OptimizerConfig:
    """Adam with Megatron's learning-rate schedule (OptimizerParamScheduler)."""

    lr: float
    min_lr: float = 0.0
    lr_warmup_fraction: float | None = None
    lr_warmup_iters: int = 0
    lr_decay_iters: int | None = None  # None: train_iters
    lr_decay_style: str = "linear"
    weight_decay: float = 0.01
    clip_grad: float = 1.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8

    def __post_init__(self) -> None:
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr {self.min_lr} must be in [0, lr={self.lr}]")
        if self.lr_warmup_fraction is not None:
            _fraction("lr_warmup_fraction", self.lr_warmup_fraction)
            if self.lr_warmup_iters:
                raise ValueError("give lr_warmup_fraction or lr_warmup_iters, not both")
        if self.lr_decay_style not in LR_DECAY_STYLES:
            raise ValueError(f"lr_decay_style must be one of {', '.join(LR_DECAY_STYLES)}, "
                             f"got {self.lr_decay_style!r}")
        if self.clip_grad < 0 or self.weight_decay < 0:
            raise ValueError("clip_grad and weight_decay must be >= 0")

    def warmup_steps(self, decay_iters: int, global_batch_size: int) -> float:
        """Warm-up length in samples, as Megatron-LM's ``get_optimizer_param_scheduler`` computes
        it: the fraction times the decay samples, a float product kept as it is (not truncated to
        whole iterations), else the warm-up iterations times the global batch."""
        if self.lr_warmup_fraction is not None:
            return self.lr_warmup_fraction * (decay_iters * global_batch_size)
        return self.lr_warmup_iters * global_batch_size


@dataclass(kw_only=True, slots=True, frozen=True)
class DataConfig:
    """The generated WordPiece corpus fed through megatron-core's BERT dataset.

    A seeded Markov "language" (Zipf-distributed words split into WordPiece pieces, documents of
    sentences) is written as an IndexedDataset at run time; megatron-core's
    BERTMaskedWordPieceDataset samples sentence pairs and masks tokens from it.
    """

    vocab_size: int = 1000  # words + continuation pieces + special tokens
    num_documents: int = 400
    sentences_per_document: int = 6
    words_per_sentence: int = 12
    mask_prob: float = 0.15
    short_seq_prob: float = 0.1
    seed: int = 1234

    def __post_init__(self) -> None:
        for name in ("num_documents", "sentences_per_document", "words_per_sentence"):
            _positive(name, getattr(self, name))
        if self.vocab_size < 64:
            raise ValueError(f"vocab_size must be at least 64, got {self.vocab_size!r}")
        if self.sentences_per_document < 2:
            raise ValueError("sentences_per_document must be >= 2 (the binary head needs pairs)")
        if not 0 < self.mask_prob < 1:
            raise ValueError(f"mask_prob must be in (0, 1), got {self.mask_prob!r}")
        _fraction("short_seq_prob", self.short_seq_prob, upper_open=False)


@dataclass(kw_only=True, slots=True, frozen=True)
class DeterminismConfig:
    """What makes reruns bit-identical: seeds, deterministic algorithms, thread counts, env."""

    seed: int = 1234
    deterministic_mode: bool = True
    threads_per_rank: int = 1
    env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _positive("threads_per_rank", self.threads_per_rank)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer in [0, {MAX_SEED}], got {self.seed!r}")
        bad = [k for k, v in dict(self.env).items() if not isinstance(k, str) or isinstance(v, (dict, list))]
        if bad:
            raise ValueError(f"env values must be scalars, check {bad}")
        object.__setattr__(self, "env", {str(k): str(v) for k, v in dict(self.env).items()})


@dataclass(kw_only=True, slots=True, frozen=True)
class CheckpointConfig:
    """Megatron's two checkpoint formats (runner/checkpoint.py): ``torch``, the legacy per-rank
    ``model_optim_rng.pt`` files, and ``torch_dist``, dist_checkpointing with the torch_dist
    backend; both saved synchronously. Megatron-LM's default is torch_dist (--ckpt-format)."""

    format: str = "torch_dist"
    writer_processes: int = 1  # torch_dist: files (and forked writers) per rank and save
    # --use-checkpoint-opt_param-scheduler: on load take the LR schedule's settings from the
    # checkpoint instead of asserting they equal the run's (Megatron-LM's default: assert).
    use_checkpoint_opt_param_scheduler: bool = False
    dist_ckpt_strictness: str = "assume_ok_unexpected"  # --dist-ckpt-strictness (torch_dist loads)

    def __post_init__(self) -> None:
        if self.format not in CHECKPOINT_FORMATS:
            raise ValueError(f"checkpoint format must be one of {', '.join(CHECKPOINT_FORMATS)}, "
                             f"got {self.format!r}")
        _positive("writer_processes", self.writer_processes)
        if self.dist_ckpt_strictness not in DIST_CKPT_STRICTNESS:
            raise ValueError(f"dist_ckpt_strictness must be one of {', '.join(DIST_CKPT_STRICTNESS)}, "
                             f"got {self.dist_ckpt_strictness!r}")


@dataclass(kw_only=True, slots=True, frozen=True)
class LaunchConfig:
    """How ranks start: torchrun on ``nnodes`` nodes, ``nproc_per_node`` each."""

    device: str = "cpu"
    nproc_per_node: int | None = None  # None: world_size / nnodes
    nnodes: int = 1
    phase_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        _positive("nnodes", self.nnodes)
        if self.nproc_per_node is not None:
            _positive("nproc_per_node", self.nproc_per_node)
        if not (isinstance(self.phase_timeout_s, (int, float)) and self.phase_timeout_s > 0
                and math.isfinite(self.phase_timeout_s)):
            raise ValueError(f"phase_timeout_s must be a positive number of seconds, got "
                             f"{self.phase_timeout_s!r}")

    @property
    def backend(self) -> str:
        return "nccl" if self.device == "cuda" else "gloo"


@dataclass(kw_only=True, slots=True, frozen=True)
class RunConfig:
    """Everything one run of one profile of a case needs."""

    case: str
    profile: str
    model: ModelConfig
    parallelism: ParallelConfig
    schedule: ScheduleConfig
    optimizer: OptimizerConfig
    data: DataConfig
    determinism: DeterminismConfig
    checkpoint: CheckpointConfig
    launch: LaunchConfig
    test_type: str = "ckpt-resume"  # regular: phase 1 only; ckpt-resume: phase 2 resumes at save_interval
    # A Megatron case: every model_config.yaml entry and what became of it (MegatronCase.record),
    # listed in the artifact's provenance.
    megatron: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.test_type not in TEST_TYPES:
            raise ValueError(f"test_type must be one of {', '.join(TEST_TYPES)}, got {self.test_type!r}")
        s = self.schedule
        if self.resumes and not s.save_interval < s.train_iters:
            raise ValueError(f"save_interval {s.save_interval} must be below train_iters "
                             f"{s.train_iters} so that phase 2 has steps to resume")
        model, par = self.model, self.parallelism
        tp, pp = par.tensor_model_parallel_size, par.pipeline_model_parallel_size
        if model.num_attention_heads % tp:
            raise ValueError(f"num_attention_heads {model.num_attention_heads} must be divisible by "
                             f"tensor_model_parallel_size {tp}")
        if model.num_experts is not None:  # a MoE model: num_experts is set exactly for family moe
            ep, etp = par.expert_model_parallel_size, par.expert_tp_size
            if model.num_experts % ep:
                raise ValueError(f"num_experts {model.num_experts} must be divisible by "
                                 f"expert_model_parallel_size {ep}")
            if (tp * par.data_parallel_size) % (ep * etp):
                raise ValueError(f"tensor × data parallel size {tp * par.data_parallel_size} must be a multiple of "
                                 f"expert × expert-tensor parallel size {ep * etp}: raise world_size")
        elif par.expert_model_parallel_size != 1:
            raise ValueError("expert_model_parallel_size > 1 needs an MoE model (family 'moe')")
        if model.family == "t5" and pp != 1:
            raise ValueError("a T5 model runs on pipeline_model_parallel_size 1 here")
        if model.num_layers % pp:
            raise ValueError(f"num_layers {model.num_layers} must be divisible by "
                             f"pipeline_model_parallel_size {pp}")
        self.schedule.num_microbatches(par.data_parallel_size)  # raises with the fix
        nodes = self.launch.nnodes
        per_node = self.launch.nproc_per_node or par.world_size // nodes
        if per_node * nodes != par.world_size:
            raise ValueError(f"nnodes {nodes} × nproc_per_node {per_node} must equal world_size "
                             f"{par.world_size}")
        if self.launch.device == "cpu":
            if model.precision != "fp32":
                raise ValueError(f"precision {model.precision!r} is GPU-only here: use fp32 on cpu")
            if model.fusions:
                raise ValueError(f"{', '.join(model.fusions)} need CUDA kernels or torch.compile: "
                                 "set them false in a cpu profile")

    @property
    def resumes(self) -> bool:
        """A ckpt-resume case: phase 1 saves at save_interval, phase 2 resumes from it."""
        return self.test_type == "ckpt-resume"

    @property
    def phases(self) -> tuple[int, ...]:
        return (1, 2) if self.resumes else (1,)

    @property
    def nproc_per_node(self) -> int:
        return self.launch.nproc_per_node or self.parallelism.world_size // self.launch.nnodes

    @property
    def num_microbatches(self) -> int:
        return self.schedule.num_microbatches(self.parallelism.data_parallel_size)

    @property
    def padded_vocab_size(self) -> int:
        """Megatron's rule: pad to a multiple of make_vocab_size_divisible_by × TP."""
        multiple = self.model.make_vocab_size_divisible_by * self.parallelism.tensor_model_parallel_size
        return -(-self.data.vocab_size // multiple) * multiple

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["determinism"]["env"] = dict(self.determinism.env)
        out["megatron"] = copy.deepcopy(dict(self.megatron)) if self.megatron is not None else None
        return out

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, path: object = None) -> RunConfig:
        return _build_run_config(doc["case"], doc["profile"],
                                 {s: doc.get(s, {}) for s in SECTIONS}, path=path, where="",
                                 test_type=doc.get("test_type", "ckpt-resume"), megatron=doc.get("megatron"))

    def replace(self, **sections: Mapping[str, Any]) -> RunConfig:
        """A copy with some fields of some sections changed (CLI overrides, tests)."""
        doc = self.to_dict()
        for section, changes in sections.items():
            if section not in SECTIONS:
                raise ValueError(f"unknown section {section!r}")
            doc[section] = {**doc[section], **changes}
        return RunConfig.from_dict(doc)

    def training_hash(self) -> str:
        """sha256 of what decides the training trajectory (model, layout, schedule, optimizer, data,
        seed and determinism, test type) — not where or how long it runs, nor the checkpoint's
        format. Saved in every checkpoint and checked on resume: a checkpoint of another
        configuration is refused instead of resumed into a different run."""
        doc = self.to_dict()
        training = {name: doc[name] for name in ("model", "parallelism", "schedule", "optimizer", "data")}
        training["determinism"] = {k: v for k, v in doc["determinism"].items() if k != "env"}
        training["test_type"] = self.test_type
        canonical = json.dumps(training, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


SECTION_TYPES: dict[str, type] = {
    "model": ModelConfig, "parallelism": ParallelConfig, "schedule": ScheduleConfig,
    "optimizer": OptimizerConfig, "data": DataConfig, "determinism": DeterminismConfig,
    "checkpoint": CheckpointConfig, "launch": LaunchConfig,
}


def _build_section(name: str, raw: Any, *, path: object, where: str) -> Any:
    kind = SECTION_TYPES[name]
    key = f"{where}{name}"
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise FormatError(f"expected a mapping, got {type(raw).__name__}", path=path, key=key)
    allowed = [f.name for f in dataclasses.fields(kind)]
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise FormatError(f"unknown field(s) {unknown}; allowed: {', '.join(allowed)}", path=path, key=key)
    missing = [f.name for f in dataclasses.fields(kind)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               and f.name not in raw]
    if missing:
        raise FormatError(f"missing required field(s) {missing}", path=path, key=key)
    try:
        return kind(**raw)
    except (ValueError, TypeError) as exc:
        raise FormatError(str(exc), path=path, key=key) from None


def _build_run_config(case: str, profile: str, sections: Mapping[str, Any], *, path: object,
                      where: str, test_type: str = "ckpt-resume",
                      megatron: Mapping[str, Any] | None = None) -> RunConfig:
    built = {name: _build_section(name, sections.get(name), path=path, where=where) for name in SECTIONS}
    try:
        return RunConfig(case=case, profile=profile, test_type=test_type, megatron=megatron, **built)
    except ValueError as exc:
        raise FormatError(str(exc), path=path, key=f"profiles.{profile}" if profile else None) from None


def merge_sections(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Profile sections override base sections key by key (one level: sections are flat)."""
    merged = copy.deepcopy(dict(base))
    for name, values in override.items():
        if isinstance(values, Mapping) and isinstance(merged.get(name), Mapping):
            merged[name] = {**merged[name], **values}
        else:
            merged[name] = copy.deepcopy(values)
    return merged


@dataclass(frozen=True)
class CaseDefinition:
    """A parsed case: its sections, profiles and the untouched ``metrics`` policies; for a case
    defined by Megatron's model_config.yaml also the import (what became of every entry)."""

    name: str
    path: Path
    document: Mapping[str, Any]
    default_profile: str
    profiles: tuple[str, ...]
    metrics: Mapping[str, Any]
    test_type: str = "ckpt-resume"
    megatron: MegatronCase | None = None

    def base_sections(self) -> dict[str, Any]:
        """The sections every profile overrides: the Megatron import (if any), then case.yaml's."""
        doc = self.document
        own = {name: doc.get(name) or {} for name in SECTIONS}
        if self.megatron is None:
            return own
        return merge_sections(self.megatron.sections, own)

    def run_config(self, profile: str | None = None, **overrides: Mapping[str, Any]) -> RunConfig:
        chosen = profile or self.default_profile
        doc = self.document
        profiles = doc.get("profiles") or {}
        if chosen not in profiles:
            raise FormatError(f"unknown profile {chosen!r}; this case has: {', '.join(self.profiles)}",
                              path=self.path, key="profiles")
        preflight = self.megatron is not None and chosen == PREFLIGHT_PROFILE and self.megatron.preflight_ready
        if self.megatron is not None and not preflight:
            self.megatron.check_runnable()  # CaseRefused (exit 2) with every reason
        prof = profiles[chosen] or {}
        if not isinstance(prof, Mapping):
            raise FormatError("expected a mapping of sections", path=self.path, key=f"profiles.{chosen}")
        unknown = sorted(set(prof) - set(SECTIONS))
        if unknown:
            raise FormatError(f"unknown section(s) {unknown}; allowed: {', '.join(SECTIONS)}",
                              path=self.path, key=f"profiles.{chosen}")
        sections = merge_sections(merge_sections(self.base_sections(), prof), overrides)
        record = None
        if self.megatron is not None:
            record = self.megatron.record()
            if preflight:
                # A smoke run on substitutes: judged only on itself, never against the case's goldens.
                record = {**record, "substitutions": dict(self.megatron.substitutions)}
        return _build_run_config(self.name, chosen, sections, path=self.path, where=f"profiles.{chosen}.",
                                 test_type=self.test_type, megatron=record)


def parse_case(doc: Mapping[str, Any], *, name: str, path: Path) -> CaseDefinition:
    """Check the top level of a case document (sections are checked when a profile resolves).

    ``megatron: model_config.yaml`` (a file in the case folder) makes Megatron's own case file the
    base sections: case.yaml may then add fields that file does not set (the generated corpus,
    timeouts), but restating a field one of its flags sets is an error — no hand copies.
    """
    top = set(SECTIONS) | {"case", "description", "source", "test_type", "default_profile",
                           "profiles", "metrics", "megatron"}
    unknown = sorted(set(doc) - top)
    if unknown:
        raise FormatError(f"unknown top-level key(s) {unknown}", path=path)
    folder = name.rsplit("/", 1)[-1]  # a case's path in the store ends in its folder's name
    declared = doc.get("case", folder)
    if declared not in (folder, name):
        raise FormatError(f"case {declared!r} does not match its folder name {folder!r}", path=path, key="case")
    profiles = doc.get("profiles")
    if not isinstance(profiles, Mapping) or not profiles:
        raise FormatError("a case needs at least one profile", path=path, key="profiles")
    default = doc.get("default_profile", next(iter(profiles)))
    if default not in profiles:
        raise FormatError(f"default_profile {default!r} is not among the profiles", path=path,
                          key="default_profile")
    metrics = doc.get("metrics") or {}
    if not isinstance(metrics, Mapping):
        raise FormatError("expected a mapping of metric name to policy", path=path, key="metrics")
    megatron = _referenced_megatron_case(doc, name=name, path=path)
    test_type = doc.get("test_type", megatron.test_type if megatron is not None else "ckpt-resume")
    if megatron is not None and test_type != megatron.test_type:
        raise FormatError(f"test_type {test_type!r} contradicts the Megatron case's TEST_TYPE "
                          f"{megatron.test_type!r}: remove it", path=path, key="test_type")
    if megatron is None and test_type not in TEST_TYPES:
        raise FormatError(f"test_type must be one of {', '.join(TEST_TYPES)}, got {test_type!r}", path=path,
                          key="test_type")
    return CaseDefinition(name=name, path=path, document=doc, default_profile=default,
                          profiles=tuple(profiles), metrics=metrics, test_type=test_type, megatron=megatron)


def _referenced_megatron_case(doc: Mapping[str, Any], *, name: str, path: Path) -> MegatronCase | None:
    ref = doc.get("megatron")
    if ref is None:
        return None
    if not isinstance(ref, str) or Path(ref).name != ref or ref in (".", ".."):
        raise FormatError("expected the name of a file in the case folder (model_config.yaml)", path=path,
                          key="megatron")
    target = path.parent / ref
    if not target.is_file():
        raise FormatError(f"no such file {target}", path=path, key="megatron")
    megatron = import_model_config(load_yaml(target), name=name, path=target, folder=path.parent.resolve().parent.name)
    for section in SECTIONS:
        own = doc.get(section) or {}
        if not isinstance(own, Mapping):
            continue  # reported when a profile resolves
        restated = sorted(key for key in own if (section, key) in megatron.from_entries)
        if restated:
            raise FormatError(f"{section}.{restated[0]} is set by {ref}: remove it here (a profile may "
                              "change it)", path=path, key=f"{section}.{restated[0]}")
    return megatron


def megatron_case_definition(folder: str | Path, case: str | None = None) -> CaseDefinition:
    """A Megatron case folder as it is (``model_config.yaml`` and its goldens, no case.yaml):
    profiles ``full`` (the import) and ``cpu-tiny`` (the reviewed shrink), cpu-tiny by default;
    named ``case`` (its path in the store) when given, else by its folder."""
    megatron = load_model_config(folder)
    name = check_case_path(case) if case is not None else megatron.name
    profiles = {"full": {}, "cpu-tiny": cpu_tiny_shrink(megatron) if megatron.runnable else {}}
    if megatron.runnable and data_parallel_size(megatron) > 1:
        profiles[DP_PROFILE] = cpu_tiny_shrink(megatron, keep_data_parallel=True)
    if megatron.preflight_ready:
        profiles[PREFLIGHT_PROFILE] = cpu_tiny_shrink(megatron)
    doc = {"case": name, "profiles": profiles, "default_profile": "cpu-tiny"}
    return CaseDefinition(name=name, path=Path(folder) / MODEL_CONFIG_FILE, document=doc, default_profile="cpu-tiny",
                          profiles=tuple(profiles), metrics={}, test_type=megatron.test_type, megatron=megatron)


def load_case_definition(case_dir: str | Path, case: str | None = None) -> CaseDefinition:
    """``<case_dir>/case.yaml`` parsed and checked, or else a Megatron case folder's
    ``model_config.yaml`` imported; the case's name is its path in the store (``case``), else the
    folder's name."""
    folder = Path(case_dir)
    path = folder / CASE_FILE
    if not path.is_file():
        if (folder / MODEL_CONFIG_FILE).is_file():
            return megatron_case_definition(folder, case)
        raise FormatError(f"no case definition ({CASE_FILE} or Megatron's {MODEL_CONFIG_FILE}) in {folder}",
                          path=path)
    name = check_case_path(case) if case is not None else check_name(folder.name)
    return parse_case(load_yaml(path), name=name, path=path)


def locate_case(case: str, store: str | Path | None = None) -> tuple[Path, str | None]:
    """Where ``golden run CASE`` finds its case, and the case's path in the store (None for a folder
    given as such): CASE itself when it is a folder (absolute, or existing from here) holding a
    case.yaml or a Megatron model_config.yaml (``golden run path/to/test_cases/bert/<case>``); else
    the store's case of that path, or of that name where only one case has it."""
    from goldens.store import GoldenStore  # only the CLI locates a case: the ranks read configs without the store

    given = Path(case)
    if given.is_absolute() or given.is_dir():
        if not given.is_dir():
            raise FormatError(f"no such case folder {given}")
        if not ((given / CASE_FILE).is_file() or (given / MODEL_CONFIG_FILE).is_file()):
            raise FormatError(f"{given} holds neither {CASE_FILE} nor Megatron's {MODEL_CONFIG_FILE}")
        return given, None
    golden_store = GoldenStore(store)
    try:
        found = golden_store.resolve(case)
    except StoreError as exc:
        if "/" in case:
            raise FormatError(f"no such case folder {given} here, and {exc}") from None
        raise
    return golden_store.case_dir(found), found


def store_of_case(case: str, store: Path | None = None) -> Path | None:
    """Where ``golden check`` finds the case's golden: ``store`` when given; for a case given as a folder
    (``golden check path/to/test_cases/bert/<case>``, as ``locate_case`` takes it) the folder it lies in;
    else None, the usual store."""
    given = Path(case)
    if store is not None or not (given.is_absolute() or given.is_dir()):
        return store
    return given.parent


def case_folder(case: str, store: str | Path | None = None) -> Path:
    """The folder of ``locate_case``."""
    return locate_case(case, store)[0]


def resolve_run_config(case: str, store: str | Path | None = None, *, profile: str | None = None,
                       device: str | None = None, timeout: float | None = None, seed: int | None = None,
                       nnodes: int | None = None) -> RunConfig:
    """The case's profile with the command line's overrides (``golden run`` / ``golden check``), by the
    precedence above. A bad ``device`` or ``timeout`` is refused naming the option, not the case.yaml key
    it overrides."""
    if device is not None and device not in DEVICES:
        raise GoldenError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    if timeout is not None and not math.isfinite(timeout):
        raise GoldenError(f"--timeout must be a finite number of seconds, got {timeout!r}")
    folder, in_store = locate_case(case, store)
    definition = load_case_definition(folder, case=in_store)
    launch: dict[str, Any] = {}
    if device is not None:
        launch["device"] = device
    if timeout is not None:
        launch["phase_timeout_s"] = timeout
    if nnodes is not None:
        launch["nnodes"] = nnodes
    overrides: dict[str, Any] = {"launch": launch} if launch else {}
    if seed is not None:
        overrides["determinism"] = {"seed": seed}
    return definition.run_config(profile, **overrides)


def repeat_seeds(base: int, count: int, stride: int) -> list[int]:
    """The seeds of ``--repeat``: base, base + K, …, base + (N − 1)·K (K = 0: one seed N times, so the
    spread measured is the nondeterminism alone); refused when the last is above ``MAX_SEED``."""
    seeds = [base + index * stride for index in range(count)]
    if seeds and seeds[-1] > MAX_SEED:
        raise GoldenError(f"--repeat {count} would reach seed {seeds[-1]}, above the largest seed {MAX_SEED}")
    return seeds
