"""The case as typed configuration: one small dataclass per concern, validated on construction.

A ``case.yaml`` holds base sections (``model``, ``parallelism``, ``schedule``, ``optimizer``,
``data``, ``determinism``, ``checkpoint``, ``launch``) plus ``profiles`` whose sections override
the base key by key; :func:`load_run_config` resolves one profile into a :class:`RunConfig`.
The ``metrics`` section (tolerance policies) is carried through untouched for the comparison
engine. Precedence, stated once: command-line options > the chosen profile > base sections >
the dataclass defaults.

Only the standard library is imported here: the CLI and the torchrun entry read configs before
torch is imported.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from goldens.errors import FormatError

DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")
LR_DECAY_STYLES = ("constant", "linear", "cosine", "inverse-square-root")
CHECKPOINT_FORMATS = ("torch_dist",)
# numpy takes seeds below 2**32 and each rank adds offsets to the case's seed (100 per pipeline
# stage, megatron's 2718 + tensor rank): 2**31 - 1 leaves room for any layout.
MAX_SEED = 2**31 - 1
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
    """The BERT architecture (Megatron's --num-layers, --hidden-size, ... by their names)."""

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
    # Megatron-LM turns these on by default; each routes through megatron.core.jit's fuser.
    bias_dropout_fusion: bool = False
    bias_activation_fusion: bool = False
    masked_softmax_fusion: bool = False

    def __post_init__(self) -> None:
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
                             "megatron-core's bert_layer_local_spec ('local')")
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
        return tuple(name for name in ("bias_dropout_fusion", "bias_activation_fusion",
                                       "masked_softmax_fusion") if getattr(self, name))


@dataclass(kw_only=True, slots=True, frozen=True)
class ParallelConfig:
    """Tensor × pipeline × data parallel; data parallel is derived from the world size."""

    tensor_model_parallel_size: int
    pipeline_model_parallel_size: int
    world_size: int

    def __post_init__(self) -> None:
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


@dataclass(kw_only=True, slots=True, frozen=True)
class ScheduleConfig:
    """Iterations and batch sizes. Phase 1 trains 1..train_iters and saves at ``save_interval``;
    phase 2 resumes from that checkpoint in fresh processes and trains to train_iters."""

    train_iters: int
    save_interval: int
    micro_batch_size: int
    global_batch_size: int

    def __post_init__(self) -> None:
        for name in ("train_iters", "save_interval", "micro_batch_size", "global_batch_size"):
            _positive(name, getattr(self, name))
        if not self.save_interval < self.train_iters:
            raise ValueError(f"save_interval {self.save_interval} must be below train_iters "
                             f"{self.train_iters} so that phase 2 has steps to resume")

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

    def warmup_iters(self, decay_iters: int) -> int:
        if self.lr_warmup_fraction is not None:
            return int(self.lr_warmup_fraction * decay_iters)
        return self.lr_warmup_iters


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
    """dist_checkpointing with the torch_dist backend, saved synchronously."""

    format: str = "torch_dist"
    writer_processes: int = 1  # files (and forked writers) per rank and save

    def __post_init__(self) -> None:
        if self.format not in CHECKPOINT_FORMATS:
            raise ValueError(f"checkpoint format must be one of {', '.join(CHECKPOINT_FORMATS)}, "
                             f"got {self.format!r}")
        _positive("writer_processes", self.writer_processes)


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

    def __post_init__(self) -> None:
        model, par = self.model, self.parallelism
        tp, pp = par.tensor_model_parallel_size, par.pipeline_model_parallel_size
        if model.num_attention_heads % tp:
            raise ValueError(f"num_attention_heads {model.num_attention_heads} must be divisible by "
                             f"tensor_model_parallel_size {tp}")
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
        return out

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, path: object = None) -> "RunConfig":
        return _build_run_config(doc["case"], doc["profile"],
                                 {s: doc.get(s, {}) for s in SECTIONS}, path=path, where="")

    def replace(self, **sections: Mapping[str, Any]) -> "RunConfig":
        """A copy with some fields of some sections changed (CLI overrides, tests)."""
        doc = self.to_dict()
        for section, changes in sections.items():
            if section not in SECTIONS:
                raise ValueError(f"unknown section {section!r}")
            doc[section] = {**doc[section], **changes}
        return RunConfig.from_dict(doc)


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
                      where: str) -> RunConfig:
    built = {name: _build_section(name, sections.get(name), path=path, where=where) for name in SECTIONS}
    try:
        return RunConfig(case=case, profile=profile, **built)
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
    """A parsed case.yaml: its sections, profiles and the untouched ``metrics`` policies."""

    name: str
    path: Path
    document: Mapping[str, Any]
    default_profile: str
    profiles: tuple[str, ...]
    metrics: Mapping[str, Any]

    def run_config(self, profile: str | None = None, **overrides: Mapping[str, Any]) -> RunConfig:
        chosen = profile or self.default_profile
        doc = self.document
        profiles = doc.get("profiles") or {}
        if chosen not in profiles:
            raise FormatError(f"unknown profile {chosen!r}; this case has: {', '.join(self.profiles)}",
                              path=self.path, key="profiles")
        prof = profiles[chosen] or {}
        if not isinstance(prof, Mapping):
            raise FormatError("expected a mapping of sections", path=self.path, key=f"profiles.{chosen}")
        unknown = sorted(set(prof) - set(SECTIONS))
        if unknown:
            raise FormatError(f"unknown section(s) {unknown}; allowed: {', '.join(SECTIONS)}",
                              path=self.path, key=f"profiles.{chosen}")
        base = {name: doc.get(name) or {} for name in SECTIONS}
        sections = merge_sections(merge_sections(base, prof), overrides)
        return _build_run_config(self.name, chosen, sections, path=self.path,
                                 where=f"profiles.{chosen}.")


