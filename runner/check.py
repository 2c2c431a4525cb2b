"""``golden check``'s judgement: a run's artifact against the store's golden, one function.

It is the toolkit's own comparison (``goldens.compare.compare``) with the inputs ``golden diff``
would load: the current golden of (case, env, platform) with the fingerprint and provenance of
the ledger entry that wrote it, the case's ``metrics:`` policies, and the resume check
(phase 2 against phase 1 on their overlapping steps) as its own verdict.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


def judge(artifact: Any, *, case: str, store_root: Path | None, env: str, platform: str,
          policy: str | None = None) -> Any:
    """The ComparisonResult of ``artifact`` against the golden (raises StoreError if none)."""
    from goldens import diff_inputs
    from goldens.compare import compare

    store = diff_inputs.open_store(store_root)
    reference = diff_inputs.load_store_golden(store, case, env, platform)
    candidate = diff_inputs.load_artifact_side(artifact)
    case_policy, source = diff_inputs.case_metrics(store_root, case)
    policies = diff_inputs.load_policies(policy, case_policy=case_policy, case_source=source)
    notes = tuple(f"run: {n}" for n in candidate.notes)
    return compare(reference.side, candidate.side, policies, case=case, env=env, platform=platform, notes=notes)
