"""Pending candidates and the approval workflow: accept, reject, review, rollback, prune.

The insta split: ``golden diff`` / ``golden check`` only *stage* a candidate (one small JSON
file per case, env and platform under ``<store>/.pending/``, git-ignored); a person then
accepts it (a new golden version through the store — the only writer, atomic and locked,
the ledger append is the commit point) or rejects it (the candidate is discarded). Accept
and reject are one function taking an ``Operation``. Every guardrail refuses *before*
anything is written, with a one-line message (``ApprovalRefused``, exit 2).

The candidate file (schema ``golden.pending/1``) is the contract between the check and the
review: case, env, platform, run id, the absolute path of the run's ``artifact.json``,
``base_version`` (the case's ledger version it was compared against: approving is refused
once a later version touched the same golden files), the run's fingerprint, the overall
verdict and one line per metric (phase, verdict, passed, why). It lives in the store, not
beside the run, so ``golden pending`` finds every candidate of a store in one place.
"""
from __future__ import annotations

import getpass
import json
import math
import os
import subprocess
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Protocol, Sequence

from .atomic import atomic_write_text
from .case import check_name
from .errors import FormatError, GoldenError, StoreError
from .model import Artifact, GoldenKey, GoldenSet, MetricSeries
from .store import STORE_ENV, VersionConflict

if TYPE_CHECKING:
    from .result import ComparisonResult, MetricVerdict
    from .store import GoldenStore, LedgerEntry

PENDING_DIR = ".pending"
PENDING_SCHEMA = "golden.pending/1"
CONFLICT_RETRIES = 50


class Operation(StrEnum):
    """What to do with a candidate: insta's accept/reject, sharing one code path."""

    ACCEPT = "accept"
    REJECT = "reject"


class ApprovalRefused(GoldenError):
    """A guardrail said no; nothing was written."""


# ---------------------------------------------------------------- the candidate (the contract)

@dataclass(frozen=True, kw_only=True)
class CandidateMetric:
    """One metric verdict as staged: enough to list, select (--only-failing) and review."""

    phase: int
    metric: str
    verdict: str          # pass | fail | missing | new | skipped (goldens.result.Verdict)
    passed: bool
    explanation: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"phase": self.phase, "metric": self.metric, "verdict": self.verdict,
                "passed": self.passed, "explanation": self.explanation}


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """A run proposed as the new golden of (case, env, platform).

    ``base_version`` is the store's ledger version of the case when the candidate was made;
    approving it is refused once the case has moved on (someone approved in between).
    ``None`` means "made now" (a run approved directly, with no staged comparison).
    """

    case: str
    env: str
    platform: str
    run_id: str
    artifact: str                     # absolute path of the run's artifact.json
    base_version: int | None
    fingerprint: str | None = None
    created: str = ""
    verdict: str = "new"              # pass | fail | new (no golden to compare with)
    metrics: tuple[CandidateMetric, ...] = ()
    path: Path | None = field(default=None, compare=False)  # where it is staged, if it is

    @property
    def target(self) -> str:
        return f"{self.case} {self.env}/{self.platform}"

    def failing(self) -> dict[int, set[str]]:
        """Metric names per phase whose staged verdict did not pass (approvable ones only)."""
        out: dict[int, set[str]] = {}
        for m in self.metrics:
            if not m.passed and m.verdict != "missing":
                out.setdefault(m.phase, set()).add(m.metric)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"schema": PENDING_SCHEMA, "case": self.case, "env": self.env, "platform": self.platform,
                "run_id": self.run_id, "artifact": self.artifact, "base_version": self.base_version,
                "fingerprint": self.fingerprint, "created": self.created, "verdict": self.verdict,
                "metrics": [m.to_json() for m in self.metrics]}

    @classmethod
    def from_json(cls, doc: Any, *, path: Path | None = None) -> "Candidate":
        if not isinstance(doc, dict) or doc.get("schema") != PENDING_SCHEMA:
            raise FormatError(f"not a pending candidate (expected schema {PENDING_SCHEMA!r})", path=path)
        try:
            metrics = tuple(CandidateMetric(phase=int(m["phase"]), metric=str(m["metric"]),
                                            verdict=str(m["verdict"]), passed=bool(m["passed"]),
                                            explanation=str(m.get("explanation", "")))
                            for m in doc.get("metrics") or ())
            for name in ("case", "env", "platform", "run_id", "artifact"):
                if not isinstance(doc[name], str) or not doc[name]:
                    raise ValueError(f"{name} must be a non-empty string")
            base = doc["base_version"]
            if base is not None and (isinstance(base, bool) or not isinstance(base, int)):
                raise ValueError(f"base_version must be an integer, got {base!r}")
            return cls(case=check_name(doc["case"]), env=check_name(doc["env"], "env"),
                       platform=check_name(doc["platform"], "platform"), run_id=doc["run_id"],
                       artifact=doc["artifact"], base_version=base, fingerprint=doc.get("fingerprint"),
                       created=str(doc.get("created", "")), verdict=str(doc.get("verdict", "new")),
                       metrics=metrics, path=path)
        except KeyError as exc:
            raise FormatError(f"missing field {exc.args[0]!r}", path=path) from None
        except (TypeError, ValueError, StoreError) as exc:
            raise FormatError(str(exc), path=path) from None


