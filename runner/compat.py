"""CPU compatibility layer: lets unmodified megatron-core 0.16 train on a CPU-only torch.

megatron-core assumes CUDA in a handful of places. Each shim below names the call sites it
serves and is unit-tested (tests/test_runner_compat.py). None is applied on CUDA: the runner
calls :func:`install` only when the device is ``cpu``, and :func:`install` refuses to run where
CUDA is available, so a GPU run is always stock megatron-core. A CPU run on a GPU host starts its
ranks with ``CUDA_VISIBLE_DEVICES=""`` (``launch._child_env``): they see a CPU-only host.

Also here, because it must happen before megatron-core is imported:
:func:`skip_jit_fuser_binding` (an import hook, CPU only; see its docstring for why it is safe).

This module imports only the standard library at module level; torch is imported inside the
functions, so the torchrun entry can install the import hook before anything heavy loads.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Iterator
from typing import Any

JIT_MODULE = "megatron.core.jit"
_installed: dict[str, Any] = {}


# ---------------------------------------------------------------- import-time: the jit fuser

class _DisableFuserAfterExec(importlib.abc.Loader):
    """Runs megatron.core.jit as usual, then calls its own public ``disable_jit_fuser()``."""

    def __init__(self, inner: importlib.abc.Loader):
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self.inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.inner.exec_module(module)
        module.disable_jit_fuser()


class _JitFuserFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != JIT_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _DisableFuserAfterExec(spec.loader)
        return spec


def skip_jit_fuser_binding() -> None:
    """Make megatron.core.jit's ``jit_fuser`` a no-op decorator before any module uses it.

    Why: megatron.core.jit sets ``jit_fuser = torch.compile`` at import, and ~20 modules decorate
    functions with it while megatron.core is imported; each decoration imports dynamo/inductor
    (~3 s per rank on 2 cores, 4 ranks, two phases). ``disable_jit_fuser()`` is megatron's own
    switch, but megatron.core's package ``__init__`` imports those modules before user code can
    call it — so this import hook calls it the moment megatron.core.jit has executed.

    Why it is safe on CPU: the decorated functions (fused bias-dropout-add, bias-gelu/geglu/swiglu,
    openai/erf gelu, the attention output gate, MoE helpers) run only when a fusion flag or a
    feature this runner does not use is on; the CPU profile's config forbids the fusion flags
    (RunConfig rejects them), so no decorated function executes and the numerics are unchanged.
    Installed only for CPU runs; must run before megatron.core is imported (it is a no-op after).
    """
    if JIT_MODULE in sys.modules or any(isinstance(f, _JitFuserFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _JitFuserFinder())


# ---------------------------------------------------------------- run-time shims

def _is_cuda_device(device: Any) -> bool:
    import torch

    if isinstance(device, str):
        return device == "cuda" or device.startswith("cuda:")
    if isinstance(device, torch.device):
        return device.type == "cuda"
    return isinstance(device, int) and not isinstance(device, bool)  # a bare index means a GPU


def _device_redirect_mode() -> Any:
    """A TorchFunctionMode that turns CUDA placements into CPU ones.

    Serves: ``device='cuda'`` literals (pipeline schedules' token counters, clip_grads' norm and
    zero-count buffers, the optimizer's found-inf/scale tensors), ``device=<int>`` indices, and
    ``Tensor.cuda()`` (the word-embedding all-reduce between the first and last pipeline stage,
    the grad scaler), plus ``Tensor.to('cuda')`` and ``Tensor.type()`` as used by clip_grads'
    assertion ``grad.type() == 'torch.cuda.FloatTensor'`` (answered for CPU float32 tensors only).
    """
    import torch
    from torch.overrides import TorchFunctionMode

    class CudaToCpu(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is torch.Tensor.cuda:
                return args[0]
            if func is torch.Tensor.type and len(args) == 1 and not kwargs:
                tensor = args[0]
                if tensor.device.type == "cpu" and tensor.dtype == torch.float32:
                    return "torch.cuda.FloatTensor"
            if "device" in kwargs and _is_cuda_device(kwargs["device"]):
                kwargs = {**kwargs, "device": "cpu"}
            if func is torch.Tensor.to and len(args) > 1 and _is_cuda_device(args[1]):
                args = (args[0], "cpu", *args[2:])
            return func(*args, **kwargs)

    return CudaToCpu()


class CpuRNGStatesTracker:
    """The CPU twin of megatron's CudaRNGStatesTracker: named generator states, forked by name.

    Megatron forks its 'model-parallel-rng' CUDA generator around attention dropout (even at
    p=0) and embedding dropout; here the states are CPU generator states and ``fork`` swaps the
    default CPU generator. Same interface (add/fork/get_states/set_states/reset/is_initialized),
    so checkpointing ``get_states()`` works unchanged.
    """

    def __init__(self) -> None:
        self.reset()

    def is_initialized(self) -> bool:
        return self._is_initialized

    def reset(self) -> None:
        self._is_initialized = False
        self.states_: dict[str, Any] = {}
        self.seeds_: set[int] = set()

    def get_states(self) -> dict[str, Any]:
        return dict(self.states_)

    def set_states(self, states: dict[str, Any]) -> None:
        self._is_initialized = True
        self.states_ = dict(states)

    def add(self, name: str, seed: int) -> None:
        import torch

        self._is_initialized = True
        if seed in self.seeds_:
            raise ValueError(f"seed {seed} already exists")
        if name in self.states_:
            raise ValueError(f"rng state {name} already exists")
        self.seeds_.add(seed)
        generator = torch.Generator(device="cpu")
        generator.manual_seed(seed)
        self.states_[name] = generator.get_state()

    @contextlib.contextmanager
    def fork(self, name: str = "model-parallel-rng") -> Iterator[None]:
        import torch

        if name not in self.states_:
            raise KeyError(f"rng state {name} is not added")
        outer = torch.get_rng_state()
        torch.set_rng_state(self.states_[name])
        try:
            yield
        finally:
            self.states_[name] = torch.get_rng_state()
            torch.set_rng_state(outer)


def model_parallel_cpu_manual_seed(seed: int, tp_rank: int, ep_rank: int = 0, etp_rank: int = 0) -> None:
    """CPU version of megatron's ``model_parallel_cuda_manual_seed`` with the same seed offsets:
    default generator = seed, 'model-parallel-rng' = seed + 2718 + tp_rank, 'data-parallel-rng'
    = seed, 'expert-parallel-rng' = seed + 1024 + 100·ep_rank + etp_rank."""
    import torch
    from megatron.core.tensor_parallel import random as mrandom

    tracker = mrandom.get_cuda_rng_tracker()
    if not isinstance(tracker, CpuRNGStatesTracker):
        raise RuntimeError("install() the CPU compatibility layer before seeding")
    tracker.reset()
    torch.manual_seed(seed)
    tracker.add(mrandom._DATA_PARALLEL_RNG_TRACKER_NAME, seed)
    tracker.add(mrandom._MODEL_PARALLEL_RNG_TRACKER_NAME, seed + 2718 + tp_rank)
    tracker.add(mrandom._EXPERT_PARALLEL_RNG_TRACKER_NAME, seed + 1024 + 100 * ep_rank + etp_rank)


def install() -> None:
    """Apply every run-time shim (idempotent). Refuses where CUDA is available."""
    import torch

    if torch.cuda.is_available():
        raise RuntimeError("the CPU compatibility layer must not be installed where CUDA is available")
    if _installed:
        return
    from megatron.core.tensor_parallel import random as mrandom

    # torch.cuda.current_device() used as a device: p2p receive buffers, the param-and-grad
    # buffer, GlobalMemoryBuffer, broadcast_data, the torch_dist saver.
    _installed["current_device"] = torch.cuda.current_device
    # A device where torch's stub says int: on purpose, megatron passes the result as a device.
    torch.cuda.current_device = lambda: torch.device("cpu")  # type: ignore[assignment,return-value]
    # torch.cuda.synchronize(): p2p communication, DDP, checkpoint preloading.
    _installed["synchronize"] = torch.cuda.synchronize
    torch.cuda.synchronize = lambda device=None: None
    # The RNG tracker: megatron's reads/writes CUDA generator states.
    _installed["tracker"] = (mrandom._CUDA_RNG_STATE_TRACKER, mrandom._CUDA_RNG_STATE_TRACKER_INITIALIZED)
    mrandom._CUDA_RNG_STATE_TRACKER = CpuRNGStatesTracker()
    mrandom._CUDA_RNG_STATE_TRACKER_INITIALIZED = True
    # Hard-coded device='cuda' and Tensor.cuda(): a process-wide torch function mode.
    mode = _device_redirect_mode()
    mode.__enter__()
    _installed["mode"] = mode


def uninstall() -> None:
    """Undo :func:`install` (tests; a training process keeps the layer until it exits)."""
    if not _installed:
        return
    import torch
    from megatron.core.tensor_parallel import random as mrandom

    _installed.pop("mode").__exit__(None, None, None)
    torch.cuda.current_device = _installed.pop("current_device")
    torch.cuda.synchronize = _installed.pop("synchronize")
    mrandom._CUDA_RNG_STATE_TRACKER, mrandom._CUDA_RNG_STATE_TRACKER_INITIALIZED = _installed.pop("tracker")


def installed() -> bool:
    return bool(_installed)