def parse_case(doc: Mapping[str, Any], *, name: str, path: Path) -> CaseDefinition:
    """Check the top level of a case document (sections are checked when a profile resolves)."""
    top = set(SECTIONS) | {"case", "description", "source", "test_type", "default_profile",
                           "profiles", "metrics"}
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
    return CaseDefinition(name=name, path=path, document=doc, default_profile=default,
                          profiles=tuple(profiles), metrics=metrics)


def load_case_definition(case_dir: str | Path, case: str | None = None) -> CaseDefinition:
    """``<case_dir>/case.yaml`` parsed and checked; the case's name is its path in the store
    (``case``), else the folder's name."""
    from goldens.case import CASE_FILE, check_case_path, check_name, load_yaml

    folder = Path(case_dir)
    path = folder / CASE_FILE
    if not path.is_file():
        raise FormatError(f"no case definition ({CASE_FILE}) in {folder}", path=path)
    name = check_case_path(case) if case is not None else check_name(folder.name)
    return parse_case(load_yaml(path), name=name, path=path)


# ---------------------------------------------------------------- Megatron model_config.yaml

# Megatron CLI flag → (section, field). Flags not listed are recorded as ignored.
MEGATRON_FLAGS: dict[str, tuple[str, str]] = {
    "--num-layers": ("model", "num_layers"),
    "--hidden-size": ("model", "hidden_size"),
    "--ffn-hidden-size": ("model", "ffn_hidden_size"),
    "--num-attention-heads": ("model", "num_attention_heads"),
    "--seq-length": ("model", "seq_length"),
    "--max-position-embeddings": ("model", "max_position_embeddings"),
    "--make-vocab-size-divisible-by": ("model", "make_vocab_size_divisible_by"),
    "--hidden-dropout": ("model", "hidden_dropout"),
    "--attention-dropout": ("model", "attention_dropout"),
    "--init-method-std": ("model", "init_method_std"),
    "--attention-backend": ("model", "attention_backend"),
    "--spec": ("model", "layer_spec"),
    "--tensor-model-parallel-size": ("parallelism", "tensor_model_parallel_size"),
    "--pipeline-model-parallel-size": ("parallelism", "pipeline_model_parallel_size"),
    "--train-iters": ("schedule", "train_iters"),
    "--save-interval": ("schedule", "save_interval"),
    "--micro-batch-size": ("schedule", "micro_batch_size"),
    "--global-batch-size": ("schedule", "global_batch_size"),
    "--lr": ("optimizer", "lr"),
    "--min-lr": ("optimizer", "min_lr"),
    "--lr-warmup-fraction": ("optimizer", "lr_warmup_fraction"),
    "--lr-warmup-iters": ("optimizer", "lr_warmup_iters"),
    "--lr-decay-iters": ("optimizer", "lr_decay_iters"),
    "--lr-decay-style": ("optimizer", "lr_decay_style"),
    "--weight-decay": ("optimizer", "weight_decay"),
    "--clip-grad": ("optimizer", "clip_grad"),
    "--adam-beta1": ("optimizer", "adam_beta1"),
    "--adam-beta2": ("optimizer", "adam_beta2"),
    "--adam-eps": ("optimizer", "adam_eps"),
    "--seed": ("determinism", "seed"),
    "--deterministic-mode": ("determinism", "deterministic_mode"),
    "--mask-prob": ("data", "mask_prob"),
    "--short-seq-prob": ("data", "short_seq_prob"),
}
MEGATRON_SWITCHES = {  # boolean flags that set a field to a fixed value
    "--bf16": ("model", "precision", "bf16"),
    "--fp16": ("model", "precision", "fp16"),
    "--bert-no-binary-head": ("model", "binary_head", False),
    "--untie-embeddings-and-output-weights": ("model", "untie_embeddings_and_output_weights", True),
    "--no-bias-dropout-fusion": ("model", "bias_dropout_fusion", False),
    "--no-bias-gelu-fusion": ("model", "bias_activation_fusion", False),
    "--no-masked-softmax-fusion": ("model", "masked_softmax_fusion", False),
}
# What Megatron-LM's argument parser defaults to where megatron-core's do not.
MEGATRON_DEFAULTS = {"model": {"bias_dropout_fusion": True, "bias_activation_fusion": True,
                               "masked_softmax_fusion": True}}