def pending_root(store: "GoldenStore") -> Path:
    return Path(store.root) / PENDING_DIR


def candidate_path(store: "GoldenStore", case: str, env: str, platform: str) -> Path:
    """``<store>/.pending/<case>/<env>_<platform>.json`` (env never holds '_', so it parses back)."""
    return pending_root(store) / check_name(case) / f"{check_name(env, 'env')}_{check_name(platform, 'platform')}.json"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _current_version(store: "GoldenStore", case: str) -> int:
    entry = store.current_entry(case)
    return 0 if entry is None else int(entry.version)


def _summarise(result: "ComparisonResult | None") -> tuple[str, tuple[CandidateMetric, ...]]:
    if result is None:
        return "new", ()
    verdicts: list[MetricVerdict] = list(result.metric_verdicts())
    metrics = tuple(CandidateMetric(phase=m.phase, metric=m.metric, verdict=str(m.verdict.value),
                                    passed=bool(m.passed), explanation=m.explanation) for m in verdicts)
    return str(result.verdict.value), metrics


def stage_candidate(store: "GoldenStore", artifact: Artifact | str | Path, env: str, platform: str,
                    result: "ComparisonResult | None" = None, *, ci: bool | None = None) -> Candidate | None:
    """Stage a run as the pending candidate for (case, env, platform); the newest run replaces
    an older candidate of the same target. ``result=None`` means the case has no golden yet.

    Called by ``golden diff`` / ``golden check`` when a run fails or has no golden. In CI
    (``CI`` set, or ``ci=True``) nothing is written and ``None`` is returned: CI never writes.
    """
    if _ci(ci):
        return None
    if not isinstance(artifact, Artifact):
        from .formats import read_artifact
        artifact = read_artifact(artifact)
    if not artifact.source:
        raise GoldenError(f"run {artifact.run_id!r}: the artifact has no file to point the candidate at")
    verdict, metrics = _summarise(result)
    candidate = Candidate(case=check_name(artifact.case), env=check_name(env, "env"),
                          platform=check_name(platform, "platform"), run_id=artifact.run_id,
                          artifact=str(Path(artifact.source).resolve()),
                          base_version=_current_version(store, artifact.case),
                          fingerprint=artifact.fingerprint, created=_now(), verdict=verdict,
                          metrics=metrics)
    path = candidate_path(store, candidate.case, env, platform)
    atomic_write_text(path, json.dumps(candidate.to_json(), indent=2) + "\n")
    return replace(candidate, path=path)


def read_candidate(path: Path) -> Candidate:
    from .formats import read_json

    return Candidate.from_json(read_json(path), path=path)


def list_pending(store: "GoldenStore", *, case: str | None = None, env: str | None = None,
                 platform: str | None = None) -> list[Candidate]:
    """Staged candidates, sorted by case, env, platform; filters match exactly."""
    root = pending_root(store)
    for value, what in ((case, "case"), (env, "env"), (platform, "platform")):
        if value is not None:
            check_name(value, what)
    if not Path(store.root).is_dir():  # a mistyped --store is not "no pending candidates"
        raise StoreError(f"no golden store at {store.root} (set --store or ${STORE_ENV})")
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.glob("*/*.json")):
        try:
            candidate = read_candidate(path)
        except FormatError:
            if not path.exists():
                continue  # accepted or rejected by another process meanwhile
            raise
        if ((case is None or candidate.case == case) and (env is None or candidate.env == env)
                and (platform is None or candidate.platform == platform)):
            found.append(candidate)
    return found


