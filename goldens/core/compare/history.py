"""History-aware step time: a run's step time against every approved golden of its platform.

A one-sided log-normal prediction bound once the history holds ``stats.MIN_HISTORY`` samples;
below that the summary rule's own outcome stands. Either way the rule says which check applied.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..align import Aligned
from ..model import MetricSeries, valued_span
from ..modes.common import Context, Outcome, counted_problems, window_mask
from ..policy.schema import MetricPolicy
from ..precision import derived_precision
from ..result import Rule
from ..stats import MIN_HISTORY, history_timing_check, reduce_window


def uses_history(policy: MetricPolicy) -> bool:
    """Judged against the approved history: a one-sided ``summary`` metric judged only on its own
    platform — the shape of the step-time kind, read from the policy (data), never the name."""
    return policy.mode == "summary" and policy.direction != "both" and policy.only_on_same_platform


def _ran_part(series: MetricSeries, phase: int) -> MetricSeries:
    """A phase-2 golden from the step it ran (its NaN padding dropped), so the warm-up skip counts
    from there — as ``window_mask`` does for the golden."""
    if phase != 2:
        return series
    span = valued_span(series.values)
    return MetricSeries(series.name, series.steps[span], series.values[span])


def judge_by_history(name: str, al: Aligned, policy: MetricPolicy, ctx: Context, outcome: Outcome, rule: Rule,
                     history: Sequence[MetricSeries], origin: str) -> tuple[Outcome, Rule]:
    """Step time against its approved history (same platform: the history is the golden's).

    Each approved version is reduced as the summary check reduces the golden. With at least
    ``stats.MIN_HISTORY`` positive values the one-sided log-normal prediction bound of
    ``stats.history_timing_check`` decides; below that the summary rule's ``outcome`` stands.
    Either way the rule's text and params say which check applied and on how many samples.
    """
    golden_steps = al.step[al.golden_row]
    window = policy.window_for(int(golden_steps[-1]) if golden_steps.size else None)
    past = [_ran_part(s, ctx.phase) for s in history]
    reduced = [reduce_window(s.steps, s.values, skip_warmup=policy.skip_warmup, window=window,
                             reduce=policy.reduce) for s in past]
    usable = [s for s, v in zip(past, reduced, strict=True) if not np.isnan(v)]
    params = {**rule.params, "history_samples": len(usable)}
    if len(usable) < MIN_HISTORY or any(v <= 0 for v in reduced if not np.isnan(v)):
        why = (f"{len(usable)} < {MIN_HISTORY} approved samples" if len(usable) < MIN_HISTORY
               else "a non-positive approved value")
        return outcome, Rule(rule.mode, {**params, "baseline": "golden"},
                             f"{rule.text} [rtol rule: the history has {why}]")
    # The candidate exactly as the summary check saw it: on the golden's grid, inside the judged
    # window, everything else NaN (so the check's own warm-up skip and window remove nothing more).
    judged = window_mask(al, policy, ctx) & al.golden_row & al.actual_row
    candidate = MetricSeries(name, al.step[al.golden_row], np.where(judged, al.actual, np.nan)[al.golden_row])
    check = history_timing_check(candidate, usable, skip_warmup=policy.skip_warmup, window=window,
                                 reduce=policy.reduce, direction=policy.direction, min_history=MIN_HISTORY)
    n_problems = int(np.count_nonzero(counted_problems(outcome.status, policy)))
    failing = (0 if check.passed else 1) + n_problems
    text = (("within the rule: " if failing == 0 else "out of tolerance: ") + check.text
            + f"; geometric mean {derived_precision(check.baseline)}, golden {derived_precision(outcome.golden_value)}")
    if n_problems:
        text += f"; {n_problems} steps missing or NaN in the window"
    side = "x <= exp(m + w)" if policy.direction == "increase_is_bad" else "x >= exp(m − w)"
    rule_text = (f"history bound over {check.n_history} approved goldens of this platform: {policy.reduce} of the "
                 f"window {side}, m = mean log, w = t(0.995, n−1)·s_log·√(1 + 1/n)")
    return (Outcome(failing > 0, outcome.status, failing, 0, outcome.total_steps, None, outcome.golden_value,
                    check.candidate, text),
            Rule(rule.mode, {**params, "baseline": "history", "bound": check.bound},
                 f"{rule_text} — {origin}" if origin else rule_text))
