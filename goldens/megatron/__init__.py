"""Megatron-LM's conventions read from a tree: which generation it follows (``detect``), what its CI does
with one case (``case``: model_config.yaml), and its golden linter (``lint``). The conventions themselves
are data in ``goldens.core.megatron``."""
from .detect import NEWER_COMPARATOR, detect_generation

__all__ = ["NEWER_COMPARATOR", "detect_generation"]