# ---------------------------------------------------------------- resolving what to act on

def resolve_run(run: str | Path, runs_dir: str | Path = "runs") -> Path:
    """A run given as artifact.json, its directory, or a run id under ``runs_dir``."""
    path = Path(run)
    for candidate in (path, path / "artifact.json", Path(runs_dir) / str(run) / "artifact.json"):
        if candidate.is_file():
            return candidate.resolve()
    raise GoldenError(f"no run {str(run)!r}: expected an artifact.json, a run directory, "
                      f"or a run id under {runs_dir}/")


def run_target(artifact: Artifact) -> tuple[str | None, str | None]:
    """The env and platform a run declares it ran as (provenance ``env`` / ``platform``)."""
    prov = artifact.provenance or {}
    env, platform = prov.get("env"), prov.get("platform")
    return (env if isinstance(env, str) else None, platform if isinstance(platform, str) else None)


def candidates_for_run(store: "GoldenStore", run: str | Path, *, case: str | None = None,
                       env: str | None = None, platform: str | None = None,
                       runs_dir: str | Path = "runs") -> list[Candidate]:
    """The candidate(s) for one run: its staged candidate if there is one (with the staged
    base version), else one made now for the target given or declared by the run."""
    from .formats import read_artifact

    path = resolve_run(run, runs_dir)
    artifact = read_artifact(path)
    if case is not None and check_name(case) != artifact.case:
        raise ApprovalRefused(f"run {artifact.run_id!r} is of case {artifact.case!r}, not {case!r}")
    staged = [c for c in list_pending(store, case=artifact.case, env=env, platform=platform)
              if c.run_id == artifact.run_id and Path(c.artifact) == path]
    if staged:
        return staged
    declared_env, declared_platform = run_target(artifact)
    env, platform = env or declared_env, platform or declared_platform
    missing = [f"--{what}" for what, value in (("env", env), ("platform", platform)) if value is None]
    if missing:
        raise ApprovalRefused(f"run {artifact.run_id!r} does not say which golden it targets: "
                              f"give {' and '.join(missing)}")
    return [Candidate(case=check_name(artifact.case), env=check_name(env, "env"),
                      platform=check_name(platform, "platform"), run_id=artifact.run_id,
                      artifact=str(path), base_version=None, fingerprint=artifact.fingerprint,
                      created=_now())]


# ---------------------------------------------------------------- guardrails

def _ci(ci: bool | None) -> bool:
    return bool(os.environ.get("CI")) if ci is None else ci


def require_reason(reason: str | None) -> str:
    if reason is None or not reason.strip():
        raise ApprovalRefused("a reason is required: --reason TEXT (why these values are the new truth)")
    return reason.strip()


def refuse_in_ci(ci: bool | None, allow_ci: bool) -> None:
    if _ci(ci) and not allow_ci:
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


def check_base_version(store: "GoldenStore", candidate: Candidate) -> int:
    """The case's current version; refused when a version written after the one the candidate
    was made against touched its target's files (someone approved in between). Versions are
    per case, so an approval of another env/platform of the case does not make it stale."""
    history = store.history(candidate.case)
    current = int(history[-1].version) if history else 0
    if candidate.base_version is None:
        return current
    target = {GoldenKey(candidate.case, candidate.env, candidate.platform, phase).filename() for phase in (1, 2)}
    since = [e for e in history if int(e.version) > candidate.base_version and target & set(e.files)]
    if since or candidate.base_version > current:
        entry = since[-1] if since else None
        how = (f"v{entry.version} ({entry.action} by {entry.approver}) changed it since" if entry is not None
               else f"the case is at v{current}")
        raise ApprovalRefused(f"{candidate.target}: the candidate from run {candidate.run_id!r} was made "
                              f"against v{candidate.base_version}, but {how}; re-run golden diff to stage "
                              f"it against the current golden")
    return current


def check_finite(key: GoldenKey, run_id: str, new: MetricSeries, golden: MetricSeries | None) -> None:
    """No NaN/inf where the golden holds a number; no inf ever; no all-NaN new metric."""
    import numpy as np

    where = f"run {run_id!r}: {new.name!r} (phase {key.phase})"
    if np.isinf(new.values).any():
        step = int(new.steps[np.isinf(new.values)][0])
        raise ApprovalRefused(f"{where} is infinite at step {step}; a golden cannot hold inf")
    if np.isnan(new.values).all() and (golden is None or not np.isnan(golden.values).all()):
        raise ApprovalRefused(f"{where} has no value at any step; a golden needs numbers")
    if golden is None:
        return
    common, in_new, in_golden = np.intersect1d(new.steps, golden.steps, return_indices=True)
    bad = np.isfinite(golden.values[in_golden]) & ~np.isfinite(new.values[in_new])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ApprovalRefused(f"{where} is {new.values[in_new][i]} at step {int(common[i])} where the "
                              f"golden holds {float(golden.values[in_golden][i])!r}")


