"""Per-rank state files: how the launcher learns which rank failed, where, and why.

Each rank rewrites ``logs/phase<N>/rank<k>.json`` (atomically) when its state changes and after
every step: pid, state (starting → importing → building → loading → training → saving → done |
failed), the last finished step and, on failure, a one-line error. A rank killed by a signal
leaves its last state behind, which is what names it in the error. Standard library only.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goldens.core.errors import GoldenError

STATES = ("starting", "importing", "building", "loading", "training", "saving", "done", "failed")


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (our own errors without the type) for a one-line error."""
    text = " ".join(str(exc).split("\n")[0].split()) or "(no message)"
    return (text if isinstance(exc, GoldenError) else f"{type(exc).__name__}: {text}")[:500]


class RankStatus:
    """The writer side, used inside a rank."""

    def __init__(self, path: Path, *, rank: int, phase: int):
        self.path = path
        self.doc: dict[str, Any] = {"rank": rank, "phase": phase, "pid": os.getpid(), "state": "starting",
                                    "step": None, "error": None, "time": time.time()}
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write()

    def update(self, state: str, step: int | None = None) -> None:
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        self.doc["state"] = state
        if step is not None:
            self.doc["step"] = step
        self._write()

    def fail(self, exc: BaseException) -> None:
        self.doc["error"] = one_line(exc)
        self.doc["failed_while"] = self.doc["state"]
        self.update("failed")

    def _write(self) -> None:
        self.doc["time"] = time.time()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.doc), encoding="utf-8")
        os.replace(tmp, self.path)


@dataclass(frozen=True)
class RankState:
    """The reader side: what one rank last reported."""

    rank: int
    pid: int | None
    state: str
    step: int | None
    error: str | None
    time: float
    failed_while: str | None = None

    @property
    def activity(self) -> str:
        """What the rank was doing: its state, or for a failed rank the state it failed in."""
        return self.failed_while if self.state == "failed" and self.failed_while else self.state


def read_states(log_dir: Path) -> dict[int, RankState]:
    """Every rank's last report in a phase's log folder (unreadable files are skipped)."""
    states = {}
    for path in sorted(log_dir.glob("rank*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            states[int(doc["rank"])] = RankState(int(doc["rank"]), doc.get("pid"), str(doc["state"]),
                                                 doc.get("step"), doc.get("error"), float(doc["time"]),
                                                 doc.get("failed_while"))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return states
