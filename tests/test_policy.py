"""Tolerance policies as data: parsing, precise errors, kinds, presets, precedence, allowances."""
from __future__ import annotations

import pytest

from goldens.core.errors import PolicyError
from goldens.core.policy import Allowance, MetricPolicy, build_policies, parse_metric_policy, preset

# ---------------------------------------------------------------- defaults by kind (data, not branches)

@pytest.mark.parametrize("metric, kind", [
    ("lm loss", "loss"), ("mtp_1 loss", "loss"), ("LM Loss", "loss"),
    ("num-zeros", "count"),
    ("iteration-time", "iteration-time"),
    ("mem-allocated-bytes", "memory"), ("mem-max-allocated-bytes", "memory"),
    ("cpu-max-rss-bytes", "memory"),
])
def test_default_preset_recognises_kinds_by_name(metric, kind):
    resolved = preset("default").resolve(metric)
    assert resolved.origin == f"default: kind {kind!r}"


def test_default_kind_policies_match_the_design():
    ps = preset("default")
    loss = ps.resolve("lm loss").policy
    assert (loss.mode, loss.rtol, loss.deterministic, loss.max_failing_steps) == ("approx", 0.05, True, 0)
    zeros = ps.resolve("num-zeros").policy
    assert (zeros.rtol, zeros.atol, zeros.integer, zeros.deterministic) == (0.20, 1.0, True, True)
    time = ps.resolve("iteration-time").policy
    assert (time.mode, time.reduce, time.direction, time.rtol, time.only_on_same_platform) == \
        ("summary", "median", "increase_is_bad", 0.10, True)
    assert time.skip_warmup > 0 and not time.deterministic
    mem = ps.resolve("cpu-max-rss-bytes").policy
    assert (mem.mode, mem.reduce, mem.direction, mem.rtol, mem.skip_warmup) == \
        ("summary", "max", "increase_is_bad", 0.05, 1)


def test_unknown_metric_gets_the_fallback_in_default_and_nothing_in_megatron():
    assert preset("default").resolve("grad-norm").origin == "default: fallback"
    resolved = preset("megatron").resolve("grad-norm")
    assert resolved.policy is None


def test_megatron_preset_thresholds():
    # CHECK_THRESHOLDS of test_pretraining_regular_pipeline.py, name by name; only Megatron's default
    # METRICS (lm loss, num-zeros) are judged without a case listing others.
    ps = preset("megatron")
    for name, rtol, judged in (("lm loss", 0.05, True), ("mtp_1 loss", 0.05, False), ("mtp_2 loss", 0.05, False),
                               ("total loss", 0.05, False), ("num-zeros", 0.20, True)):
        p = ps.resolve(name).policy
        assert (p.mode, p.rtol, p.atol, p.direction, p.deterministic, p.report_only, p.on_empty) == \
            ("approx", rtol, 0.0, "both", True, not judged, "fail")
    time = ps.resolve("iteration-time").policy
    assert (time.mode, time.rtol, time.direction, time.fallback_steps, time.report_only) == \
        ("steady_median", 0.05, "both", 4, True)
    # Megatron's steady window: steps 5..20 if the golden's last finite step <= 25, else 30..45.
    assert time.window_for(25) == (5, 20)
    assert time.window_for(26) == (30, 45)
    assert time.window_for(100) == (30, 45)
    for name in ("mem-allocated-bytes", "mem-max-allocated-bytes"):
        p = ps.resolve(name).policy
        assert (p.mode, p.rtol, p.report_only, p.deterministic) == ("approx", 0.05, True, False)
    assert ps.resolve("mtp_3 loss").policy is None  # no threshold: not a glob match as before