# ---------------------------------------------------------------- planning an accept

@dataclass(frozen=True, kw_only=True)
class Selection:
    """Which metrics to take from the run; the golden keeps the values of all others."""

    metrics: tuple[str, ...] = ()   # empty: every metric the run has
    only_failing: bool = False      # only metrics whose staged verdict failed

    @property
    def partial(self) -> bool:
        return bool(self.metrics) or self.only_failing


@dataclass(frozen=True, kw_only=True)
class KeyChange:
    """What one golden file gets: which metrics came from the run, which were kept."""

    key: GoldenKey
    golden: GoldenSet
    replaced: tuple[str, ...]
    added: tuple[str, ...]
    kept: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"file": self.key.filename(), "replaced": list(self.replaced),
                "added": list(self.added), "kept": list(self.kept)}


@dataclass(frozen=True, kw_only=True)
class Plan:
    candidate: Candidate
    artifact: Artifact
    base_version: int
    changes: tuple[KeyChange, ...]
    selection: Selection

    def goldens(self) -> dict[GoldenKey, GoldenSet]:
        return {c.key: c.golden for c in self.changes}

    def selection_record(self) -> dict[str, Any]:
        """What the ledger records about a (possibly selective) approval."""
        return {"partial": self.selection.partial, "metrics": list(self.selection.metrics),
                "only_failing": self.selection.only_failing,
                "files": [c.to_json() for c in self.changes]}


def recorded_selection(provenance: Any) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Read back ``selection_record`` from a ledger entry's provenance: file → (metrics taken from
    the run, metrics kept from the golden), for a selective approval only (else empty). Entries
    written before the record existed, or by adopt/rollback, have none."""
    selection = provenance.get("selection") if isinstance(provenance, dict) else None
    if not isinstance(selection, dict) or selection.get("partial") is not True:
        return {}

    def names(record: dict[str, Any], *fields: str) -> tuple[str, ...]:
        return tuple(str(n) for f in fields if isinstance(record.get(f), list) for n in record[f])

    return {record["file"]: (names(record, "replaced", "added"), names(record, "kept"))
            for record in selection.get("files") or ()
            if isinstance(record, dict) and isinstance(record.get("file"), str)}


def _run_phase_sets(artifact: Artifact) -> dict[int, GoldenSet]:
    """The run's phases as Megatron golden sets (phase 2 padded to the whole run, like ``_2nd``)."""
    from .formats import artifact_phase_golden

    sets = {}
    if 1 in artifact.phases:
        sets[1] = artifact_phase_golden(artifact, 1)
    if 2 in artifact.phases:
        first = artifact.phases[1].first_step if 1 in artifact.phases else artifact.phases[2].first_step
        sets[2] = artifact_phase_golden(artifact, 2, span=(first, artifact.phases[2].last_step))
    return sets


def _chosen(candidate: Candidate, selection: Selection, run_sets: dict[int, GoldenSet]) -> dict[int, set[str]]:
    if selection.only_failing and candidate.path is None:  # made from the run now: no verdicts to go by
        raise ApprovalRefused(f"--only-failing takes the metrics whose staged verdict failed, but run "
                              f"{candidate.run_id!r} is not staged: golden diff it first, or name --metric")
    available = {name for s in run_sets.values() for name in s.metrics}
    if selection.metrics:
        unknown = [m for m in selection.metrics if m not in available]
        if unknown:
            raise ApprovalRefused(f"run {candidate.run_id!r} has no metric {unknown[0]!r} "
                                  f"(it has: {', '.join(sorted(available))})")
    chosen = {}
    failing = candidate.failing()
    for phase, run_set in run_sets.items():
        names = set(run_set.metrics)
        if selection.metrics:
            names &= set(selection.metrics)
        if selection.only_failing and candidate.metrics:
            names &= failing.get(phase, set())
        chosen[phase] = names
    return chosen


