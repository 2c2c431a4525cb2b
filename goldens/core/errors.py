"""One exception family for the whole toolkit.

The library raises these; only the CLI turns them into one-line messages and exit codes
(fastapi-cli style), so library code never prints or exits.
"""
from __future__ import annotations

EXIT_PASS = 0
EXIT_DIFFERENCE = 1
EXIT_INPUT = 2


class GoldenError(Exception):
    """Base of every error the toolkit raises on bad input or a failed operation (exit 2)."""

    exit_code = EXIT_INPUT


class FormatError(GoldenError):
    """A golden or artifact file is malformed; the message names the file and the key."""

    def __init__(self, message: str, *, path: object = None, key: str | None = None):
        where = []
        if path is not None:
            where.append(str(path))
        if key is not None:
            name = str(key)
            where.append(f"key {name!r}" if len(name) <= 80 else f"key {name[:60]!r}… ({len(name):,} characters)")
        self.path = path
        self.key = key
        self.reason = message
        super().__init__(f"{': '.join(where)}: {message}" if where else message)


class NotATrainingGolden(FormatError):
    """A recognised golden that is not per-step training metrics (e.g. inference, by request id)."""


class StoreError(GoldenError):
    """The golden store cannot do what was asked (unknown case, integrity, lock)."""


class PolicyError(GoldenError):
    """A tolerance policy is malformed (unknown key or value)."""


class RunError(GoldenError):
    """A run failed: a rank died, a phase timed out, a checkpoint was missing or corrupt."""
