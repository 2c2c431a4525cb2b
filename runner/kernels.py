"""Which fused kernels a run uses: Megatron-LM's choices where the kernel is there, the unfused
path (recorded) where it is not — decided without a GPU, so a plain GPU host starts.

Megatron-LM turns on, by default, kernels that megatron-core does not ship:

- ``masked_softmax_fusion``: Apex's ``scaled_masked_softmax_cuda`` extension. megatron-core's
  ``FusedScaleMaskSoftmax.is_kernel_available`` imports it when a bf16/fp16 input has shapes the
  kernel takes, and raises ``ModuleNotFoundError`` where it is missing — no fallback. BERT's
  shapes always qualify (:func:`softmax_kernel_applies`), so without Apex the run crashes at the
  first attention unless the fusion is off;
- ``persist_layer_norm``: the local spec takes Apex's ``FusedLayerNorm`` when ``apex`` imports and
  megatron's ``WrappedTorchNorm`` otherwise, which refuses ``persist_layer_norm=True``;
- ``gradient_accumulation_fusion``: Apex's ``fused_weight_gradient_mlp_cuda``;
- ``bias_activation_fusion`` / ``bias_dropout_fusion``: functions megatron.core.jit compiles with
  ``torch.compile`` (torch ≥ 2.2, Megatron's jit fuser, left as megatron binds it on CUDA), whose
  GPU backend needs ``triton``.

:func:`decide` looks each one up with ``importlib.util.find_spec`` (no import of torch or a GPU
needed) and returns a :class:`KernelChoice` per fusion: requested by the case, used or not, and
why. The run uses the effective values (:func:`effective`), and the choices go into the
fingerprint's fields (rank 0's environment.json, the artifact's provenance). On CPU every fusion
must already be off (RunConfig refuses them in a cpu profile); the CPU compatibility layer's own
fuser switch (``compat.skip_jit_fuser_binding``) is applied on CPU only.

:func:`warmup_jit_functions` replays Megatron-LM's ``_warmup_jit_function`` on CUDA (called
unconditionally by its ``pretrain`` after seeding): the compiled bias-GeLU and bias-dropout-add
run 10 times each on random CUDA tensors, which also advances the default CUDA generator the
non-tracker dropouts draw from — skipping it would shift every later random number.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

SOFTMAX_MODULE = "scaled_masked_softmax_cuda"
GRAD_ACCUM_MODULE = "fused_weight_gradient_mlp_cuda"
APEX = "apex"
TRITON = "triton"

FindSpec = Callable[[str], Any]


@dataclass(frozen=True)
class KernelChoice:
    requested: bool  # what the case asks for (Megatron-LM's defaults unless a flag says otherwise)
    used: bool  # what this run does
    detail: str  # which implementation runs, and why

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _available(name: str, find_spec: FindSpec) -> bool:
    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):  # a broken parent package, or a module without a spec
        return False


def softmax_batch_per_block(sk: int) -> int:
    """Apex's ``get_batch_per_block`` for the masked softmax kernel (scaled_masked_softmax.h): rows
    handled by one 128-thread block, from the padded key length."""
    pow2 = 1 << max(0, (sk - 1).bit_length())
    warp = min(pow2, 32)
    batches_per_warp = 2 if pow2 <= 128 else 1
    return (128 // warp) * batches_per_warp


def softmax_kernel_applies(*, half_precision: bool, batch: int, heads: int, sq: int, sk: int) -> bool:
    """megatron-core's ``FusedScaleMaskSoftmax.is_kernel_available`` for a padding mask (BERT):
    whether a fused-softmax run would take (and so import) the Apex kernel for these shapes."""
    if not (half_precision and 16 < sk <= 4096 and sq % 4 == 0 and sk % 4 == 0 and (batch * heads) % 4 == 0):
        return False
    return sq % softmax_batch_per_block(sk) == 0


def decide(cfg: Any, *, find_spec: FindSpec = importlib.util.find_spec) -> dict[str, KernelChoice]:
    """Each fusion of ``cfg.model``: requested, used, why (see the module docstring)."""
    m = cfg.model
    if cfg.launch.device != "cuda":
        return {name: KernelChoice(getattr(m, name), False, "off: a CPU run uses torch's own kernels")
                for name in ("masked_softmax_fusion", "persist_layer_norm", "gradient_accumulation_fusion",
                             "bias_activation_fusion", "bias_dropout_fusion")}
    choices: dict[str, KernelChoice] = {}
    half = m.precision in ("bf16", "fp16")
    heads = m.num_attention_heads // cfg.parallelism.tensor_model_parallel_size
    applies = softmax_kernel_applies(half_precision=half, batch=cfg.schedule.micro_batch_size, heads=heads,
                                     sq=m.seq_length, sk=m.seq_length)
    softmax_there = _available(SOFTMAX_MODULE, find_spec)
    if not m.masked_softmax_fusion:
        choices["masked_softmax_fusion"] = KernelChoice(False, False, "torch softmax: the case turns the fusion off")
    elif not applies:
        choices["masked_softmax_fusion"] = KernelChoice(
            True, False, "torch softmax: the case's input (precision, shapes) never takes the fused kernel")
    elif softmax_there:
        choices["masked_softmax_fusion"] = KernelChoice(True, True, f"fused: Apex's {SOFTMAX_MODULE}")
    else:
        choices["masked_softmax_fusion"] = KernelChoice(
            True, False, f"unfused torch softmax: {SOFTMAX_MODULE} is not importable (NVIDIA Apex built with its "
                         "CUDA extensions provides it; megatron-core would raise ModuleNotFoundError)")
    apex_there = _available(APEX, find_spec)
    if apex_there:
        choices["persist_layer_norm"] = KernelChoice(
            m.persist_layer_norm, m.persist_layer_norm,
            "Apex FusedLayerNorm" + (" (persistent kernel where megatron-core supports the hidden size)"
                                     if m.persist_layer_norm else ""))
    else:
        choices["persist_layer_norm"] = KernelChoice(
            m.persist_layer_norm, False, "torch LayerNorm (megatron's WrappedTorchNorm): Apex is not installed")
    if not m.gradient_accumulation_fusion:
        choices["gradient_accumulation_fusion"] = KernelChoice(False, False, "plain weight-gradient GEMMs")
    elif _available(GRAD_ACCUM_MODULE, find_spec):
        choices["gradient_accumulation_fusion"] = KernelChoice(True, True, f"fused: Apex's {GRAD_ACCUM_MODULE}")
    else:
        choices["gradient_accumulation_fusion"] = KernelChoice(
            True, False, f"plain weight-gradient GEMMs: {GRAD_ACCUM_MODULE} is not importable (Apex)")
    compiles = _available(TRITON, find_spec)
    for name, fused, unfused in (
            ("bias_activation_fusion", "fused bias + GeLU (tanh approximation)", "bias add, then F.gelu (exact erf)"),
            ("bias_dropout_fusion", "fused bias + dropout + residual add", "bias add, dropout, residual add")):
        if not getattr(m, name):
            choices[name] = KernelChoice(False, False, f"{unfused}: the case turns the fusion off")
        elif compiles:
            choices[name] = KernelChoice(True, True, f"{fused}, compiled by megatron.core.jit's fuser (torch.compile)")
        else:
            choices[name] = KernelChoice(True, False, f"{unfused}: torch.compile's GPU backend needs triton, which "
                                                      "is not importable")
    return choices


def effective(cfg: Any, choices: Mapping[str, KernelChoice]) -> dict[str, bool]:
    """The fusion flags this run passes to megatron-core."""
    return {name: choice.used for name, choice in choices.items()}


def record(choices: Mapping[str, KernelChoice], *, warmup: str | None = None,
           optimizer: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {name: choice.to_json() for name, choice in sorted(choices.items())}
    if warmup is not None:
        out["jit_warmup"] = warmup
    if optimizer is not None:
        out["optimizer"] = optimizer
    return out


def optimizer_choice(device: str, optimizer: Any = None) -> str | None:
    """Which Adam megatron-core's optimizer chose on CUDA: Transformer Engine's FusedAdam, Apex's, or
    torch's Adam/AdamW when neither is installed (megatron.core.optimizer's import-time fallback).
    Each rounds differently, so it is part of the fingerprint. None on CPU, where torch's is the
    only one (and a CPU run's fingerprint stays what it was)."""
    if device != "cuda":
        return None
    from megatron.core import optimizer as mcore_optimizer

    if mcore_optimizer.USING_PYTORCH_OPTIMIZER:
        chosen = "torch (Transformer Engine and Apex absent: megatron-core's fallback)"
    else:
        chosen = f"{mcore_optimizer.Adam.__module__}.{mcore_optimizer.Adam.__name__}"
    inner = getattr(optimizer, "optimizer", None)
    return chosen if inner is None else f"{chosen}; instance {type(inner).__module__}.{type(inner).__name__}"


def warmup_jit_functions(cfg: Any, choices: Mapping[str, KernelChoice]) -> str:
    """Megatron-LM's JIT warm-up on CUDA (see the module docstring); returns what it did."""
    if cfg.launch.device != "cuda":
        return "not run: CPU"
    if not _available(TRITON, importlib.util.find_spec):
        return "not run: torch.compile cannot compile for the GPU without triton (Megatron-LM would fail here)"
    import torch
    from megatron.core.fusions.fused_bias_dropout import bias_dropout_add_fused_train
    from megatron.core.fusions.fused_bias_gelu import bias_gelu

    m, tp = cfg.model, cfg.parallelism.tensor_model_parallel_size
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(m.precision, torch.float32)
    seq, mbs, ffn = m.seq_length, cfg.schedule.micro_batch_size, m.ffn_size // tp
    bias = torch.rand(ffn, dtype=dtype, device="cuda")
    inputs = torch.rand((seq, mbs, ffn), dtype=dtype, device="cuda")
    for input_grad in (False, True):  # the forward pass's and recomputation's grad modes
        bias.requires_grad, inputs.requires_grad = True, input_grad
        for _ in range(5):
            bias_gelu(bias, inputs)
    hidden = torch.rand((seq, mbs, m.hidden_size), dtype=dtype, device="cuda")
    residual = torch.rand((seq, mbs, m.hidden_size), dtype=dtype, device="cuda")
    bias = torch.rand(m.hidden_size, dtype=dtype, device="cuda").expand_as(residual)
    for input_grad in (False, True):
        hidden.requires_grad, bias.requires_grad, residual.requires_grad = input_grad, True, True
        for _ in range(5):
            bias_dropout_add_fused_train([hidden, bias], residual, 0.1)
    del bias, inputs, hidden, residual
    torch.cuda.empty_cache()
    return "run: bias-GeLU and bias-dropout-add, 10 calls each (Megatron-LM's _warmup_jit_function)"
