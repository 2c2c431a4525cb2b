"""The two sides of a comparison, whatever they were read from: golden files, artifacts, versions.

A side carries its phases' series plus what decides how to compare it: fingerprint (and the
fields it hashes), platform, model arguments, and — for a store's golden — its approved history.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..model import Artifact, GoldenSet, InferenceGolden, MetricSeries


@dataclass(frozen=True)
class Side:
    """One side of a comparison, whatever it was read from.

    ``phases`` maps phase number → metric name → series; phase 2 is a resume's second phase.
    ``fingerprint_fields`` (the inputs of the fingerprint hash) lets the result name which
    fields differ; ``model_args`` feeds the structural-drift section. ``history`` (a store's
    golden only) maps phase → metric → the series of every approved version of this golden,
    oldest first, one per distinct content: the baseline of the history-aware timing check.
    """

    label: str
    phases: Mapping[int, Mapping[str, MetricSeries]]
    scalars: Mapping[str, float] = field(default_factory=dict)
    fingerprint: str | None = None
    fingerprint_fields: Mapping[str, Any] | None = None
    model_args: Mapping[str, Any] | None = None
    platform: str | None = None
    resumed_from: int | None = None
    history: Mapping[int, Mapping[str, Sequence[MetricSeries]]] | None = None
    phase_sources: Mapping[int, str] = field(default_factory=dict)  # per-phase file, e.g. the _2nd golden
    inference: InferenceGolden | None = None  # an inference golden (keyed by request id): no phases


def side_from_inference(golden: InferenceGolden, label: str, *, platform: str | None = None) -> Side:
    """An inference golden (a store's or a run's output) as one side."""
    return Side(label=label, phases={}, platform=platform, inference=golden)


def side_from_goldens(goldens: Mapping[int, GoldenSet], label: str, *, fingerprint: str | None = None,
                      fingerprint_fields: Mapping[str, Any] | None = None,
                      model_args: Mapping[str, Any] | None = None, platform: str | None = None,
                      per_phase_sources: bool = False) -> Side:
    """Golden files of one key: {1: phase-1 golden, 2: the ``_2nd`` golden (optional)}.

    ``per_phase_sources`` labels each phase with its own file (the ``_2nd`` golden for phase 2)."""
    first = goldens.get(1)
    if platform is None:
        key = next((g.key for g in goldens.values() if g.key is not None), None)
        platform = key.platform if key is not None else None
    return Side(label=label, phases={p: dict(g.metrics) for p, g in sorted(goldens.items())},
                scalars=dict(first.scalars) if first is not None else {},
                fingerprint=fingerprint, fingerprint_fields=fingerprint_fields,
                model_args=model_args, platform=platform,
                phase_sources={p: g.source for p, g in goldens.items() if g.source} if per_phase_sources else {})


def recorded_identity(provenance: Any) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """(fingerprint fields, model arguments) as a provenance records them — a run's, or the
    ledger entry's that wrote a golden; None for what is absent or not a mapping."""
    prov = provenance if isinstance(provenance, Mapping) else {}
    fields = prov.get("fingerprint_fields")
    args = prov.get("model_args", prov.get("args"))
    return (fields if isinstance(fields, Mapping) else None, args if isinstance(args, Mapping) else None)


def side_from_artifact(artifact: Artifact, label: str | None = None) -> Side:
    """A run artifact; fingerprint, its fields, platform and model args come from provenance."""
    prov = artifact.provenance if isinstance(artifact.provenance, Mapping) else {}
    fields, args = recorded_identity(prov)
    phase2 = artifact.phases.get(2)
    platform = prov.get("platform")
    return Side(label=label or artifact.run_id,
                phases={n: dict(p.metrics) for n, p in sorted(artifact.phases.items())},
                fingerprint=prov.get("fingerprint") if isinstance(prov.get("fingerprint"), str) else None,
                fingerprint_fields=fields, model_args=args,
                platform=platform if isinstance(platform, str) else None,
                resumed_from=phase2.resumed_from if phase2 is not None else None)
