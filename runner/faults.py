"""Fault injection for the failure-path tests: kill, hang or raise on one rank at one point.

``GOLDEN_RUNNER_FAULT="<phase>:<rank>:<point>:<action>"`` with point ``start`` (before the
heavy imports), ``step<N>`` (after step N) or ``save`` (inside the checkpoint save, after this
rank wrote its shard, before the save is committed) and action ``kill`` (SIGKILL itself),
``hang`` (sleep forever) or ``raise``. Unset, every call is a no-op.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

ENV = "GOLDEN_RUNNER_FAULT"
ACTIONS = ("kill", "hang", "raise")


class InjectedFault(RuntimeError):
    """Raised by the ``raise`` action."""


@dataclass(frozen=True)
class Fault:
    phase: int
    rank: int
    point: str
    action: str

    @classmethod
    def parse(cls, text: str) -> Fault:
        parts = text.split(":")
        if len(parts) != 4 or not parts[0].isdigit() or not parts[1].isdigit() or parts[3] not in ACTIONS:
            raise ValueError(f"{ENV}={text!r}: expected <phase>:<rank>:<start|stepN|save>:<kill|hang|raise>")
        return cls(int(parts[0]), int(parts[1]), parts[2], parts[3])


def maybe_inject(point: str, *, phase: int, rank: int) -> None:
    """Trigger the configured fault if it is for this phase, rank and point."""
    text = os.environ.get(ENV)
    if not text:
        return
    fault = Fault.parse(text)
    if (fault.phase, fault.rank, fault.point) != (phase, rank, point):
        return
    if fault.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if fault.action == "hang":
        while True:
            time.sleep(3600)
    raise InjectedFault(f"injected fault at {point} on rank {rank} in phase {phase}")
