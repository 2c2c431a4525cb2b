"""Provenance of a run, and the fingerprint: a hash of everything that decides bit-exactness.

Fingerprint fields (recorded in the artifact next to the hash, so a comparison can name which
ones differ): the device (CPU model, the ISA extensions that change kernels, the SIMD level
torch dispatches to; or the GPU name, compute capability, CUDA/cuDNN/NCCL versions), library
versions (torch, megatron-core, numpy) and BLAS, the parallel layout and backend, thread
counts, the determinism flags and environment, and which fused kernels run (runner/kernels.py).
Not in it: host name, time, git commit,
anything about the case itself (model arguments are compared separately, as drift).

:func:`environment_fields` runs inside rank 0 (torch is loaded there); the rest is standard
library and runs in the launcher.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform as _platform
import re
import socket
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from .config import RunConfig
from .distributed import DETERMINISM_ENV

# x86/ARM feature flags that change which kernels (and so which float rounding) run.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw", "avx512vl",
             "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
             "asimd", "sve", "sve2", "bf16", "i8mm")
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def cpu_description() -> dict[str, Any]:
    """CPU model name and the ISA flags from /proc/cpuinfo (Linux; best effort elsewhere)."""
    model, flags = _platform.processor() or _platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model") and value.strip():
            model = value.strip()
        elif key in ("flags", "Features"):
            flags.update(value.split())
    return {"model": model, "machine": _platform.machine(), "isa": sorted(f for f in ISA_FLAGS if f in flags)}


def _blas() -> str:
    import torch

    config = torch.__config__.show()
    found = re.search(r"BLAS_INFO=(\w+)", config)
    mkl = re.search(r"Math Kernel Library Version ([\d.]+)", config)
    return f"{found.group(1) if found else 'unknown'}" + (f" {mkl.group(1)}" if mkl else "")


def environment_fields(cfg: RunConfig, kernels: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What decides bit-exactness here (called on rank 0 after the model is built)."""
    import numpy
    import torch
    from megatron.core import package_info

    if cfg.launch.device == "cuda":
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        device: dict[str, Any] = {"type": "cuda", "name": props.name,
                                  "capability": f"{props.major}.{props.minor}",
                                  "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                                  "nccl": ".".join(map(str, torch.cuda.nccl.version()))}
    else:
        device = {"type": "cpu", **cpu_description(),
                  "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}
    par = cfg.parallelism
    env = dict(cfg.determinism.env)
    if cfg.launch.device == "cuda":  # what the ranks run with, --deterministic-mode's defaults included
        env.update({k: os.environ[k] for k in ("NCCL_ALGO", *DETERMINISM_ENV) if k in os.environ})
    return {
        "device": device,
        "versions": {"torch": torch.__version__, "megatron-core": package_info.__version__,
                     "numpy": numpy.__version__},
        "blas": _blas(),
        "layout": {"world_size": par.world_size, "tp": par.tensor_model_parallel_size,
                   "pp": par.pipeline_model_parallel_size, "dp": par.data_parallel_size,
                   "backend": cfg.launch.backend, "nnodes": cfg.launch.nnodes},
        "threads": {"torch_intra_op": torch.get_num_threads(),
                    **{k.lower(): os.environ.get(k) for k in THREAD_ENV}},
        "determinism": {"deterministic_mode": cfg.determinism.deterministic_mode,
                        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
                        "env": dict(sorted(env.items()))},
        "kernels": dict(kernels or {}),
    }


def fingerprint(fields: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of the fields."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def platform_name(fields: Mapping[str, Any] | None, device: str) -> str:
    """The golden file platform for this run: ``cpu``, or Megatron's ``dgx_<gpu>`` naming."""
    if device != "cuda":
        return "cpu"
    name = str(((fields or {}).get("device") or {}).get("name", "gpu")).lower()
    for gpu in ("gb200", "b200", "h200", "h100", "a100"):
        if gpu in name:
            return f"dgx_{gpu}"
    return re.sub(r"[^a-z0-9]+", "_", name).strip("_") or "gpu"


def git_info(directory: Path) -> dict[str, Any]:
    """Commit, branch and dirtiness of the checkout holding ``directory`` (empty if not git)."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "branch": git("rev-parse", "--abbrev-ref", "HEAD"), "dirty": bool(status)}


def versions() -> dict[str, str]:
    """Library versions from package metadata (no torch import in the launcher)."""
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {"python": _platform.python_version(), "torch": version("torch"),
            "megatron-core": version("megatron-core"), "goldens": version("golden-toolkit")}


def model_args(cfg: RunConfig) -> dict[str, Any]:
    """The case's arguments as run (drift between a run and a golden is reported per key). A field
    the model families added (``config.FAMILY_FIELD``) is listed where it differs from its default,
    so a BERT run's arguments read as they did before families existed."""
    doc = cfg.to_dict()
    for section in ("model", "parallelism"):
        for f in dataclasses.fields(getattr(cfg, section)):
            if f.metadata.get("family_field") and doc[section][f.name] == f.default:
                del doc[section][f.name]
    return {section: doc[section] for section in ("model", "parallelism", "schedule", "optimizer", "data",
                                                  "checkpoint")} | {"determinism": {
        k: v for k, v in doc["determinism"].items() if k != "env"}}


def provenance(cfg: RunConfig, *, environment: Mapping[str, Any] | None, source_dir: Path) -> dict[str, Any]:
    """The artifact's provenance block (the fingerprint only when rank 0 reported its fields)."""
    par = cfg.parallelism
    device = cfg.launch.device
    if environment and device == "cuda":
        device = f"cuda:{environment['device']['name']}"
    out: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_info(source_dir),
        "host": socket.gethostname(),
        "device": device,
        "platform": platform_name(environment, cfg.launch.device),
        "world_size": par.world_size, "tp": par.tensor_model_parallel_size,
        "pp": par.pipeline_model_parallel_size, "dp": par.data_parallel_size,
        "seed": cfg.determinism.seed,
        "profile": cfg.profile,
        "versions": versions(),
        "model_args": model_args(cfg),
        "test_type": cfg.test_type,
        "command": " ".join(sys.argv),
        # the data is the runner's own (runner/data.py): goldens of real-data runs are not references
        "corpus": "generated",
    }
    if cfg.megatron is not None:
        # every model_config.yaml entry: mapped to which field, or waived / refused and why
        out["megatron_case"] = dict(cfg.megatron)
    if environment:
        out["fingerprint"] = fingerprint(environment)
        out["fingerprint_fields"] = dict(environment)
    return out
