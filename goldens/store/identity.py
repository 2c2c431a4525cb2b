"""Who is accountable for a write to the golden store: one rule for every command that writes.

``--approver`` when given; else ``git config user.name`` (run in the store, so a repository's own
setting applies); else ``$USER``; else the login name. Approve, review, rollback and adopt all
record the approver this way.
"""
from __future__ import annotations

import getpass
import os
import subprocess
from pathlib import Path


def default_approver(cwd: str | Path | None = None) -> str:
    """``git config user.name`` (in ``cwd``), else ``$USER``, else the login name, else "unknown"."""
    try:
        out = subprocess.run(["git", "config", "user.name"], capture_output=True, text=True, timeout=10,
                             cwd=cwd if cwd is None or Path(cwd).is_dir() else None)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def resolve_approver(given: str | None, cwd: str | Path | None = None) -> str:
    """The approver a write records: ``given`` (stripped) when non-empty, else ``default_approver``."""
    if given is not None and given.strip():
        return given.strip()
    return default_approver(cwd)
