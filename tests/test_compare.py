"""The comparison engine: modes, directions, alignment statuses, integer metrics, fingerprints,
the honest failing-step count (Megatron #3097), drift surfacing, the resume check.

Every expectation is computed by hand in the test (see the comments next to the numbers).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from goldens.core.compare import (
    Context,
    Side,
    align,
    compare,
    compare_metric,
    decide_regime,
    mean_relative_diff,
    side_from_artifact,
)
from goldens.core.model import Artifact, Phase
from goldens.core.policy import MetricPolicy, build_policies, parse_metric_policy, preset
from goldens.core.precision import full_precision
from goldens.core.result import ComparisonResult, Verdict
from tests.builders import series

APPROX = Context(phase=1, exact=False, same_platform=True)
EXACT = Context(phase=1, exact=True, same_platform=True, exact_reason="fingerprints equal")


def pol(**kw):
    return parse_metric_policy(kw, "test")


def statuses(verdict):
    return dict(zip(verdict.steps.step.tolist(), verdict.steps.statuses().tolist(), strict=True))


def side(label, metrics, phase2=None, **kw):
    phases = {1: {m.name: m for m in metrics}}
    if phase2 is not None:
        phases[2] = {m.name: m for m in phase2}
    return Side(label=label, phases=phases, **kw)


# ---------------------------------------------------------------- approx, exact, direction

def test_approx_counts_each_step_outside_rtol():
    g = series("lm loss", [1, 2, 3, 4], [10.0, 10.0, 10.0, 10.0])
    a = series("lm loss", [1, 2, 3, 4], [10.4, 10.5, 10.6, 9.3])
    # threshold 0.05*10 = 0.5: |0.4| ok, |0.5| ok (boundary), |0.6| bad, |-0.7| bad.
    v = compare_metric("lm loss", g, a, pol(rtol=0.05), APPROX)
    assert v.verdict == Verdict.FAIL and not v.passed
    assert (v.failing_steps, v.allowed_failing_steps, v.total_steps) == (2, 0, 4)
    assert statuses(v) == {1: "pass", 2: "pass", 3: "fail", 4: "fail"}
    assert v.worst_step == 4  # 0.7/0.5 beats 0.6/0.5
    assert (v.golden_value, v.actual_value) == (10.0, 9.3)
    assert v.delta == pytest.approx(-0.7) and v.delta_pct == pytest.approx(-7.0)
    assert "2 of 4 steps out of tolerance" in v.explanation and "worst step 4" in v.explanation


def test_allowance_lets_exactly_that_many_steps_fail():
    g = series("x", [1, 2, 3, 4], [10.0] * 4)
    a = series("x", [1, 2, 3, 4], [10.4, 10.5, 10.6, 9.3])
    assert compare_metric("x", g, a, pol(rtol=0.05, max_failing_steps=2), APPROX).verdict == Verdict.PASS
    assert compare_metric("x", g, a, pol(rtol=0.05, max_failing_steps=1), APPROX).verdict == Verdict.FAIL


def test_atol_is_a_floor_under_the_relative_tolerance():
    g = series("x", [1, 2], [0.0, 100.0])
    a = series("x", [1, 2], [0.3, 101.0])
    # step 1: thr = max(0.5, 0) = 0.5 ≥ 0.3 ok; step 2: thr = max(0.5, 0.02*100=2) ok.
    assert compare_metric("x", g, a, pol(rtol=0.02, atol=0.5), APPROX).verdict == Verdict.PASS
    # atol 0.2: step 1 fails (0.3 > 0.2).
    v = compare_metric("x", g, a, pol(rtol=0.02, atol=0.2), APPROX)
    assert statuses(v) == {1: "fail", 2: "pass"}


@pytest.mark.parametrize("direction, expected", [
    ("both", {1: "fail", 2: "pass", 3: "fail"}),
    ("increase_is_bad", {1: "pass", 2: "pass", 3: "fail"}),
    ("decrease_is_bad", {1: "fail", 2: "pass", 3: "pass"}),
])
def test_direction_decides_which_side_of_the_band_fails(direction, expected):
    g = series("x", [1, 2, 3], [10.0, 10.0, 10.0])
    a = series("x", [1, 2, 3], [8.0, 10.2, 12.0])  # -20 %, +2 %, +20 % against rtol 5 %
    v = compare_metric("x", g, a, pol(rtol=0.05, direction=direction), APPROX)
    assert statuses(v) == expected


def test_exact_mode_is_bit_equality():
    one_ulp = np.nextafter(10.0, 11.0)
    g = series("x", [1, 2, 3], [10.0, 2.5, np.nan])
    a = series("x", [1, 2, 3], [one_ulp, 2.5, np.nan])
    v = compare_metric("x", g, a, pol(mode="exact"), APPROX)
    assert statuses(v) == {1: "fail", 2: "pass", 3: "empty"}
    assert v.failing_steps == 1 and v.verdict == Verdict.FAIL
    assert v.rule.mode == "exact"


def test_infinities_equal_on_both_sides_pass_and_opposite_ones_fail():
    g = series("x", [1, 2], [np.inf, np.inf])
    a = series("x", [1, 2], [np.inf, -np.inf])
    v = compare_metric("x", g, a, pol(rtol=0.05), APPROX)
    assert statuses(v) == {1: "pass", 2: "fail"}


# ---------------------------------------------------------------- alignment: missing, extra, NaN

def test_every_aligned_step_gets_an_explicit_status():
    g = series("x", [1, 2, 3, 4, 5, 7, 8], [1.0, 1.0, 1.0, 1.0, 1.0, np.nan, np.nan])
    a = series("x", [1, 2, 4, 6, 7], [1.0, 1.0, np.nan, 1.0, 1.0])
    v = compare_metric("x", g, a, pol(rtol=0.05), APPROX)
    assert statuses(v) == {1: "pass", 2: "pass", 3: "missing", 4: "nan_actual", 5: "missing",
                           6: "extra", 7: "nan_golden", 8: "empty"}
    # Failing: 2 missing + nan_actual + nan_golden = 4 of the golden's 7 listed steps.
    assert (v.failing_steps, v.total_steps) == (4, 7)
    assert v.step_counts == {"pass": 2, "missing": 2, "nan_actual": 1, "extra": 1, "nan_golden": 1, "empty": 1}
    assert "2 missing in the run" in v.explanation and "1 NaN in the run" in v.explanation


def test_on_missing_and_on_nan_ignore_leave_only_value_failures():
    g = series("x", [1, 2, 3, 4], [1.0, 1.0, 1.0, 1.0])
    a = series("x", [1, 2, 4], [1.0, np.nan, 1.0])
    assert compare_metric("x", g, a, pol(rtol=0.05), APPROX).failing_steps == 2
    assert compare_metric("x", g, a, pol(rtol=0.05, on_missing="ignore"), APPROX).failing_steps == 1
    v = compare_metric("x", g, a, pol(rtol=0.05, on_missing="ignore", on_nan="ignore"), APPROX)
    assert v.failing_steps == 0 and v.verdict == Verdict.PASS


def test_truncated_run_fails_by_default_and_passes_on_overlap_with_on_missing_ignore():
    steps = np.arange(1, 101)
    g = series("lm loss", steps, 10.0 - steps * 0.01)
    a = series("lm loss", steps[:50], 10.0 - steps[:50] * 0.01)
    v = compare_metric("lm loss", g, a, pol(rtol=0.05), APPROX)
    assert (v.failing_steps, v.total_steps, v.verdict) == (50, 100, Verdict.FAIL)
    v = compare_metric("lm loss", g, a, pol(rtol=0.05, on_missing="ignore"), APPROX)
    assert (v.failing_steps, v.verdict) == (0, Verdict.PASS)


def test_different_grids_align_on_the_union_of_steps():
    g = series("x", [1, 5, 10, 15], [4.0, 3.0, 2.0, 1.0])
    a = series("x", np.arange(1, 16), np.linspace(4.0, 1.0, 15))
    al = align(g, a)
    assert al.step.tolist() == list(range(1, 16))
    assert al.golden_row.sum() == 4 and al.actual_row.sum() == 15
    v = compare_metric("x", g, a, pol(rtol=0.5, on_missing="ignore"), APPROX)
    assert v.step_counts["extra"] == 11 and v.total_steps == 4


def test_missing_metric_and_new_metric_verdicts():
    ps = preset("default")
    ref = side("ref", [series("lm loss", [1], [1.0]), series("num-zeros", [1], [3.0])])
    cand = side("cand", [series("lm loss", [1], [1.0]), series("grad-norm", [1], [0.5])])
    result = compare(ref, cand, ps)
    by_name = {m.metric: m for m in result.metric_verdicts()}
    assert by_name["num-zeros"].verdict == Verdict.MISSING and not by_name["num-zeros"].passed
    assert by_name["grad-norm"].verdict == Verdict.NEW and by_name["grad-norm"].passed
    assert result.verdict == Verdict.FAIL and result.exit_code == 1
    ignoring = build_policies(case_metrics={"num-zeros": {"on_missing": "ignore"}})
    assert compare(ref, cand, ignoring).verdict == Verdict.PASS


# ---------------------------------------------------------------- integer metrics

def test_num_zeros_default_is_max_of_20_percent_and_one_count():
    p = preset("default").resolve("num-zeros").policy
    g = series("num-zeros", [1, 2, 3, 4], [3.0, 3.0, 100.0, 100.0])
    a = series("num-zeros", [1, 2, 3, 4], [4.0, 5.0, 120.0, 121.0])
    # step 1: thr max(1, 0.6) = 1, |1| ok; step 2: |2| > 1; step 3: thr 20, |20| ok; step 4: |21| > 20.
    v = compare_metric("num-zeros", g, a, p, APPROX)
    assert statuses(v) == {1: "pass", 2: "fail", 3: "pass", 4: "fail"}
    assert "golden 3, actual 5" in v.explanation or "golden 100, actual 121" in v.explanation


def test_integer_floors_the_threshold_to_whole_counts():
    g = series("c", [1], [7.0])
    a = series("c", [1], [8.2])  # |Δ| = 1.2; 0.2*7 = 1.4 → floor 1 for counts
    assert compare_metric("c", g, a, pol(rtol=0.2), APPROX).verdict == Verdict.PASS
    assert compare_metric("c", g, a, pol(rtol=0.2, integer=True), APPROX).verdict == Verdict.FAIL


# ---------------------------------------------------------------- summary mode

def test_summary_median_after_warmup_one_sided():
    p = preset("default").resolve("iteration-time").policy  # median, skip 2, +10 % is bad
    steps = np.arange(1, 11)
    g = series("iteration-time", steps, [5.0, 5.0] + [1.0] * 8)
    slower5 = series("iteration-time", steps, [9.0, 9.0] + [1.05] * 8)
    slower20 = series("iteration-time", steps, [1.0, 1.0] + [1.2] * 8)
    faster = series("iteration-time", steps, [1.0, 1.0] + [0.5] * 8)
    v = compare_metric("iteration-time", g, slower5, p, APPROX)
    assert v.verdict == Verdict.PASS and (v.golden_value, v.actual_value) == (1.0, 1.05)
    assert statuses(v)[1] == "skipped" and statuses(v)[3] == "reduced" and v.total_steps == 8
    assert compare_metric("iteration-time", g, slower20, p, APPROX).verdict == Verdict.FAIL
    assert compare_metric("iteration-time", g, faster, p, APPROX).verdict == Verdict.PASS
    assert compare_metric("iteration-time", g, slower20, p,
                          Context(phase=1, exact=False, same_platform=False)).verdict == Verdict.SKIPPED


def test_summary_memory_peak_excludes_the_first_step():
    p = preset("default").resolve("mem-max-allocated-bytes").policy
    g = series("mem-max-allocated-bytes", [1, 2, 3, 4], [100.0, 10.0, 10.0, 10.0])
    ok = series("mem-max-allocated-bytes", [1, 2, 3, 4], [500.0, 10.0, 10.4, 10.0])   # peak 10.4: +4 %
    bad = series("mem-max-allocated-bytes", [1, 2, 3, 4], [5.0, 10.0, 10.6, 10.0])    # peak 10.6: +6 %
    v = compare_metric("m", g, ok, p, APPROX)
    assert v.verdict == Verdict.PASS and (v.golden_value, v.actual_value) == (10.0, 10.4)
    assert compare_metric("m", g, bad, p, APPROX).verdict == Verdict.FAIL


def test_warmup_of_a_resumed_phase_starts_at_its_first_step_not_at_the_2nd_file_padding():
    # Megatron's _2nd golden spans 1..8 with "nan" for 1..4; the resumed phase ran 5..8. Its first
    # step after loading the checkpoint (5) is the warm-up to skip, not the padding step 1.
    p = preset("default").resolve("cpu-max-rss-bytes").policy  # max, skip 1, +5 % is bad
    g = series("cpu-max-rss-bytes", np.arange(1, 9), [np.nan] * 4 + [300.0, 100.0, 100.0, 100.0])
    a = series("cpu-max-rss-bytes", np.arange(5, 9), [900.0, 100.0, 104.0, 100.0])  # load spike at 5
    v = compare_metric("cpu-max-rss-bytes", g, a, p, Context(phase=2, exact=False, same_platform=True))
    # The padding and the warm-up step lie before the judged window; neither fails nor is missing.
    assert statuses(v) == {1: "skipped", 2: "skipped", 3: "skipped", 4: "skipped",
                           5: "skipped", 6: "reduced", 7: "reduced", 8: "reduced"}
    assert (v.verdict, v.golden_value, v.actual_value, v.total_steps) == (Verdict.PASS, 100.0, 104.0, 3)
    # Phase 1 has no padding: its first listed step is the warm-up, whatever it holds.
    v1 = compare_metric("cpu-max-rss-bytes", g, a, p, APPROX)
    assert statuses(v1)[1] == "skipped" and statuses(v1)[5] == "reduced" and v1.verdict == Verdict.FAIL


@pytest.mark.parametrize("reduce, expected", [("mean", 2.5), ("max", 4.0), ("min", 1.0), ("last", 2.0),
                                              ("median", 2.5)])
def test_summary_reducers(reduce, expected):
    g = series("x", [1, 2, 3, 4], [1.0, 3.0, 4.0, 2.0])
    v = compare_metric("x", g, g, pol(mode="summary", reduce=reduce), APPROX)
    assert v.golden_value == expected and v.verdict == Verdict.PASS


def test_window_with_no_golden_steps_is_skipped_and_warned():
    ps = build_policies(case_metrics={"x": {"window": [100, 200]}})
    ref = side("r", [series("x", [1, 2], [1.0, 1.0])])
    result = compare(ref, ref, ps)
    v = result.metric_verdicts()[0]
    assert v.verdict == Verdict.SKIPPED and v.passed
    assert any("no golden values in the judged window" in w for w in result.warnings)


# ---------------------------------------------------------------- honest failing-step count (#3097)

def _perturbed(total, failing, rel=0.2):
    steps = np.arange(1, total + 1)
    golden = 10.0 + np.sin(steps)  # 9..11: never 0
    actual = golden.copy()
    actual[:failing] *= 1.0 + rel
    return series("lm loss", steps, golden), series("lm loss", steps, actual)


def test_issue_3097_179_of_200_failing_steps_fail():
    g, a = _perturbed(200, 179)
    v = compare_metric("lm loss", g, a, preset("megatron").resolve("lm loss").policy, APPROX)
    assert (v.failing_steps, v.allowed_failing_steps, v.total_steps) == (179, 2, 200)
    assert v.verdict == Verdict.FAIL
    # Megatron's old check passed this run: mean(is_close) = 21/200 = 0.105 >= 2/200.
    is_close = np.isclose(a.values, g.values, rtol=0.05, atol=0)
    assert np.mean(is_close) >= 2 / 200


@pytest.mark.parametrize("total, failing, verdict", [
    (200, 2, Verdict.PASS), (200, 3, Verdict.FAIL),
    (100, 1, Verdict.PASS), (100, 2, Verdict.FAIL),
    (50, 1, Verdict.PASS), (50, 2, Verdict.FAIL),
    (5000, 50, Verdict.PASS), (5000, 51, Verdict.FAIL),
    (10000, 50, Verdict.PASS), (10000, 51, Verdict.FAIL),  # the allowance is capped at 50
])
def test_megatron_allowance_boundary(total, failing, verdict):
    g, a = _perturbed(total, failing)
    v = compare_metric("lm loss", g, a, preset("megatron").resolve("lm loss").policy, APPROX)
    assert v.failing_steps == failing and v.verdict == verdict


# ---------------------------------------------------------------- drift surfaced even when passing

@pytest.mark.parametrize("rel", [0.01, -0.01])
def test_one_percent_drift_on_every_step_passes_but_shows_in_mean_rel_diff(rel):
    steps = np.arange(1, 101)
    golden = 10.0 - 0.01 * steps
    g = series("lm loss", steps, golden)
    a = series("lm loss", steps, golden * (1.0 + rel))
    result = compare(side("g", [g]), side("a", [a]), preset("default"))
    v = result.metric_verdicts()[0]
    assert v.verdict == Verdict.PASS and result.passed
    assert v.mean_rel_diff == pytest.approx(rel, abs=1e-12)
    assert f"mean rel diff {100 * rel:+.3g} %" in v.explanation


def test_mean_relative_diff_is_signed_and_skips_zero_goldens():
    al = align(series("x", [1, 2, 3], [0.0, 2.0, 4.0]), series("x", [1, 2, 3], [1.0, 2.2, 3.6]))
    # (2.2-2)/2 = +0.1, (3.6-4)/4 = -0.1 → mean 0; the zero golden is skipped.
    assert mean_relative_diff(al) == pytest.approx(0.0, abs=1e-15)


# ---------------------------------------------------------------- fingerprints

def test_regime_exact_when_fingerprints_equal():
    r = decide_regime(side("a", [], fingerprint="abc"), side("b", [], fingerprint="abc"))
    assert r.exact_applied and r.reason == "fingerprints equal" and r.differing_fields == ()


def test_regime_approx_names_the_differing_fields():
    fa = {"device": "cpu:Xeon", "versions": {"torch": "2.4.0", "megatron-core": "0.16.1"}, "tp": 2}
    fb = {"device": "cpu:Xeon", "versions": {"torch": "2.5.0", "megatron-core": "0.16.1"}, "tp": 2, "dp": 1}
    r = decide_regime(side("a", [], fingerprint="h1", fingerprint_fields=fa),
                      side("b", [], fingerprint="h2", fingerprint_fields=fb))
    assert not r.exact_applied
    assert r.differing_fields == ("dp", "versions.torch")
    assert "versions.torch" in r.reason


@pytest.mark.parametrize("ref, cand, reason", [
    (None, None, "neither side has a recorded fingerprint"),
    (None, "x", "the reference has no recorded fingerprint"),
    ("x", None, "the candidate has no recorded fingerprint"),
])
def test_regime_missing_fingerprint_is_approx(ref, cand, reason):
    r = decide_regime(side("a", [], fingerprint=ref), side("b", [], fingerprint=cand))
    assert not r.exact_applied and r.reason == reason


def test_regime_can_be_forced_either_way():
    same = (side("a", [], fingerprint="x"), side("b", [], fingerprint="x"))
    assert not decide_regime(*same, force="approx").exact_applied
    forced = decide_regime(side("a", []), side("b", []), force="exact")
    assert forced.exact_applied and forced.forced == "exact" and forced.reason.startswith("forced --exact")


def test_deterministic_metrics_are_exact_under_equal_fingerprints_only():
    one_ulp = np.nextafter(10.0, 11.0)
    g = series("lm loss", [1, 2], [10.0, 9.0])
    a = series("lm loss", [1, 2], [one_ulp, 9.0])
    t = series("iteration-time", [1, 2, 3, 4], [1.0, 1.0, 1.0, 1.0])
    t2 = series("iteration-time", [1, 2, 3, 4], [1.0, 1.0, 1.01, 1.01])
    ref = side("g", [g, t], fingerprint="fp")
    same = compare(ref, side("a", [a, t2], fingerprint="fp"), preset("default"))
    other = compare(ref, side("a", [a, t2], fingerprint="other"), preset("default"))
    loss_same, time_same = same.metric_verdicts()
    assert same.exact_applied and loss_same.verdict == Verdict.FAIL and loss_same.rule.mode == "exact"
    assert time_same.verdict == Verdict.PASS and time_same.rule.mode == "summary"  # never exact
    assert not other.exact_applied and other.verdict == Verdict.PASS
    assert other.metric_verdicts()[0].rule.mode == "approx"


# ---------------------------------------------------------------- the resume check

def _artifact(phase1, phase2, resumed_from=5, **prov):
    return Artifact(case="c", run_id="r1", status="complete", provenance=prov,
                    phases={1: Phase(1, {m.name: m for m in phase1}, 1, 10),
                            2: Phase(2, {m.name: m for m in phase2}, resumed_from + 1, 10, resumed_from)})


def test_resume_check_passes_when_phase_two_repeats_phase_one():
    loss = series("lm loss", np.arange(1, 11), np.linspace(10, 9, 10))
    loss2 = series("lm loss", np.arange(6, 11), loss.values[5:])
    time1 = series("iteration-time", np.arange(1, 11), np.ones(10))
    time2 = series("iteration-time", np.arange(6, 11), np.full(5, 1.3))  # timing differs: not checked
    art = _artifact([loss, time1], [loss2, time2])
    cand = side_from_artifact(art)
    result = compare(Side("g", {1: cand.phases[1]}), cand, preset("default"))
    r = result.resume
    assert r.verdict == Verdict.PASS and r.overlapping_steps == 5 and r.resumed_from == 5
    by_name = {m.metric: m for m in r.metrics}
    assert by_name["lm loss"].rule.mode == "exact" and by_name["lm loss"].total_steps == 5
    assert by_name["iteration-time"].verdict == Verdict.SKIPPED
    assert result.verdict == Verdict.PASS
    assert "the reference has no phase 2" in result.drift.notes
    assert "the candidate's phase 2 is not compared (the resume check covers it)" in result.warnings


def test_resume_check_fails_on_one_ulp_and_fails_the_result():
    loss = series("lm loss", np.arange(1, 11), np.linspace(10, 9, 10))
    values = loss.values[5:].copy()
    values[2] = np.nextafter(values[2], 100.0)  # step 8
    art = _artifact([loss], [series("lm loss", np.arange(6, 11), values)])
    cand = side_from_artifact(art)
    result = compare(Side("g", {1: cand.phases[1]}), cand, preset("default"))
    assert result.resume.verdict == Verdict.FAIL
    m = result.resume.metrics[0]
    assert (m.failing_steps, m.worst_step) == (1, 8)
    assert result.verdict == Verdict.FAIL  # its own verdict counts
    assert all(p.verdict == Verdict.PASS for p in result.phases)  # the golden comparison passed


def test_resume_check_approx_uses_each_metric_policy():
    loss = series("lm loss", np.arange(1, 11), np.full(10, 10.0))
    art = _artifact([loss], [series("lm loss", np.arange(6, 11), np.full(5, 10.1))])
    cand = side_from_artifact(art)
    ps = build_policies(document={"resume": "approx"})
    assert compare(Side("g", {1: cand.phases[1]}), cand, ps).resume.verdict == Verdict.PASS
    assert compare(Side("g", {1: cand.phases[1]}), cand, preset("default")).resume.verdict == Verdict.FAIL


def test_resume_check_without_overlap_is_skipped():
    art = _artifact([series("lm loss", [1, 2], [1.0, 1.0])], [series("lm loss", [6, 7], [1.0, 1.0])])
    result = compare(Side("g", {1: {}}), side_from_artifact(art), preset("default"))
    assert result.resume.verdict == Verdict.SKIPPED and result.resume.passed


def test_megatron_second_phase_golden_nans_align_as_empty():
    # Megatron's _2nd file spans 1..10 with "nan" before the resume; the run's phase 2 has 6..10.
    g2 = series("lm loss", np.arange(1, 11), [np.nan] * 5 + [1.0] * 5)
    a2 = series("lm loss", np.arange(6, 11), [1.0] * 5)
    v = compare_metric("lm loss", g2, a2, pol(rtol=0.05), Context(phase=2, exact=False, same_platform=True))
    assert v.step_counts == {"pass": 5, "empty": 5} and v.verdict == Verdict.PASS


def test_values_in_explanations_and_tables_are_never_rounded():
    # The one formatter the engine, the band mode and the terminal table share.
    assert full_precision(0.1 + 0.2) == "0.30000000000000004"
    assert full_precision(np.float64(6.9530158042907715)) == "6.9530158042907715"
    assert (full_precision(5.0), full_precision(-0.0), full_precision(None)) == ("5", "0", "—")
    assert full_precision(2.0 ** 53) == "9007199254740992.0"   # beyond exact integers: the float's repr
    assert (full_precision(np.nan), full_precision(-np.inf)) == ("nan", "-inf")


# ---------------------------------------------------------------- the result object

def test_result_round_trips_through_json_and_frames_every_step():
    g = series("lm loss", [1, 2, 3], [10.0, np.nan, 9.0])
    a = series("lm loss", [1, 3, 4], [10.1, np.inf, 8.0])
    result = compare(side("g", [g], scalars={"iteration_timing_avg": 0.61}), side("a", [a]), preset("default"),
                     case="c", env="dev", platform="cpu")
    text = json.dumps(result.to_json(), allow_nan=False)
    back = ComparisonResult.from_json(json.loads(text))
    assert back == result
    frame = result.frame()
    assert list(frame.columns) == ["check", "phase", "metric", "step", "golden", "actual", "delta", "rel_diff",
                                   "status"]
    loss = frame[frame.metric == "lm loss"]
    assert loss.step.tolist() == [1, 2, 3, 4]
    assert loss.status.tolist() == ["pass", "empty", "fail", "extra"]
    assert loss.rel_diff.iloc[0] == pytest.approx(0.01)
    scalar = next(m for m in result.metric_verdicts() if m.metric == "iteration_timing_avg")
    assert scalar.verdict == Verdict.MISSING and scalar.passed  # runs never produce scalar entries


def test_result_json_written_a_block_at_a_time_is_json_dumps_text(monkeypatch):
    from goldens.files.result_json import _Column, result_json_chunks

    g = series("lm loss", [1, 2, 3, 4, 5], [10.0, np.nan, 9.0, -np.inf, 0.1 + 0.2])
    a = series("lm loss", [1, 3, 4, 6], [10.1, np.inf, 8.0, 1e-300])
    resumed = series("lm loss", [3, 4], [9.0, 8.5])
    result = compare(side("g", [g, series("num-zeros", [], [])], scalars={"iteration_timing_avg": 0.61}),
                     side("a", [a], phase2=[resumed]), preset("default"), case="c", env="dev", platform="cpu")
    for block in (1, 2, 65536):
        monkeypatch.setattr(_Column, "BLOCK", block)
        assert "".join(result_json_chunks(result)) == json.dumps(result.to_json(), indent=2, allow_nan=False)


def test_a_malformed_result_document_names_the_section_it_broke_in():
    from goldens.core.errors import FormatError

    good = compare(side("g", [series("lm loss", [1, 2], [1.0, 2.0])]),
                   side("a", [series("lm loss", [1, 2], [1.0, 2.5])], phase2=[series("lm loss", [2], [2.5])]),
                   preset("default")).to_json()

    def broken(edit):
        doc = json.loads(json.dumps(good))
        edit(doc)
        with pytest.raises(FormatError) as caught:
            ComparisonResult.from_json(doc)
        return caught.value.key, caught.value.reason

    assert broken(lambda d: d["phases"][0]["metrics"][0].pop("rule")) == ("phases[0].metrics[0]",
                                                                           "missing field 'rule'")
    assert broken(lambda d: d["phases"][0]["metrics"][0]["steps"]["status"].__setitem__(0, "bogus")) == (
        "phases[0].metrics[0].steps", "'bogus' is not a valid StepStatus")
    assert broken(lambda d: d["phases"][0].__setitem__("verdict", "maybe")) == (
        "phases[0]", "'maybe' is not a valid Verdict")
    assert broken(lambda d: d["resume"].pop("verdict")) == ("resume", "missing field 'verdict'")
    assert broken(lambda d: d.pop("candidate")) == (None, "missing field 'candidate'")


def test_megatron_preset_skips_metrics_it_has_no_threshold_for():
    ref = side("g", [series("grad-norm", [1], [1.0])])
    cand = side("a", [series("grad-norm", [1], [5.0])])
    result = compare(ref, cand, preset("megatron"))
    v = result.metric_verdicts()[0]
    assert v.verdict == Verdict.SKIPPED and v.passed and result.passed
    assert v.rule.mode == "none"


def test_explanation_is_one_line():
    g, a = _perturbed(20, 3)
    v = compare_metric("lm loss", g, a, MetricPolicy(rtol=0.05), APPROX)
    assert "\n" not in v.explanation and "\n" not in v.rule.text


def test_resume_check_skips_the_nan_padding_of_a_megatron_second_phase_but_not_later_nans():
    loss = series("lm loss", np.arange(1, 11), np.linspace(10, 9, 10))
    padded = loss.values.copy()
    padded[:5] = np.nan          # steps 1..5: before the resume (Megatron's _2nd padding)
    padded[7] = np.nan           # step 8: phase 2 really logged NaN
    cand = Side("c", {1: {"lm loss": loss}, 2: {"lm loss": series("lm loss", np.arange(1, 11), padded)}})
    r = compare(Side("g", {1: {"lm loss": loss}}), cand, preset("default")).resume
    m = r.metrics[0]
    assert r.overlapping_steps == 5 and m.total_steps == 5
    assert (m.failing_steps, m.worst_step, r.verdict) == (1, 8, Verdict.FAIL)
    assert m.step_counts == {"pass": 4, "nan_actual": 1}


# ---------------------------------------------------------------- different step grids (real Megatron shape)

def test_summary_run_steps_the_golden_lacks_are_extra_not_skipped():
    # Megatron's dgx_a100 goldens log every 5th step, dgx_h100 ones every step: the run's steps
    # between the golden's are "extra" (no golden value), not "skipped" (outside the window).
    g = series("mem", [1, 5, 10], [4.0, 6.0, 8.0])
    a = series("mem", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [4.0, 9.0, 9.0, 9.0, 6.0, 9.0, 9.0, 9.0, 9.0, 8.0])
    v = compare_metric("mem", g, a, pol(mode="summary", reduce="max", skip_warmup=1, rtol=0.05), APPROX)
    # window: from the golden's second step (5) on; reduced on the golden's grid: max of
    # golden 6, 8 and of actual 6, 8 (the run's 9.0 between them has no golden to compare with).
    assert v.verdict == Verdict.PASS and (v.golden_value, v.actual_value) == (8.0, 8.0)
    assert statuses(v) == {1: "skipped", 2: "skipped", 3: "skipped", 4: "skipped", 5: "reduced",
                           6: "extra", 7: "extra", 8: "extra", 9: "extra", 10: "reduced"}
    assert "4 steps only in the run" in v.explanation


def test_per_step_explanation_counts_the_run_steps_the_golden_lacks():
    g = series("lm loss", [1, 5], [10.0, 9.0])
    a = series("lm loss", [1, 2, 3, 4, 5], [10.0, 9.8, 9.6, 9.4, 9.0])
    v = compare_metric("lm loss", g, a, pol(rtol=0.05), APPROX)
    assert v.verdict == Verdict.PASS and v.total_steps == 2
    assert "all 2 steps within the rule" in v.explanation and "3 steps only in the run" in v.explanation


def test_platform_only_metric_says_unknown_platform_rather_than_another_one():
    steps = list(range(1, 11))
    t = series("iteration-time", steps, [1.0] * 10)
    named = side("ref", [t], platform="dgx_h100")
    unnamed = side("cand", [t])  # e.g. a golden file saved under a name that carries no platform
    (v,) = compare(named, unnamed, preset("default")).phases[0].metrics
    assert v.verdict == Verdict.SKIPPED and "platform of the candidate unknown" in v.explanation
    assert "other platform" not in v.explanation
    (v,) = compare(named, side("cand", [t], platform="dgx_a100"), preset("default")).phases[0].metrics
    assert "other platform: dgx_h100 vs dgx_a100" in v.explanation


def test_a_missing_phase_is_noted_once():
    # golden_values_dev_dgx_h100.json (phase 1) against its _2nd file (phase 2 only).
    loss = series("lm loss", [1, 2], [10.0, 9.0])
    result = compare(side("ref", [loss]), Side(label="cand", phases={2: {"lm loss": loss}}), preset("default"))
    notes = [*result.drift.notes, *result.warnings]
    assert sum("phase 1" in n for n in notes) == 1, notes
    assert sum("phase 2" in n for n in notes) == 2, notes  # the fact, then what it means
    assert "the candidate's phase 2 is not compared" in notes  # no phase 1 there: no resume check either


def test_a_metric_that_is_only_reported_cannot_fail_by_being_absent():
    loss = series("lm loss", [1, 2], [10.0, 9.0])
    time = series("iteration-time", [1, 2], [1.0, 1.0])
    reported = build_policies(case_metrics={"iteration-time": {"report_only": True}})
    (_, v) = compare(side("ref", [loss, time]), side("cand", [loss]), reported).phases[0].metrics
    assert v.verdict == Verdict.MISSING and v.passed
    assert v.explanation == "the run has no 'iteration-time' (report only: not judged)"
    # judged where both sides name one platform; only reported (so never failing) elsewhere
    judged_here = compare(side("ref", [loss, time], platform="a"), side("cand", [loss], platform="a"),
                          preset("default"))
    assert not judged_here.phases[0].metrics[1].passed and not judged_here.passed
    elsewhere = compare(side("ref", [loss, time], platform="a"), side("cand", [loss], platform="b"),
                        preset("default"))
    assert elsewhere.phases[0].metrics[1].passed and elsewhere.passed


def test_resume_check_is_promised_only_where_it_can_run():
    # A phase-1 golden against a bare _2nd file: the candidate has no phase 1 to resume from.
    loss = series("lm loss", [1, 2], [10.0, 9.0])
    result = compare(side("ref", [loss]), Side(label="cand", phases={2: {"lm loss": loss}}), preset("default"))
    assert result.resume is None
    assert "the candidate's phase 2 is not compared" in result.warnings


def test_exact_mode_worst_step_is_the_largest_difference_not_the_first():
    # Under a zero threshold every differing step is out by an infinite ratio; the worst one is
    # the largest relative difference (Megatron dev vs lts dgx_a100 with --exact: step 15, not 1).
    g = series("lm loss", [1, 2, 3], [10.0, 10.0, 5.0])
    a = series("lm loss", [1, 2, 3], [10.1, 10.5, 5.2])
    v = compare_metric("lm loss", g, a, pol(mode="exact"), EXACT)
    assert v.failing_steps == 3 and v.worst_step == 2  # 5 % beats 4 % (step 3) and 1 % (step 1)
    assert "worst step 2: golden 10, actual 10.5" in v.explanation


def test_steps_without_a_value_on_either_side_are_named_in_the_count():
    # A Megatron _2nd golden against another: "nan" on both sides before the resume (steps 1, 2).
    g = series("lm loss", [1, 2, 3, 4], [np.nan, np.nan, 9.0, 8.0])
    a = series("lm loss", [1, 2, 3, 4], [np.nan, np.nan, 9.1, 8.0])
    v = compare_metric("lm loss", g, a, pol(rtol=0.05), Context(phase=2, exact=False, same_platform=True))
    assert v.passed and v.total_steps == 4  # T counts the listed steps (Megatron's allowance)
    assert v.explanation.startswith("all 4 steps within the rule; "
                                    "2 of the 4 with no value on either side (not compared)")
