"""Which optional extra a command needs, and a one-line refusal when it is not installed.

The core install (``pip install -e .``) judges, reports and approves; training (``golden run`` /
``check``) needs the ``runner`` extra and reading TensorBoard logs (``golden import-tb``) the
``tb`` extra. A command checks its extra before doing anything, so a missing one is exit 2 with
the install line — never a ``ModuleNotFoundError`` traceback with the exit code of a regression.
Only ``importlib.util.find_spec`` is used: nothing heavy is imported to find out.
"""
from __future__ import annotations

import importlib.util

from ..core.errors import GoldenError

LOCK_FILE = "requirements/lock.txt"

# extra → the modules its commands cannot do without (pyproject.toml's extra installs them; the
# extras' google-crc32c only makes import-tb faster, so its absence is no refusal).
EXTRAS: dict[str, tuple[str, ...]] = {
    "runner": ("torch", "megatron.core", "psutil", "tensorboard"),
    "tb": ("tensorboard", "google.protobuf"),
}


class MissingExtra(GoldenError):
    """A command's optional dependencies are not installed (exit 2, names the extra)."""


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    missing = []
    for module in EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package is missing or half-installed
            found = False
        if not found:
            missing.append(module)
    return missing


def install_hint(extra: str) -> str:
    return f"pip install -c {LOCK_FILE} -e '.[{extra}]'"


def missing_reason(extra: str) -> str | None:
    """Why something that needs ``extra`` cannot run here (None: it can) — a test's skip reason."""
    missing = missing_modules(extra)
    if not missing:
        return None
    return f"needs the {extra!r} extra (missing: {', '.join(missing)}): {install_hint(extra)}"


def require_extra(extra: str, command: str) -> None:
    """Raise ``MissingExtra`` naming the extra to install when any of its modules is absent."""
    reason = missing_reason(extra)
    if reason is not None:
        raise MissingExtra(f"golden {command} {reason}")