@dataclass(frozen=True)
class MegatronImport:
    """A Megatron functional-test config translated into our sections."""

    sections: dict[str, dict[str, Any]]
    test_type: str | None
    ignored_flags: tuple[str, ...]


def from_megatron_model_config(doc: Mapping[str, Any], *, path: object = None) -> MegatronImport:
    """Translate Megatron's ``model_config.yaml`` (ENV_VARS, MODEL_ARGS, TEST_TYPE) into sections.

    The world size is not in Megatron's file (its CI picks the GPU count), so it is left to the
    caller; ``${VAR}`` paths (data, checkpoints, tensorboard) belong to the runner and are ignored.
    """
    if not isinstance(doc, Mapping):
        raise FormatError("expected a mapping", path=path)
    args = doc.get("MODEL_ARGS") or {}
    if not isinstance(args, Mapping):
        raise FormatError("expected a mapping of flags", path=path, key="MODEL_ARGS")
    sections: dict[str, dict[str, Any]] = {k: dict(v) for k, v in MEGATRON_DEFAULTS.items()}
    ignored = []
    for flag, value in args.items():
        if flag in MEGATRON_FLAGS:
            section, name = MEGATRON_FLAGS[flag]
            if name == "deterministic_mode":
                value = bool(value)
            sections.setdefault(section, {})[name] = value
        elif flag in MEGATRON_SWITCHES and value is True:
            section, name, fixed = MEGATRON_SWITCHES[flag]
            sections.setdefault(section, {})[name] = fixed
        else:
            ignored.append(flag)
    if "ffn_hidden_size" not in sections.get("model", {}):
        sections.setdefault("model", {})["ffn_hidden_size"] = None
    env = doc.get("ENV_VARS") or {}
    if not isinstance(env, Mapping):
        raise FormatError("expected a mapping", path=path, key="ENV_VARS")
    if env:
        sections.setdefault("determinism", {})["env"] = {str(k): str(v) for k, v in env.items()}
    test_type = doc.get("TEST_TYPE")
    return MegatronImport(sections=sections, test_type=None if test_type is None else str(test_type),
                          ignored_flags=tuple(ignored))