@pytest.mark.parametrize("total, allowed", [
    (1, 1), (50, 1), (99, 1), (100, 1), (199, 1), (200, 2), (299, 2), (300, 3),
    (4999, 49), (5000, 50), (5100, 50), (100000, 50),
])
def test_megatron_allowance_is_min_max_T_over_100(total, allowed):
    # min(max(T // 100, 1), 50), computed by hand for each T.
    policy = preset("megatron").resolve("lm loss").policy
    assert policy.allowed_failing(total) == allowed
    assert policy.allowed_failing(total) == min(max(total // 100, 1), 50)


def test_allowance_fraction_is_exact_for_every_total():
    allowance = Allowance(fraction=0.01)
    assert all(allowance.allowed(t) == t // 100 for t in range(0, 20001))
    assert Allowance(fraction=0.1, at_least=2, at_most=5).allowed(10) == 2
    assert Allowance(fraction=0.1, at_least=2, at_most=5).allowed(40) == 4
    assert Allowance(fraction=0.1, at_least=2, at_most=5).allowed(1000) == 5


# ---------------------------------------------------------------- case.yaml overrides and precedence

def test_override_without_mode_adjusts_the_kind_policy():
    ps = build_policies(case_metrics={"lm loss": {"rtol": 0.02}})
    p = ps.resolve("lm loss").policy
    assert (p.mode, p.rtol, p.deterministic) == ("approx", 0.02, True)
    assert ps.resolve("lm loss").origin == "case.yaml: metrics['lm loss']"  # the file that loosened it, not "default"


def test_override_with_mode_replaces_the_kind_policy():
    ps = build_policies(case_metrics={"iteration-time": {"mode": "approx", "rtol": 0.5}})
    p = ps.resolve("iteration-time").policy
    assert (p.mode, p.reduce, p.skip_warmup, p.direction, p.rtol) == ("approx", "none", 0, "both", 0.5)


def test_precedence_preset_then_case_then_policy_file():
    ps = build_policies(preset_name="megatron",
                        case_metrics={"lm loss": {"rtol": 0.02}, "num-zeros": {"rtol": 0.3}},
                        document={"metrics": {"lm loss": {"rtol": 0.01}}})
    assert ps.name == "megatron"
    assert ps.resolve("lm loss").policy.rtol == 0.01            # file beats case
    assert ps.resolve("num-zeros").policy.rtol == 0.3           # case beats preset
    assert ps.resolve("num-zeros").policy.max_failing_steps == Allowance(fraction=0.01, at_least=1, at_most=50,
                                                                         rule="megatron")


def test_policy_file_can_choose_the_preset_and_add_kinds():
    ps = build_policies(document={"preset": "megatron",
                                  "kinds": [{"kind": "norm", "match": "*norm*", "policy": {"rtol": 0.1}}]})
    assert ps.name == "megatron"
    assert ps.resolve("grad-norm").policy.rtol == 0.1
    assert ps.resolve("lm loss").policy.rtol == 0.05


def test_report_only_can_be_switched_off_like_listing_METRICS_in_megatron():
    ps = build_policies(preset_name="megatron", case_metrics={"iteration-time": {"report_only": False}})
    p = ps.resolve("iteration-time").policy
    assert p.report_only is False and p.mode == "steady_median" and p.window_for(100) == (30, 45)


# ---------------------------------------------------------------- bad input names the key

@pytest.mark.parametrize("raw, needle", [
    ({"rtoll": 0.1}, "unknown key 'rtoll'"),
    ({"mode": "fuzzy"}, "key 'mode': invalid value 'fuzzy'"),
    ({"direction": "up"}, "key 'direction': invalid value 'up'"),
    ({"reduce": "p99", "mode": "summary"}, "key 'reduce'"),
    ({"rtol": -0.1}, "key 'rtol'"),
    ({"rtol": "5%"}, "key 'rtol'"),
    ({"rtol": float("inf")}, "key 'rtol'"),
    ({"atol": True}, "key 'atol'"),
    ({"integer": "yes"}, "key 'integer'"),
    ({"on_missing": "warn"}, "key 'on_missing'"),
    ({"on_nan": 0}, "key 'on_nan'"),
    ({"window": [10, 5]}, "key 'window'"),
    ({"window": [1, 2, 3]}, "key 'window'"),
    ({"window": [{"steps": [1, 2], "when": 3}]}, "when"),
    ({"max_failing_steps": -1}, "key 'max_failing_steps'"),
    ({"max_failing_steps": {"fraction": 0.01, "at_lest": 1}}, "at_lest"),
    ({"max_failing_steps": {"fraction": 1.5}}, "fraction"),
    ({"skip_warmup": 1.5}, "key 'skip_warmup'"),
    ({"mode": "summary"}, "key 'reduce': mode 'summary' needs"),
    ({"mode": "approx", "reduce": "median"}, "key 'reduce': only mode 'summary'"),
])
def test_bad_policy_is_a_policy_error_naming_the_key(raw, needle):
    with pytest.raises(PolicyError) as info:
        build_policies(case_metrics={"lm loss": raw})
    message = str(info.value)
    assert needle in message
    assert "metrics['lm loss']" in message
    assert "\n" not in message


@pytest.mark.parametrize("doc, needle", [
    ({"metric": {}}, "unknown key 'metric'"),
    ({"metrics": ["lm loss"]}, "key 'metrics'"),
    ({"metrics": {"lm loss": 0.05}}, "expected a mapping of policy keys"),
    ({"resume": "sometimes"}, "key 'resume'"),
    ({"kinds": [{"kind": "x", "match": [], "policy": {}}]}, "key 'match'"),
    ({"kinds": [{"kind": "x", "match": "*", "policy": {}, "extra": 1}]}, "unknown key 'extra'"),
    ({"preset": "nvidia"}, "unknown policy preset 'nvidia'"),
    ({"preset": 3}, "key 'preset'"),
])
def test_bad_policy_document_names_the_key(doc, needle):
    with pytest.raises(PolicyError, match=None) as info:
        build_policies(document=doc, document_source="p.yaml")
    assert needle in str(info.value)


def test_policy_keys_and_values_accept_yaml_shapes():
    p = parse_metric_policy({"mode": "summary", "reduce": "last", "window": [None, 40],
                             "max_failing_steps": {"fraction": 0.05, "at_most": 3}, "atol": 1}, "x")
    assert p.window_for(None) == (None, 40)
    assert p.allowed_failing(100) == 3 and p.allowed_failing(40) == 2
    assert p.atol == 1.0


def test_describe_is_one_line_with_the_numbers():
    text = preset("megatron").resolve("lm loss").policy.describe()
    assert "0.05" in text and "min(max(floor(0.01·T), 1), 50)" in text and "\n" not in text
    assert MetricPolicy(mode="exact").describe().startswith("exact")


def test_a_policy_file_is_credited_by_name_in_the_rule_and_the_result(tmp_path):
    """A loosened check names the file that loosened it — never "default"."""
    from goldens.core.compare import compare, side_from_goldens
    from goldens.inputs import load_policies
    from tests.builders import LOSS, golden_set

    loose = tmp_path / "loose.yaml"
    loose.write_text("metrics:\n  lm loss: {mode: approx, rtol: 0.5}\n")
    policies = load_policies(str(loose))
    assert policies.resolve("lm loss").origin == f"{loose}: metrics['lm loss']"
    assert policies.resolve("num-zeros").origin.startswith("default: ")  # untouched entries keep the preset
    side = side_from_goldens({1: golden_set({"lm loss": LOSS})}, "g")
    result = compare(side, side, policies)
    assert result.policy == f"default + {loose}"
    assert str(loose) in result.phases[0].metrics[0].rule.text
