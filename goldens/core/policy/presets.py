"""The named presets, as data: ``default`` (defaults by metric kind) and ``megatron`` (Megatron-LM's
functional-test rules, name by name), parsed once per process by ``preset``."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..errors import PolicyError
from .schema import PolicySet, parse_inference_rules, parse_kinds, parse_metric_policy

# Defaults by metric kind, with the reasons in ../shared/DESIGN.md ("Tolerance policy").
DEFAULT_PRESET: dict[str, Any] = {
    "kinds": [
        # Loss: bit-exact on the same environment; otherwise Megatron's 5 % per-step backstop.
        # The result always carries the signed mean relative diff, which shows drift long before 5 %.
        {"kind": "loss", "match": ["*loss*"],
         "policy": {"mode": "approx", "rtol": 0.05, "deterministic": True}},
        # Count of zeros in gradients: integer; |x-g| <= max(0.20*|g|, 1) across environments.
        {"kind": "count", "match": ["num-zeros", "*num-zeros*", "*num_zeros*"],
         "policy": {"mode": "approx", "rtol": 0.20, "atol": 1, "integer": True, "deterministic": True}},
        # Step time: never per step; median of a steady window after warm-up; slower is bad;
        # only meaningful on the same platform.
        {"kind": "iteration-time", "match": ["iteration-time", "*iteration-time*", "*iteration_time*",
                                             "*iter-time*", "*step-time*", "*step_time*"],
         "policy": {"mode": "summary", "reduce": "median", "skip_warmup": 2, "rtol": 0.10,
                    "direction": "increase_is_bad", "only_on_same_platform": True}},
        # Memory (GPU allocator and CPU process RSS): peak over steps >= 2, growth is bad.
        {"kind": "memory", "match": ["mem-*", "*memory*", "*-bytes", "*_bytes", "*rss*"],
         "policy": {"mode": "summary", "reduce": "max", "skip_warmup": 1, "rtol": 0.05,
                    "direction": "increase_is_bad"}},
    ],
    # Any other metric (grad norm, learning rate, ...): bit-exact on the same environment,
    # else 5 % per step like the loss.
    "fallback": {"mode": "approx", "rtol": 0.05, "deterministic": True},
    "resume": "exact",
}

# Megatron-LM's functional-test rules at NVIDIA/Megatron-LM d98e8a64, reproduced as data (sources:
# tests/functional_tests/python_test_utils/, run_ci_test.sh; notes in docs/megatron.md):
#  - test_pretraining_regular_pipeline.py CHECK_THRESHOLDS, name by name: the losses, num-zeros,
#    generated_tokens and logprobs have a DeterministicTest (np.isclose with rtol = atol = 0 on every
#    step: ``deterministic`` here, applied in the exact regime) and an ApproximateTest; iteration-time
#    and the two memory metrics only the ApproximateTest. A metric without a threshold is not judged
#    (listed in METRICS, Megatron's test raises KeyError: a required metric without a rule fails).
#  - common.py pipeline(): the run's values on the golden's steps (a missing step is "nan"; every
#    string reads as inf, so "nan" matches "nan"); T = the golden's steps; np.isclose(actual,
#    golden, rtol, atol=0); all must pass when T == 1, else mean(is_close) >= 1 - A/T with
#    A = min(max(T // 100, 1), 50), float quirk included (``rule: megatron``); an empty golden fails.
#  - iteration-time: the median over the steady window steps 5..20 when the golden's last finite
#    step is <= 25, else 30..45; no finite golden step there: its first 4 finite steps from the
#    window's start; a missing run value enters the median as inf (mode ``steady_median``).
#  - Which metrics are judged: METRICS of the case's model_config.yaml, default lm loss and
#    num-zeros (``with_megatron_case``); without a Megatron case the default ones, the rest
#    reported only. The regime: ENV_VARS (a Megatron case), else fingerprints (or --exact/--approx).
#  - test_inference_regular_pipeline.py: the ``inference`` section.
_MEGATRON_ALLOWANCE = {"fraction": 0.01, "at_least": 1, "at_most": 50, "rule": "megatron"}
_EXACT_AND_APPROX = {"mode": "approx", "rtol": 0.05, "deterministic": True, "max_failing_steps": _MEGATRON_ALLOWANCE,
                     "on_empty": "fail"}
_APPROX_ONLY = {"mode": "approx", "rtol": 0.05, "max_failing_steps": _MEGATRON_ALLOWANCE, "on_empty": "fail",
                "report_only": True}
MEGATRON_PRESET: dict[str, Any] = {
    "metrics": {
        "iteration-time": {"mode": "steady_median", "rtol": 0.05, "fallback_steps": 4, "on_empty": "fail",
                           "report_only": True,
                           "window": [{"max_last_step": 25, "steps": [5, 20]}, {"steps": [30, 45]}]},
        "mem-allocated-bytes": _APPROX_ONLY,
        "mem-max-allocated-bytes": _APPROX_ONLY,
        "lm loss": _EXACT_AND_APPROX,
        "mtp_1 loss": {**_EXACT_AND_APPROX, "report_only": True},
        "mtp_2 loss": {**_EXACT_AND_APPROX, "report_only": True},
        "num-zeros": {**_EXACT_AND_APPROX, "rtol": 0.20},
        "generated_tokens": {**_EXACT_AND_APPROX, "report_only": True},
        "logprobs": {**_EXACT_AND_APPROX, "report_only": True},
        "total loss": {**_EXACT_AND_APPROX, "report_only": True},
    },
    "kinds": [],
    "fallback": None,
    "resume": "exact",
    "follows_model_config": True,
}

# test_inference_regular_pipeline.py, check by check. Top-level keys that are not request ids; a
# run-scoped field is checked when the golden has it and METRICS lists it, a request-scoped one for
# each request whose golden record has it; a request no listed field applies to fails ("No test
# performed"). Listing lifetime_prefill_token_count fails: the test calls list.pop(str) on METRICS.
INFERENCE_RULES: dict[str, Any] = {
    "run_level": ["throughput", "lifetime_prefill_token_count", "async_sched_step_count",
                  "async_sched_compaction_step_count", "mem-max-allocated-bytes"],
    "fields": {
        "generated_tokens": {"check": "equal"},
        "logprobs": {"check": "close_each", "abs_tol": 0.001, "rel_tol": 1e-9},
        "generated_text": {"check": "common_prefix"},
        "routing_indices": {"check": "sorted_rows_at", "index_field": "routing_indices_token_indices"},
        "throughput": {"check": "median_band", "low": 0.9, "high": 1.2, "high_open": True, "drop_first": "always",
                       "golden_positive": False, "nan_passes": False},
        "mem-max-allocated-bytes": {"check": "median_band", "low": 0.95, "high": 1.05, "high_open": False,
                                    "drop_first": "if_several", "golden_positive": True, "nan_passes": True},
        "lifetime_prefill_token_count": {"check": "refused",
                                         "why": "Megatron's test calls list.pop(str) on METRICS (TypeError)"},
    },
}
MEGATRON_PRESET["inference"] = INFERENCE_RULES
DEFAULT_PRESET["inference"] = INFERENCE_RULES  # the only inference rules there are: Megatron's

PRESETS: dict[str, Mapping[str, Any]] = {"default": DEFAULT_PRESET, "megatron": MEGATRON_PRESET}
_PARSED: dict[str, PolicySet] = {}


def preset(name: str) -> PolicySet:
    """A named preset as a PolicySet (parsed once per process: a bulk run asks for it per case)."""
    if name not in PRESETS:
        raise PolicyError(f"unknown policy preset {name!r} (known: {', '.join(PRESETS)})")
    if name not in _PARSED:
        doc = PRESETS[name]
        where = f"preset {name!r}"
        fallback = doc.get("fallback")
        base = PolicySet(name=name, kinds=parse_kinds(doc.get("kinds", []), f"{where}: kinds"),
                         fallback=None if fallback is None else parse_metric_policy(fallback, f"{where}: fallback"),
                         resume=doc.get("resume", "exact"), follows_model_config=bool(doc.get("follows_model_config")),
                         inference=None if doc.get("inference") is None
                         else parse_inference_rules(doc["inference"], f"{where}: inference"))
        # the preset's own entries are credited to the preset (by its name), not to a file
        _PARSED[name] = replace(base.with_document({"metrics": doc.get("metrics")}, where), sources={}) \
            if doc.get("metrics") else base
    return _PARSED[name]
