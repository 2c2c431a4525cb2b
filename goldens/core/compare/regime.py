"""Which regime applies — exact (bit-equal) or approximate — and whether both sides are one platform.

Exact when both fingerprints are recorded and equal; the result names the fingerprint fields that
differ otherwise, so a reader sees *why* a comparison was approximate.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..policy.schema import CaseRegime
from ..result import FingerprintCheck
from .sides import Side


def flatten_mapping(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted paths: ``{"versions": {"torch": …}}`` → ``versions.torch``."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_mapping(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def decide_regime(reference: Side, candidate: Side, force: str | None = None,
                  case: CaseRegime | None = None) -> FingerprintCheck:
    """Exact when both fingerprints are recorded and equal; else approx, naming what differs.

    A side without a fingerprint (two bare Megatron files, say) gets approx — what Megatron
    does under ``--allow-nondeterministic-algo``. ``case``: the case decides instead (a Megatron
    case's ENV_VARS, as its CI does). ``force`` ("exact" | "approx") overrides either.
    """
    ref, cand = reference.fingerprint, candidate.fingerprint
    differing: tuple[str, ...] = ()
    if reference.fingerprint_fields is not None and candidate.fingerprint_fields is not None:
        a, b = flatten_mapping(reference.fingerprint_fields), flatten_mapping(candidate.fingerprint_fields)
        differing = tuple(sorted(k for k in a.keys() | b.keys() if a.get(k, _MISSING) != b.get(k, _MISSING)))
    elif ref is not None and cand is not None and ref != cand:
        differing = ("fingerprint",)
    if ref is None and cand is None:
        natural, reason = False, "neither side has a recorded fingerprint"
    elif ref is None:
        natural, reason = False, "the reference has no recorded fingerprint"
    elif cand is None:
        natural, reason = False, "the candidate has no recorded fingerprint"
    elif ref == cand:
        natural, reason = True, "fingerprints equal"
    else:
        shown = ", ".join(differing[:6]) + (" …" if len(differing) > 6 else "")
        natural, reason = False, f"fingerprints differ ({shown})"
    if case is not None:
        natural, reason = case.exact, case.origin
    if force is None:
        return FingerprintCheck(ref, cand, natural, reason, differing)
    if force not in ("exact", "approx"):
        raise ValueError(f"force must be 'exact' or 'approx', got {force!r}")
    return FingerprintCheck(ref, cand, force == "exact", f"forced --{force} ({reason})", differing, forced=force)


_MISSING = object()


def same_platform(reference: Side, candidate: Side, regime: FingerprintCheck) -> bool:
    """Equal fingerprints imply one platform; else both sides must name the same platform."""
    if regime.reference is not None and regime.reference == regime.candidate:
        return True
    return reference.platform is not None and reference.platform == candidate.platform


def other_platform_reason(reference: Side, candidate: Side) -> str:
    """Why two sides do not count as one platform: a side that names none is not "another" one."""
    unknown = [label for label, side in (("reference", reference), ("candidate", candidate)) if side.platform is None]
    if unknown:
        return f"platform of the {' and the '.join(unknown)} unknown"
    return f"other platform: {reference.platform} vs {candidate.platform}"
