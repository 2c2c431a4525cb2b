"""Load one of our legacy ``torch`` checkpoints with Megatron-LM's own loading code, on CPU.

    python tools/megatron_load_check.py <Megatron-LM git dir> <checkpoint root> RUN_ARGS_JSON [--commit C]

Extracts ``megatron/`` of the given commit (Megatron-LM's code is never kept in this repository)
into a temporary folder and, in a fresh interpreter that imports it instead of the installed
megatron-core, runs ``megatron.training.checkpointing``: ``read_metadata`` on the tracker,
``load_args_from_checkpoint`` (its rank-0 ``_load_base_checkpoint``) into an empty args namespace,
``check_checkpoint_args`` of the checkpoint against the run's own arguments (RUN_ARGS_JSON: the
Megatron arguments the resuming run has, e.g. ``{"num_layers": 4, ...}``) as a run with a vocab
file compares them, then ``_load_base_checkpoint`` for every (tensor, pipeline) rank's file and the
data position ``load_checkpoint`` reads. Prints one JSON line: what Megatron read. Exit 0 when
every step passed, 1 when Megatron's code refused the checkpoint, 2 on usage errors.

Stubbed, and only these (:data:`STUBS`), because they cannot run on a CPU host and checkpoint
loading never calls them: the Triton kernels of MoE's paged stash and of the Mamba/SSM ops (Triton
is a GPU compiler and is not installed), ``typing.override`` (Python 3.12; Megatron's
``training/models/hybrid.py`` imports it, and on 3.11 ``typing_extensions.override`` is the same
no-op decorator), and, for the per-rank load, ``checkpointing.mpu``'s rank queries (parallel state
needs an initialised process group; the stub answers the rank whose file is being loaded).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

STUBS = {
    "megatron.core.transformer.moe.ops.paged_stash": "Triton GPU kernel (MoE paged stash); triton absent on CPU",
    "megatron.core.ssm.ops": "Triton GPU kernels (Mamba causal conv / SSD); triton absent on CPU",
    "typing.override": "Python 3.12 decorator imported by training/models/hybrid.py; typing_extensions' on 3.11",
    "checkpointing.mpu (rank queries)": "parallel state needs a process group; answers the rank being loaded",
}

CHILD = r'''
import importlib.abc, importlib.machinery, json, sys, types, typing
from argparse import Namespace
import typing_extensions

STUBBED = ("megatron.core.transformer.moe.ops.paged_stash", "megatron.core.ssm.ops")


class _Absent(types.ModuleType):
    """A module that is imported for names never called while loading a checkpoint."""
    __path__ = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        def never_called(*args, **kwargs):
            if len(args) == 1 and callable(args[0]) and not kwargs:
                return args[0]  # used as a decorator
            raise RuntimeError(f"{self.__name__}.{name} is a GPU kernel stub")
        return never_called


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if any(name == s or name.startswith(s + ".") for s in STUBBED):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
    def create_module(self, spec):
        return _Absent(spec.name)
    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _Finder())
typing.override = typing_extensions.override
import torch
from megatron.training import checkpointing as C, global_vars

root = sys.argv[1]
out = {"megatron_file": C.__file__}
iteration, release = C.read_metadata(C.get_checkpoint_tracker_filename(root))
out["tracker"] = [iteration, release]

empty = Namespace(load=root, non_persistent_global_ckpt_dir=None, non_persistent_ckpt_type=None, ckpt_step=None,
                  exit_on_missing_checkpoint=False, use_tokenizer_model_from_checkpoint_args=True,
                  use_mp_args_from_checkpoint_args=True)
loaded = C.load_args_from_checkpoint(empty)
if not isinstance(loaded, tuple):
    print(json.dumps({"error": "Megatron found no checkpoint args"})); sys.exit(1)
args, ckpt_args = loaded
out["args_from_checkpoint"] = {k: v for k, v in vars(args).items() if k not in vars(Namespace(load=root))}

run = Namespace(**vars(args))
for key, value in json.loads(sys.argv[2]).items():
    setattr(run, key, value)
run.vocab_file = "vocab.txt"  # a run with a vocab file compares every vocabulary field too
run.use_dist_ckpt = False
run.data_parallel_random_init = False
run.phase_transition_iterations = None
global_vars.set_args(run)
state = torch.load(C.find_checkpoint_rank_0(root, iteration, release), map_location="cpu", weights_only=False)
C.set_checkpoint_version(state.get("checkpoint_version", 0))
C.check_checkpoint_args(ckpt_args)
out["check_checkpoint_args"] = "passed"

tp, pp, ep = ckpt_args.tensor_model_parallel_size, ckpt_args.pipeline_model_parallel_size, \
    getattr(ckpt_args, "expert_model_parallel_size", 1) or 1
ranks = []
for t in range(tp):
    for p in range(pp):
        C.mpu = Namespace(get_tensor_model_parallel_rank=lambda t=t: t, get_pipeline_model_parallel_rank=lambda p=p: p,
                          get_pipeline_model_parallel_world_size=lambda: pp,
                          get_expert_model_parallel_world_size=lambda: ep, get_expert_model_parallel_rank=lambda: 0)
        sd, name, rel, kind = C._load_base_checkpoint(root, run, rank0=False)
        assert kind == C.CheckpointType.LEGACY, kind
        assert sd["iteration"] == iteration and "model" in sd and "optimizer" in sd and "rng_state" in sd, name
        ranks.append(name[len(root):].lstrip("/"))
out["rank_files"] = ranks
out["load_checkpoint_reads"] = {k: getattr(ckpt_args, k, 0) for k in
                                ("consumed_train_samples", "skipped_train_samples", "consumed_valid_samples")}
print(json.dumps(out, default=repr))
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("git_dir", help="a Megatron-LM checkout or bare mirror")
    parser.add_argument("checkpoint_root", help="the folder holding latest_checkpointed_iteration.txt")
    parser.add_argument("run_args", help="JSON object: the resuming run's Megatron arguments")
    parser.add_argument("--commit", default="HEAD")
    opts = parser.parse_args()
    git = ["git", "-C", opts.git_dir] if (Path(opts.git_dir) / ".git").exists() else ["git", "--git-dir", opts.git_dir]
    with tempfile.TemporaryDirectory(prefix="megatron-lm-") as tmp:
        archive = subprocess.run([*git, "archive", opts.commit, "megatron"], capture_output=True, check=False)
        if archive.returncode:
            print(f"error: cannot read megatron/ at {opts.commit} from {opts.git_dir}", file=sys.stderr)
            return 2
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        proc = subprocess.run([sys.executable, "-c", CHILD, str(Path(opts.checkpoint_root).resolve()), opts.run_args],
                              cwd=tmp, env={**__import__("os").environ, "PYTHONPATH": tmp},
                              capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        print(proc.stderr[-4000:], file=sys.stderr)
        print(json.dumps({"error": "Megatron's loader refused the checkpoint", "rc": proc.returncode}))
        return 1
    print(lines[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
