"""History-aware timing: the approved iteration-time history of the golden's platform is the
baseline of a one-sided statistical check once it holds 5 samples; below that, the rtol rule.

The engine stays pure (the history rides on the reference ``Side``); ``diff_inputs`` gathers
it from the store's ledger. Hand computation used throughout: five approved goldens whose
steady-window medians are 1.00, 1.02, 0.98, 1.01, 0.99 s give

    bound = exp(mean(log y) + t(0.995, 4) · s_log · √(1 + 1/5)) = 1.0829…

while the rtol rule against the current golden (median 1.00) allows 1.00 · (1 + 0.10) = 1.10.
A run at 1.09 s therefore passes the rtol rule and fails the history bound.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from goldens import inputs as diff_inputs
from goldens.cli import app
from goldens.core.compare import Side, compare
from goldens.core.model import GoldenKey, MetricSeries
from goldens.core.policy import build_policies
from goldens.core.result import Verdict
from tests.builders import golden_set, make_store, write_run

T_995_4 = 4.604094871415897  # Student t, 0.995 quantile, 4 degrees of freedom (tables: 4.6041)
MEDIANS = (1.00, 1.02, 0.98, 1.01, 0.99)
LOGS = [math.log(m) for m in MEDIANS]
S_LOG = math.sqrt(sum((x - sum(LOGS) / 5) ** 2 for x in LOGS) / 4)
BOUND = math.exp(sum(LOGS) / 5 + T_995_4 * S_LOG * math.sqrt(1 + 1 / 5))
STEPS = np.arange(1, 11)
WARMUP = 5.0  # the first two steps (skip_warmup: 2) are slow and must not count


def timing(steady: float, steps: np.ndarray = STEPS) -> MetricSeries:
    values = np.full(steps.shape, steady)
    values[:2] = WARMUP
    return MetricSeries("iteration-time", steps, values)


def sides(candidate: float, history: tuple[float, ...] | None, *, golden: float = 1.00,
          candidate_platform: str = "cpu") -> tuple[Side, Side]:
    reference = Side("golden", {1: {"iteration-time": timing(golden)}}, platform="cpu",
                     history=None if history is None else {1: {"iteration-time": tuple(map(timing, history))}})
    run = Side("run", {1: {"iteration-time": timing(candidate)}}, platform=candidate_platform)
    return reference, run


def verdict(candidate: float, history: tuple[float, ...] | None, **kw):
    reference, run = sides(candidate, history, **kw)
    result = compare(reference, run, build_policies(preset_name="default"), check_resume=False)
    return result.phases[0].metrics[0]


def test_the_hand_computed_bound():
    assert pytest.approx(0.015813457, rel=1e-7) == S_LOG
    assert pytest.approx(1.0829141, rel=1e-7) == BOUND
    assert 1.07 < BOUND < 1.09 < 1.10  # the two rules disagree on 1.09


def test_four_history_samples_keep_the_rtol_rule():
    history = MEDIANS[:4]
    slow = verdict(1.09, history)
    assert slow.verdict == Verdict.PASS  # 1.09 <= 1.00 · 1.10
    assert "[rtol rule: the history has 4 < 5 approved samples]" in slow.rule.text
    assert slow.rule.params["history_samples"] == 4 and slow.rule.params["baseline"] == "golden"
    too_slow = verdict(1.11, history)
    assert too_slow.verdict == Verdict.FAIL and too_slow.actual_value == 1.11


def test_five_history_samples_apply_the_statistical_bound():
    inside = verdict(1.07, MEDIANS)
    assert inside.verdict == Verdict.PASS
    assert inside.rule.text.startswith("history bound over 5 approved goldens of this platform")
    assert inside.rule.params["history_samples"] == 5 and inside.rule.params["baseline"] == "history"
    assert inside.rule.params["bound"] == pytest.approx(BOUND, rel=1e-9)  # t from tables vs scipy: 1e-11
    assert "history of 5 approved runs" in inside.explanation

    beyond = verdict(1.09, MEDIANS)  # passes the rtol rule, fails the history bound
    assert beyond.verdict == Verdict.FAIL and not beyond.passed
    assert beyond.actual_value == 1.09 and beyond.golden_value == 1.00
    assert beyond.explanation.startswith("out of tolerance: history of 5 approved runs: median 1.09 <= 1.08291")


def test_faster_than_the_history_is_never_a_failure():
    assert verdict(0.5, MEDIANS).verdict == Verdict.PASS


def test_no_history_is_the_plain_rule_and_other_platforms_are_only_reported():
    plain = verdict(1.09, None)  # not from a store: the rule as before, no annotation
    assert plain.verdict == Verdict.PASS and "history" not in plain.rule.text
    elsewhere = verdict(5.0, MEDIANS, candidate_platform="dgx_h100")
    assert elsewhere.verdict == Verdict.SKIPPED and "other platform" in elsewhere.explanation
    assert "history" not in elsewhere.rule.text


def test_history_applies_by_policy_shape_not_to_two_sided_or_cross_platform_metrics():
    """A memory-like rule (one-sided summary, judged on any platform) keeps its rtol rule."""
    policies = build_policies(preset_name="default", document={
        "metrics": {"iteration-time": {"only_on_same_platform": False}}}, document_source="test")
    reference, run = sides(1.09, MEDIANS)
    metric = compare(reference, run, policies, check_resume=False).phases[0].metrics[0]
    assert metric.verdict == Verdict.PASS and "history" not in metric.rule.text


def test_a_resumed_phase_counts_its_warm_up_from_the_first_step_it_ran():
    """A ``_2nd`` golden lists steps 1..10 as NaN; the resumed warm-up (11, 12) is slow."""
    steps = np.arange(1, 21)

    def second(steady: float, padded: bool) -> MetricSeries:
        values = np.full(steps.shape, steady)
        values[10:12] = WARMUP
        if padded:
            values[:10] = np.nan
            return MetricSeries("iteration-time", steps, values)
        return MetricSeries("iteration-time", steps[10:], values[10:])

    reference = Side("golden", {2: {"iteration-time": second(1.00, True)}}, platform="cpu",
                     history={2: {"iteration-time": tuple(second(m, True) for m in MEDIANS)}})
    policies = build_policies(preset_name="default")
    for candidate, expected in ((1.07, Verdict.PASS), (1.09, Verdict.FAIL)):
        run = Side("run", {2: {"iteration-time": second(candidate, False)}}, platform="cpu")
        metric = compare(reference, run, policies, check_resume=False).phases[0].metrics[0]
        assert metric.verdict == expected and metric.rule.params["history_samples"] == 5
        assert metric.actual_value == candidate


# ---------------------------------------------------------------- the store's ledger as the history

CASE = "tiny"


def timing_values(steady: float) -> dict[int, float]:
    return {int(s): float(v) for s, v in zip(STEPS, timing(steady).values, strict=True)}


@pytest.fixture
def store_with_history(tmp_path):
    """Six ledger entries for dev/cpu: five distinct timings and a rollback to the first one
    (the same content again: no new sample); plus an lts golden that must not count."""
    store = make_store(tmp_path / "store", (CASE,))
    key = GoldenKey(CASE, "dev", "cpu", 1)
    for median in (*MEDIANS[:4], MEDIANS[0]):
        store.write(CASE, {key: golden_set({"iteration-time": timing_values(median)})}, approver="t", reason="r")
    store.write(CASE, {GoldenKey(CASE, "lts", "cpu", 1): golden_set({"iteration-time": timing_values(3.0)})},
                approver="t", reason="another env")
    return store


def test_approved_history_is_one_sample_per_distinct_content_of_this_golden(store_with_history):
    history = diff_inputs.approved_history(store_with_history, CASE, "dev", "cpu")
    medians = [float(np.median(s.values[2:])) for s in history[1]["iteration-time"]]
    assert medians == list(MEDIANS[:4])  # oldest first; the rollback and the lts golden add nothing
    loaded = diff_inputs.load_store_golden(store_with_history, CASE, "dev", "cpu")
    assert len(loaded.side.history[1]["iteration-time"]) == 4


def test_golden_diff_uses_the_ledger_history(store_with_history, tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "1")  # nothing staged for review
    store = store_with_history
    policy = tmp_path / "timing.yaml"
    policy.write_text(yaml.safe_dump({"metrics": {"iteration-time": {"rtol": 0.10}}}))
    runs = tmp_path / "runs"
    # 1.085 s: within the rtol rule against either current golden (1.00 · 1.1, then 0.99 · 1.1 = 1.089)
    # but beyond the history bound 1.0829… once the ledger holds five distinct timings.
    slow = write_run(runs, CASE, "slow", {"iteration-time": timing_values(1.085)})

    def diff() -> tuple[int, dict]:
        result = CliRunner().invoke(app, ["diff", str(slow), "--store", str(store.root), "--policy", str(policy),
                                          "--format", "json"])
        metric = json.loads(result.stdout)["phases"][0]["metrics"][0]
        return result.exit_code, metric

    code, metric = diff()  # four distinct approved timings: the rtol rule
    assert code == 0 and metric["rule"]["params"]["history_samples"] == 4
    store.write(CASE, {GoldenKey(CASE, "dev", "cpu", 1): golden_set({"iteration-time": timing_values(MEDIANS[4])})},
                approver="t", reason="fifth", ci=False)  # approved by a person, not by the CI job diffing
    code, metric = diff()  # the fifth: the statistical bound, and 1.085 is beyond it
    assert code == 1 and metric["verdict"] == "fail"
    assert metric["rule"]["params"]["history_samples"] == 5
    assert metric["rule"]["params"]["bound"] == pytest.approx(BOUND, rel=1e-9)  # t from tables vs scipy: 1e-11