def merge(current: GoldenSet | None, run: GoldenSet, chosen: set[str], key: GoldenKey) -> KeyChange:
    """The run's values for ``chosen`` metrics, the current golden's for everything else.

    Metric order follows the current file (new metrics appended), scalar entries are kept.
    """
    metrics: dict[str, MetricSeries] = {}
    replaced, kept = [], []
    if current is not None:
        for name, series in current.metrics.items():
            if name in chosen:
                metrics[name] = run.metrics[name]
                replaced.append(name)
            else:
                metrics[name] = series
                kept.append(name)
        kept.extend(current.scalars)
    added = [name for name in run.metrics if name in chosen and name not in metrics]
    for name in added:
        metrics[name] = run.metrics[name]
    scalars = dict(current.scalars) if current is not None else {}
    return KeyChange(key=key, golden=GoldenSet(metrics=metrics, scalars=scalars, key=key),
                     replaced=tuple(replaced), added=tuple(added), kept=tuple(kept))


def goldens_at(store: "GoldenStore", case: str, version: int) -> dict[GoldenKey, GoldenSet]:
    """The case's goldens as of ``version``, read from its immutable blobs.

    Not from the plain files: a concurrent writer replaces those just *after* its commit, so
    they can lag the ledger head, and a merge built on them would silently drop that writer's
    change. A case without history (version 0) has only its plain files.
    """
    if version == 0:
        return {key: store.read(key) for key in store.keys(case)}
    return store.read_version(case, version)


def plan_accept(store: "GoldenStore", candidate: Candidate, selection: Selection = Selection()) -> Plan | None:
    """Every check, then the new golden sets; ``None`` when the selection picks nothing."""
    from .formats import read_artifact

    try:
        artifact = read_artifact(candidate.artifact)
    except FormatError as exc:
        raise ApprovalRefused(f"{candidate.target}: cannot read run {candidate.run_id!r}: {exc}") from None
    check_run(artifact, candidate)
    base = check_base_version(store, candidate)
    goldens = goldens_at(store, candidate.case, base)
    run_sets = _run_phase_sets(artifact)
    chosen = _chosen(candidate, selection, run_sets)
    changes = []
    for phase, run_set in run_sets.items():
        if not chosen[phase]:
            continue
        key = GoldenKey(candidate.case, candidate.env, candidate.platform, phase)
        current = goldens.get(key)
        for name in sorted(chosen[phase]):
            check_finite(key, candidate.run_id, run_set.metrics[name],
                         None if current is None else current.metrics.get(name))
        change = merge(current, run_set, chosen[phase], key)
        _check_writable(store, change)
        changes.append(change)
    if not changes:
        return None
    return Plan(candidate=candidate, artifact=artifact, base_version=base, changes=tuple(changes),
                selection=selection)


def _check_writable(store: "GoldenStore", change: KeyChange) -> None:
    """The store's own validation, run before the first write of a batch (so it writes nothing)."""
    from .validate import ERROR, check_golden_set, declared_metrics

    known = declared_metrics(Path(store.case_dir(change.key.case)))
    errors = [f for f in check_golden_set(change.golden, known_metrics=known) if f.severity == ERROR]
    if errors:
        raise ApprovalRefused(f"{change.key.case}/{change.key.filename()}: {errors[0].message}")


# ---------------------------------------------------------------- accept / reject

@dataclass(frozen=True, kw_only=True)
class Outcome:
    candidate: Candidate
    operation: Operation
    entry: "LedgerEntry | None" = None   # the version written (accept)
    plan: Plan | None = None
    note: str = ""                        # why nothing was written, when nothing was


def default_approver(cwd: str | Path | None = None) -> str:
    """``git config user.name``, else $USER: who is accountable for an approval."""
    try:
        out = subprocess.run(["git", "config", "user.name"], capture_output=True, text=True,
                             timeout=10, cwd=cwd)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("USER") or getpass.getuser()


def _discard(candidate: Candidate) -> None:
    """Remove a staged candidate, unless a newer run was staged over it meanwhile."""
    if candidate.path is None:
        return
    try:
        if read_candidate(candidate.path).run_id != candidate.run_id:
            return
        candidate.path.unlink()
    except (FileNotFoundError, FormatError):
        return
    try:
        candidate.path.parent.rmdir()
    except OSError:
        pass


