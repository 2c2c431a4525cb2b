"""Model families: one builder module each (``bert``, ``gpt``, ``moe``, ``t5``) behind the
:class:`~runner.families.spec.TrainSpec` interface (as torchtitan's train specs). Which family a
case needs is told from the case itself (``runner/case_family.py``).
"""
from __future__ import annotations

import importlib

from ..case_family import BUILT
from .spec import TrainSpec


def train_spec(name: str) -> TrainSpec:
    """The family's TrainSpec (imports its module; torch is imported only when a spec builds)."""
    if name not in BUILT:
        raise KeyError(f"no builder for model family {name!r}")
    return importlib.import_module(f"{__name__}.{name}").SPEC
