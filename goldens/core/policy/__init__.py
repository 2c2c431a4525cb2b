"""Tolerance policies as data: one policy per metric, defaults by metric kind, named presets.

A policy says how one metric is judged; it never lives in code as ``if name == ...``. It comes
from data in this order (later wins, stated once here):

1. the preset — ``default`` or ``megatron`` (or a policy file's ``preset:`` key);
2. the case's ``case.yaml`` ``metrics:`` section;
3. a policy file given on the command line (``--policy FILE``), its ``metrics:``/``kinds:``.

For one metric the first match wins: an entry under ``metrics:`` by exact name, then the first
kind whose glob patterns match the name (case-insensitive), then the preset's ``fallback``
(none in ``megatron``: Megatron judges only the metrics it has thresholds for).

A ``metrics:`` entry that names a ``mode`` replaces the kind's policy; one that does not
adjusts it (``lm loss: {rtol: 0.02}`` keeps everything else of the ``loss`` kind).

The rooms: ``schema`` (the policy language: one metric's ``MetricPolicy``, kinds, ``PolicySet``, and
their parsing with precise errors), ``presets`` (the named presets as data), ``megatron`` (the megatron
preset applied to one Megatron case and to the tree's generation); ``build_policies`` composes them.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..errors import PolicyError
from ..megatron import Detection, MegatronCase
from .megatron import with_generation, with_megatron_case
from .presets import PRESETS, preset
from .schema import Allowance, MetricPolicy, PolicySet, parse_metric_policy

# What the rest of the project and notebooks use; everything else is imported from its room.
__all__ = ["PRESETS", "Allowance", "MetricPolicy", "PolicySet", "build_policies", "parse_metric_policy", "preset"]


def build_policies(*, preset_name: str | None = None, case_metrics: Any = None, case_source: str = "case.yaml",
                   document: Mapping[str, Any] | None = None, document_source: str = "policy file",
                   megatron_case: MegatronCase | None = None, base: PolicySet | None = None,
                   generation: Detection | None = None) -> PolicySet:
    """Compose the policies for one comparison (precedence: preset < its Megatron generation's row (a
    preset that follows model_config.yaml) < model_config.yaml < case.yaml < policy file).

    ``preset_name`` wins over the document's ``preset:`` key only when given explicitly; ``base``, a
    policy set built in Python, stands where the preset would.
    """
    name = preset_name or (document or {}).get("preset") or "default"
    if not isinstance(name, str):
        raise PolicyError(f"{document_source}: key 'preset': expected a name, got {name!r}")
    policies = base if base is not None else preset(name)
    if generation is not None and policies.follows_model_config:
        policies = with_generation(policies, generation)
    if megatron_case is not None:
        policies = with_megatron_case(policies, megatron_case)
    if generation is not None and policies.follows_model_config:
        policies = replace(policies, choices=(*policies.choices, generation.line))
    if case_metrics is not None:
        policies = policies.with_document({"metrics": case_metrics}, case_source)
    if document is not None:
        policies = policies.with_document({k: v for k, v in document.items() if k != "preset"}, document_source)
    return policies