def _commit(store: "GoldenStore", candidate: Candidate, selection: Selection, *, reason: str,
            approver: str) -> Outcome:
    """Plan and write one accept; when another write lands first, plan again on top of it."""
    for _ in range(CONFLICT_RETRIES):
        plan = plan_accept(store, candidate, selection)
        if plan is None:
            return Outcome(candidate=candidate, operation=Operation.ACCEPT,
                           note="nothing selected (no failing metric matches the selection)")
        try:
            entry = store.write(candidate.case, plan.goldens(), approver=approver, reason=reason,
                                source_run_id=candidate.run_id, fingerprint=plan.artifact.fingerprint,
                                provenance=dict(plan.artifact.provenance, selection=plan.selection_record()),
                                expected_version=plan.base_version, action="approve")
        except VersionConflict:
            continue  # another write landed: plan again (refused if it touched this target)
        return Outcome(candidate=candidate, operation=Operation.ACCEPT, entry=entry, plan=plan)
    raise ApprovalRefused(f"{candidate.target}: the case kept changing under {CONFLICT_RETRIES} "
                          f"attempts; try again")


def apply(operation: Operation, store: "GoldenStore", candidates: Sequence[Candidate], *,
          reason: str | None = None, approver: str | None = None, selection: Selection = Selection(),
          ci: bool | None = None, allow_ci: bool = False) -> list[Outcome]:
    """Accept or reject candidates — one path for both, like insta.

    Accept: every guardrail is checked for every candidate before the first write, so a
    refusal writes nothing. Reject: the staged candidates are discarded, goldens untouched.
    """
    if operation is Operation.REJECT:
        outcomes = []
        for candidate in candidates:
            if candidate.path is None:
                raise ApprovalRefused(f"run {candidate.run_id!r} has no pending candidate to reject")
            _discard(candidate)
            outcomes.append(Outcome(candidate=candidate, operation=operation))
        return outcomes
    reason = require_reason(reason)
    refuse_in_ci(ci, allow_ci)
    targets = [c.target for c in candidates]
    duplicate = next((t for t in targets if targets.count(t) > 1), None)
    if duplicate:
        raise ApprovalRefused(f"two candidates target {duplicate}: approve one at a time")
    for candidate in candidates:
        plan_accept(store, candidate, selection)
    approver = approver or default_approver(store.root)
    outcomes = []
    for candidate in candidates:
        outcome = _commit(store, candidate, selection, reason=reason, approver=approver)
        if outcome.entry is not None:
            _discard(candidate)
        outcomes.append(outcome)
    return outcomes


# ---------------------------------------------------------------- rollback

def rollback(store: "GoldenStore", case: str, version: int, *, reason: str | None,
             approver: str | None = None, ci: bool | None = None, allow_ci: bool = False) -> "LedgerEntry":
    """A new version whose content equals ``version`` (history is never rewritten): files that
    version did not have are removed, and the entry carries that version's run and fingerprint."""
    reason = require_reason(reason)
    refuse_in_ci(ci, allow_ci)
    check_name(case)
    history = store.history(case)
    target = next((e for e in history if int(e.version) == version), None)
    if target is None:
        known = ", ".join(f"v{e.version}" for e in history) or "none"
        raise ApprovalRefused(f"{case} has no version v{version} (versions: {known})")
    current = history[-1]
    goldens: dict[GoldenKey, GoldenSet | None] = dict(store.read_version(case, version))
    head = store.read_version(case, int(current.version))
    if int(current.version) == version or head == goldens:
        raise ApprovalRefused(f"{case} v{current.version} already holds the content of v{version}")
    for key in [*head, *store.keys(case)]:
        goldens.setdefault(key, None)  # a file v{version} did not have is removed
    return store.write(case, goldens, approver=approver or default_approver(store.root), reason=reason,
                       source_run_id=target.source_run_id, fingerprint=target.fingerprint,
                       provenance=dict(_without_selection(target.provenance), rollback_to=version),
                       expected_version=int(current.version),
                       action="rollback")


def _without_selection(provenance: dict[str, Any] | None) -> dict[str, Any]:
    """A version's run provenance (fingerprint fields, model args) without what that approval picked."""
    return {k: v for k, v in (provenance or {}).items() if k not in ("selection", "rollback_to")}


# ---------------------------------------------------------------- prune

@dataclass(frozen=True, kw_only=True)
class PruneReport:
    """Goldens no case defines, and candidates no run backs."""

    orphan_goldens: tuple[Path, ...]
    stale_candidates: tuple[tuple[Path, str], ...]   # (pending file, why)

    @property
    def clean(self) -> bool:
        return not self.orphan_goldens and not self.stale_candidates


