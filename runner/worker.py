"""The module torchrun starts on every rank: ``python -m runner.worker PLAN.json``.

Deliberately thin and import-light. Megatron's torch_dist writer may start a *spawn* process,
which re-imports the ``__main__`` module: nothing heavy may happen at import here. It also lets
the CPU import hook (``compat.skip_jit_fuser_binding``) go in before megatron-core is imported.
Any exception becomes a one-line error in this rank's status file and exit code 1.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import traceback
import warnings

from . import compat
from .faults import maybe_inject
from .plan import PhasePlan
from .status import RankStatus

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG).

    Each launcher level calls it (fork server, forked ranks, torchrun's agent and its ranks), so
    killing the top — even with SIGKILL, which leaves no chance to clean up — takes the whole run
    down and nothing is orphaned. A no-op where prctl does not exist.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if parent == 1 or os.getppid() != parent:  # the parent died before prctl took effect (we were adopted)
        os._exit(1)


def before_megatron_import(device: str) -> tuple[str, ...]:
    """What must happen before megatron-core is imported; returns what was done. On CPU the
    compatibility layer's fuser hook (compat.skip_jit_fuser_binding); on CUDA nothing — a GPU rank
    runs stock megatron-core with its jit fuser (torch.compile) as Megatron-LM binds it, and the
    rest of the CPU layer (compat.install) is applied only by a CPU rank's distributed.setup."""
    if device != "cpu":
        return ()
    compat.skip_jit_fuser_binding()
    return ("compat.skip_jit_fuser_binding",)


def main(argv: list[str]) -> int:
    die_with_parent()
    plan = PhasePlan.read(argv[0])
    rank = int(os.environ["RANK"])
    status = RankStatus(plan.rank_status_path(rank), rank=rank, phase=plan.phase)
    try:
        maybe_inject("start", phase=plan.phase, rank=rank)
        status.update("importing")
        before_megatron_import(plan.run.launch.device)
        # megatron-core warns once per module that Apex/Transformer Engine are absent: by design here.
        warnings.filterwarnings("ignore", message=r".*(Apex|Transformer Engine).*")
        from .train import run_phase  # the training stack enters after the CPU fuser hook, whatever it imports

        run_phase(plan, status)
    except BaseException as exc:
        status.fail(exc)
        traceback.print_exc()
        return 1
    status.update("done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
