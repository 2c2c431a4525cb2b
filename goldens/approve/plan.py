"""Planning an accept: which metrics come from the run, merged into the golden as of the version
the candidate was made against, every check run before anything is written."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..core.errors import FormatError
from ..core.model import Artifact, GoldenKey, GoldenSet, MetricSeries
from ..files.formats.artifact import artifact_phase_golden
from ..store import LEDGER
from .candidate import Candidate, candidate_run, target_files, target_keys
from .guardrails import ApprovalRefused, check_base_version, check_finite, check_run, check_writable
from .runs import case_of_run

if TYPE_CHECKING:
    from ..store import GoldenStore


@dataclass(frozen=True, kw_only=True)
class Selection:
    """Which metrics to take from the run; the golden keeps the values of all others."""

    metrics: tuple[str, ...] = ()   # empty: every metric the run has
    only_failing: bool = False      # only metrics whose staged verdict failed

    @property
    def partial(self) -> bool:
        return bool(self.metrics) or self.only_failing


EVERY_METRIC = Selection()  # the default: the run's every metric (frozen, so one shared instance)


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
    base_files: dict[str, str | None] | None = None   # what the target's files held when planned (git)

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


def run_phase_sets(artifact: Artifact) -> dict[int, GoldenSet]:
    """The run's phases as Megatron golden sets (phase 2 padded to the whole run, like ``_2nd``)."""
    sets = {}
    if 1 in artifact.phases:
        sets[1] = artifact_phase_golden(artifact, 1)
    if 2 in artifact.phases:
        first = artifact.phases[1].first_step if 1 in artifact.phases else artifact.phases[2].first_step
        sets[2] = artifact_phase_golden(artifact, 2, span=(first, artifact.phases[2].last_step))
    return sets


def chosen_metrics(candidate: Candidate, selection: Selection, run_sets: dict[int, GoldenSet]) -> dict[int, set[str]]:
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


def goldens_at(store: GoldenStore, case: str, version: int,
               keys: list[GoldenKey] | None = None) -> dict[GoldenKey, GoldenSet]:
    """The case's goldens as of ``version`` (only ``keys`` when given: an unreadable neighbour, such
    as another environment's ``{}`` file, is never read).

    In a ledger store from its immutable blobs, not from the plain files: a concurrent writer
    replaces those just *after* its commit, so they can lag the ledger head, and a merge built on
    them would silently drop that writer's change. A case without history (version 0) has only its
    plain files, and so has a git store, whose writes check the files they planned on
    (``base_files``) and plan again when those moved.
    """
    if version == 0 or store.backend_name != LEDGER:
        return {key: store.read(key) for key in store.keys(case) if keys is None or key in keys}
    return store.read_version(case, version, keys=keys)


def plan_accept(store: GoldenStore, candidate: Candidate, selection: Selection = EVERY_METRIC) -> Plan | None:
    """Every check, then the new golden sets; ``None`` when the selection picks nothing."""
    try:
        artifact = candidate_run(candidate)
    except FormatError as exc:
        raise ApprovalRefused(f"{candidate.target}: cannot read run {candidate.run_id!r}: {exc}") from None
    artifact = replace(artifact, case=case_of_run(store, artifact, candidate.case))
    check_run(artifact, candidate)
    base_files = store.file_hashes(candidate.case, target_files(candidate.case, candidate.env, candidate.platform))
    base = check_base_version(store, candidate)
    targets = target_keys(candidate.case, candidate.env, candidate.platform)
    goldens = goldens_at(store, candidate.case, base, keys=targets)
    run_sets = run_phase_sets(artifact)
    chosen = chosen_metrics(candidate, selection, run_sets)
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
        check_writable(store, change.key, change.golden)
        changes.append(change)
    if not changes:
        return None
    return Plan(candidate=candidate, artifact=artifact, base_version=base, changes=tuple(changes),
                selection=selection, base_files=base_files)