CASE_DEFINITIONS = ("case.yaml", "model_config.yaml")  # ours, and a Megatron checkout's


def prune_check(store: "GoldenStore") -> PruneReport:
    from .formats import read_artifact

    orphans = []
    for case in store.cases():
        case_dir = Path(store.case_dir(case))
        if not any((case_dir / name).is_file() for name in CASE_DEFINITIONS):
            orphans.extend(sorted(case_dir / key.filename() for key in store.keys(case)))
    stale = []
    root = pending_root(store)
    for path in sorted(root.glob("*/*.json")) if root.is_dir() else ():
        try:
            candidate = read_candidate(path)
        except FormatError as exc:
            stale.append((path, f"unreadable: {exc.reason}"))
            continue
        try:
            artifact = read_artifact(candidate.artifact)
        except FormatError:
            stale.append((path, f"run {candidate.run_id!r} is gone ({candidate.artifact})"))
            continue
        if artifact.run_id != candidate.run_id:
            stale.append((path, f"{candidate.artifact} now holds run {artifact.run_id!r}"))
            continue
        landed = _approved_since(store, candidate)
        if landed is not None:
            stale.append((path, f"run {candidate.run_id!r} was already approved as v{landed.version}"))
    return PruneReport(orphan_goldens=tuple(orphans), stale_candidates=tuple(stale))


def _approved_since(store: "GoldenStore", candidate: Candidate) -> "LedgerEntry | None":
    """The version that approved this very run after the candidate was staged (a crash between
    the commit and discarding the candidate leaves it staged)."""
    if candidate.base_version is None or candidate.case not in store.cases():
        return None
    return next((e for e in store.history(candidate.case)
                 if int(e.version) > candidate.base_version and e.source_run_id == candidate.run_id), None)


def prune(store: "GoldenStore") -> PruneReport:
    """Discard stale candidates; orphan goldens are only reported (goldens change via the ledger)."""
    report = prune_check(store)
    for path, _ in report.stale_candidates:
        path.unlink(missing_ok=True)
        try:
            path.parent.rmdir()
        except OSError:
            pass
    return report


# ---------------------------------------------------------------- review

@dataclass(frozen=True, kw_only=True)
class MetricView:
    """One metric of a candidate for review: staged verdict plus both series on one step grid."""

    phase: int
    metric: str
    verdict: str
    explanation: str
    steps: Any      # int64 array: union of golden and run steps
    golden: Any     # float64 array, NaN where absent (or all NaN: no golden)
    run: Any        # float64 array, NaN where absent
    selected: bool  # taken from the run by this approval


@dataclass(frozen=True, kw_only=True)
class CandidateView:
    candidate: Candidate
    metrics: tuple[MetricView, ...]
    problem: str | None = None   # why accepting it would be refused, known before asking


def candidate_view(store: "GoldenStore", candidate: Candidate, selection: Selection = Selection()) -> CandidateView:
    """Everything the review screen shows; a refusal found now is shown, not raised."""
    import numpy as np

    from .formats import read_artifact

    try:
        artifact = read_artifact(candidate.artifact)
    except FormatError as exc:
        return CandidateView(candidate=candidate, metrics=(), problem=str(exc))
    problem = None
    try:
        plan_accept(store, candidate, selection)
    except GoldenError as exc:
        problem = str(exc)
    staged = {(m.phase, m.metric): m for m in candidate.metrics}
    goldens = goldens_at(store, candidate.case, _current_version(store, candidate.case))
    run_sets = _run_phase_sets(artifact)
    chosen = _chosen(candidate, selection, run_sets) if problem is None else {}
    views = []
    for phase, run_set in run_sets.items():
        current = goldens.get(GoldenKey(candidate.case, candidate.env, candidate.platform, phase))
        names = list(current.metrics) if current else []
        names += [n for n in run_set.metrics if n not in names]
        for name in names:
            g = current.metrics.get(name) if current else None
            r = run_set.metrics.get(name)
            steps = np.union1d(g.steps if g is not None else [], r.steps if r is not None else []).astype(np.int64)
            views.append(MetricView(
                phase=phase, metric=name,
                verdict=staged[(phase, name)].verdict if (phase, name) in staged else ("new" if g is None else "not compared"),
                explanation=staged[(phase, name)].explanation if (phase, name) in staged else "",
                steps=steps, golden=_on_grid(steps, g), run=_on_grid(steps, r),
                selected=name in chosen.get(phase, set())))
    return CandidateView(candidate=candidate, metrics=tuple(views), problem=problem)


