"""Megatron-LM's conventions as data: ``generations`` (the table, one row per PR that changed them)
and ``detect`` (which row a tree follows, and why)."""
from .detect import NEWER_COMPARATOR, Detection, detect_generation
from .generations import GENERATION_ENV, GENERATIONS, LEGACY, NEWEST, Generation, generation

__all__ = ["GENERATIONS", "GENERATION_ENV", "LEGACY", "NEWEST", "NEWER_COMPARATOR", "Detection", "Generation",
           "detect_generation", "generation"]
