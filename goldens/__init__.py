"""Golden-value toolkit for distributed-training regression tests.

The Python API (``goldens.api``, documented in docs/api.md) is reached from here —
``goldens.open_store``, ``goldens.load_golden``, ``goldens.load_run``, ``goldens.judge`` — and
imported on first use only: the CLI's ``--help`` must not pull numpy, pandas or torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .api import (
        ComparisonResult,
        GoldenError,
        GoldenStore,
        PolicySet,
        Run,
        judge,
        load_golden,
        load_run,
        open_store,
        preset,
        run_from_metrics,
        save_metrics,
    )

__all__ = ["ComparisonResult", "GoldenError", "GoldenStore", "PolicySet", "Run", "__version__", "judge", "load_golden",
           "load_run", "open_store", "preset", "run_from_metrics", "save_metrics"]
API = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    """The API's names, imported from ``goldens.api`` when first asked for."""
    if name in API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'goldens' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *API})