def _on_grid(steps: Any, series: MetricSeries | None) -> Any:
    import numpy as np

    return np.full(steps.shape, np.nan) if series is None else series.on_grid(steps)


class ReviewIO(Protocol):
    """The terminal side of ``review``: injectable so a test can script the keys."""

    def show(self, view: CandidateView, index: int, total: int) -> None: ...
    def key(self) -> str: ...                 # one key press; EOFError ends the review
    def reason(self) -> str | None: ...       # asked once, at the first accept without --reason
    def note(self, message: str) -> None: ...


REVIEW_KEYS = {"a": "accept", "r": "reject", "s": "skip", "A": "accept all remaining",
               "R": "reject all remaining", "q": "skip all remaining"}
_ACTION_OF = {"a": "accept", "r": "reject", "s": "skip", "A": "accept", "R": "reject", "q": "skip"}
_FOR_ALL_REMAINING = frozenset("ARq")


@dataclass(frozen=True, kw_only=True)
class ReviewSummary:
    accepted: tuple[Outcome, ...] = ()
    rejected: tuple[Candidate, ...] = ()
    skipped: tuple[Candidate, ...] = ()
    refused: tuple[tuple[Candidate, str], ...] = ()


def review(store: "GoldenStore", candidates: Iterable[Candidate], io: ReviewIO, *, reason: str | None = None,
           approver: str | None = None, selection: Selection = Selection(), ci: bool | None = None,
           allow_ci: bool = False) -> ReviewSummary:
    """One candidate at a time: a accept, r reject, s skip; A / R for all remaining; q quit."""
    pending = list(candidates)
    accepted: list[Outcome] = []
    rejected: list[Candidate] = []
    skipped: list[Candidate] = []
    refused: list[tuple[Candidate, str]] = []
    for_the_rest: str | None = None   # set by A / R / q
    for index, candidate in enumerate(pending):
        action = for_the_rest
        if action is None:
            io.show(candidate_view(store, candidate, selection), index, len(pending))
            key = _read_choice(io)
            action = _ACTION_OF[key]
            if key in _FOR_ALL_REMAINING:
                for_the_rest = action
        if action == "skip":
            skipped.append(candidate)
        elif action == "reject":
            apply(Operation.REJECT, store, [candidate])
            rejected.append(candidate)
        else:
            if not reason:
                reason = io.reason()
            try:
                accepted += apply(Operation.ACCEPT, store, [candidate], reason=reason, approver=approver,
                                  selection=selection, ci=ci, allow_ci=allow_ci)
            except GoldenError as exc:
                refused.append((candidate, str(exc)))
                io.note(f"not accepted: {exc}")
    return ReviewSummary(accepted=tuple(accepted), rejected=tuple(rejected), skipped=tuple(skipped),
                         refused=tuple(refused))


def _read_choice(io: ReviewIO) -> str:
    while True:
        try:
            key = io.key()
        except EOFError:
            return "q"
        if key in REVIEW_KEYS:
            return key
        io.note("keys: " + ", ".join(f"{k} {v}" for k, v in REVIEW_KEYS.items()))


def sparkline(values: Any, lo: float, hi: float, width: int = 32) -> str:
    """Values as ▁▂▃▄▅▆▇█ on a shared [lo, hi] scale (a blank where there is no value)."""
    import numpy as np

    bars = "▁▂▃▄▅▆▇█"
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return ""
    buckets = np.array_split(values, min(width, values.size))
    out = []
    for bucket in buckets:
        finite = bucket[np.isfinite(bucket)]
        if finite.size == 0:
            out.append(" ")
            continue
        v = float(finite.mean())
        level = 0 if hi <= lo else int(round((v - lo) / (hi - lo) * (len(bars) - 1)))
        out.append(bars[min(max(level, 0), len(bars) - 1)])
    return "".join(out)


def finite_range(*arrays: Any) -> tuple[float, float]:
    import numpy as np

    finite = [a[np.isfinite(a)] for a in arrays]
    finite = [a for a in finite if a.size]
    if not finite:
        return (math.nan, math.nan)
    both = np.concatenate(finite)
    return float(both.min()), float(both.max())
