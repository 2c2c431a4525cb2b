"""The review loop (insta's ``cargo insta review``): one candidate at a time, accept / reject /
skip, or the same for all remaining. The terminal is injected (``ReviewIO``), so a test scripts the
keys; the screen itself is ``goldens.cli.review_screen``."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..core.errors import FormatError, GoldenError
from ..core.model import GoldenKey, MetricSeries
from .candidate import Candidate, candidate_run, current_version, target_keys
from .operations import Operation, Outcome, apply
from .plan import EVERY_METRIC, Selection, chosen_metrics, goldens_at, plan_accept, run_phase_sets

if TYPE_CHECKING:
    from ..store import GoldenStore


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


def candidate_view(store: GoldenStore, candidate: Candidate, selection: Selection = EVERY_METRIC) -> CandidateView:
    """Everything the review screen shows; a refusal found now is shown, not raised."""
    try:
        artifact = candidate_run(candidate)
    except FormatError as exc:
        return CandidateView(candidate=candidate, metrics=(), problem=str(exc))
    problem = None
    try:
        plan_accept(store, candidate, selection)
    except GoldenError as exc:
        problem = str(exc)
    staged = {(m.phase, m.metric): m for m in candidate.metrics}
    targets = target_keys(candidate.case, candidate.env, candidate.platform)
    goldens = goldens_at(store, candidate.case, current_version(store, candidate.case), keys=targets)
    run_sets = run_phase_sets(artifact)
    chosen = chosen_metrics(candidate, selection, run_sets) if problem is None else {}
    views = []
    for phase, run_set in run_sets.items():
        current = goldens.get(GoldenKey(candidate.case, candidate.env, candidate.platform, phase))
        names = list(current.metrics) if current else []
        names += [n for n in run_set.metrics if n not in names]
        for name in names:
            g = current.metrics.get(name) if current else None
            r = run_set.metrics.get(name)
            steps = np.union1d(g.steps if g is not None else [], r.steps if r is not None else []).astype(np.int64)
            was = staged.get((phase, name))
            views.append(MetricView(
                phase=phase, metric=name,
                verdict=was.verdict if was is not None else ("new" if g is None else "not compared"),
                explanation=was.explanation if was is not None else "",
                steps=steps, golden=_on_grid(steps, g), run=_on_grid(steps, r),
                selected=name in chosen.get(phase, set())))
    return CandidateView(candidate=candidate, metrics=tuple(views), problem=problem)


def _on_grid(steps: Any, series: MetricSeries | None) -> Any:
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


def review(store: GoldenStore, candidates: Iterable[Candidate], io: ReviewIO, *, reason: str | None = None,
           approver: str | None = None, selection: Selection = EVERY_METRIC, ci: bool | None = None,
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
            apply(Operation.REJECT, store, [candidate], ci=ci, allow_ci=allow_ci)
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
