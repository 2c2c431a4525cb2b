"""Guardrails: every refusal of an approval is checked before anything is written, and says why
in one line (``ApprovalRefused``, exit 2): no reason, CI, an incomplete or foreign run, a stale
candidate, a value a golden cannot hold, a golden file the store would refuse.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import GoldenError
from ..core.model import Artifact, GoldenKey, GoldenSet, MetricSeries
from ..files.validate import ERROR, check_golden_set, declared_metrics
from ..store import LEDGER
from ..store.safety import in_ci
from .candidate import Candidate, current_version, run_target, target_files, target_keys

if TYPE_CHECKING:
    from ..store import GoldenStore, Version


class ApprovalRefused(GoldenError):
    """A guardrail said no; nothing was written."""



def require_reason(reason: str | None) -> str:
    if reason is None or not reason.strip():
        raise ApprovalRefused("a reason is required: --reason TEXT (why these values are the new truth)")
    return reason.strip()


def refuse_in_ci(ci: bool | None, allow_ci: bool) -> None:
    if in_ci(ci) and not allow_ci:
        raise ApprovalRefused("CI is set: CI never writes goldens (pass --allow-ci to override deliberately)")


def check_run(artifact: Artifact, candidate: Candidate) -> None:
    """Only a complete run of the right case, env and platform may become a golden."""
    if artifact.case != candidate.case:
        raise ApprovalRefused(f"run {artifact.run_id!r} is of case {artifact.case!r}, "
                              f"not {candidate.case!r}")
    if artifact.run_id != candidate.run_id:
        raise ApprovalRefused(f"candidate {candidate.target} names run {candidate.run_id!r} but "
                              f"{candidate.artifact} holds run {artifact.run_id!r}")
    if not artifact.approvable:
        why = f" ({artifact.error})" if artifact.error else ""
        raise ApprovalRefused(f"run {artifact.run_id!r} is {artifact.status}{why}: "
                              f"only a complete run can become a golden")
    env, platform = run_target(artifact)
    for what, declared, wanted in (("env", env, candidate.env), ("platform", platform, candidate.platform)):
        if declared is not None and declared != wanted:
            raise ApprovalRefused(f"run {artifact.run_id!r} ran with {what} {declared!r} but the target "
                                  f"golden is {candidate.env}/{candidate.platform}")


def check_base_version(store: GoldenStore, candidate: Candidate) -> int:
    """The case's current version; refused when the target's golden files changed since the
    candidate was made (someone approved in between). A ledger store goes by its versions (one
    written after the candidate's that touched the target's files); a git store, whose versions
    are commits, by what the files hold (``base_files``). An approval of another env/platform of
    the case does not make a candidate stale."""
    keys = {key.filename(): key for key in target_keys(candidate.case, candidate.env, candidate.platform)}
    files = list(keys)
    if store.backend_name != LEDGER:
        if candidate.base_files is not None and store.file_hashes(candidate.case, files) != candidate.base_files:
            changed = [f for f, h in store.file_hashes(candidate.case, files).items()
                       if h != candidate.base_files.get(f)]
            writer = store.writer_of(keys[changed[0]])
            who = f" ({writer.action} by {writer.approver})" if writer is not None else " (by another tool)"
            raise ApprovalRefused(f"{candidate.target}: the candidate from run {candidate.run_id!r} was made "
                                  f"against other contents of {changed[0]}, which changed since{who}; re-run "
                                  f"golden diff to stage it against the current golden")
        if candidate.path is not None:
            landed = approved_since(store, candidate)
            if landed is not None:
                raise ApprovalRefused(f"{candidate.target}: run {candidate.run_id!r} was already approved "
                                      f"({landed.label}, by {landed.approver}) after it was staged")
        return current_version(store, candidate.case)
    history = store.history(candidate.case)
    current = int(history[-1].number) if history else 0
    if candidate.base_version is None:
        return current
    target = set(files)

    def moved(version: Version) -> bool:
        """Whether a version touched the target since; an import that recorded the very bytes the
        candidate was compared against (the ledger records a Megatron folder's files before the first
        approval of any of its envs) did not move it."""
        touched = target & set(version.files)
        if version.action == "imported" and candidate.base_files is not None:
            return any(version.files[f].hash != candidate.base_files.get(f) for f in touched)
        return bool(touched)

    since = [e for e in history if int(e.number) > candidate.base_version and moved(e)]
    if since or candidate.base_version > current:
        entry = since[-1] if since else None
        how = (f"{entry.label} ({entry.action} by {entry.approver}) changed it since" if entry is not None
               else f"the case is at v{current}")
        raise ApprovalRefused(f"{candidate.target}: the candidate from run {candidate.run_id!r} was made "
                              f"against v{candidate.base_version}, but {how}; re-run golden diff to stage "
                              f"it against the current golden")
    return current


def approved_since(store: GoldenStore, candidate: Candidate) -> Version | None:
    """The version that approved this very run after the candidate was staged (a crash between
    the commit and discarding the candidate leaves it staged). In a git store, whose versions are
    commits, any version of the target that came from this run."""
    if candidate.base_version is None or candidate.case not in store.cases():
        return None
    if store.backend_name != LEDGER:
        files = set(target_files(candidate.case, candidate.env, candidate.platform))
        return next((v for v in store.history(candidate.case)
                     if v.source_run_id == candidate.run_id and files & set(v.files)
                     and later_than(v.time, candidate.created)), None)
    return next((e for e in store.history(candidate.case)
                 if int(e.number) > candidate.base_version and e.source_run_id == candidate.run_id), None)


def later_than(approved: str, staged: str) -> bool:
    """Whether an approval's time is after a candidate's staging time (ISO 8601, any offset); a
    time that does not parse counts as later (the safe side: refuse a second approval)."""
    try:
        return datetime.fromisoformat(approved.replace("Z", "+00:00")) >= \
            datetime.fromisoformat(staged.replace("Z", "+00:00"))
    except ValueError:
        return True


def check_finite(key: GoldenKey, run_id: str, new: MetricSeries, golden: MetricSeries | None) -> None:
    """No inf ever; no all-NaN new metric. A NaN among values is a step with no value, as Megatron's
    reader and comparator take it (its CI writes such goldens): never a reason to refuse."""
    where = f"run {run_id!r}: {new.name!r} (phase {key.phase})"
    if np.isinf(new.values).any():
        step = int(new.steps[np.isinf(new.values)][0])
        raise ApprovalRefused(f"{where} is infinite at step {step}; a golden cannot hold inf")
    if np.isnan(new.values).all() and (golden is None or not np.isnan(golden.values).all()):
        raise ApprovalRefused(f"{where} has no value at any step; a golden needs numbers")


def check_writable(store: GoldenStore, key: GoldenKey, golden: GoldenSet) -> None:
    """The store's own validation of a golden an approval would write, run before the first write
    of a batch (so it writes nothing)."""
    known = declared_metrics(Path(store.case_dir(key.case)))
    errors = [f for f in check_golden_set(golden, known_metrics=known) if f.severity == ERROR]
    if errors:
        raise ApprovalRefused(f"{key.case}/{key.filename()}: {errors[0].message}")

