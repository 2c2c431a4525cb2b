"""Structural drift (deepdiff): metrics added/removed, grid changes, model-argument changes."""
from __future__ import annotations

import json

import numpy as np

from goldens.compare import Side, compare
from goldens.drift import arg_changes, grid_of, structural_drift
from goldens.model import MetricSeries
from goldens.policy import preset
from goldens.result import ComparisonResult, Verdict


def series(name, steps, value=1.0, **grid):
    steps = np.asarray(steps, np.int64)
    return MetricSeries(name, steps, np.full(steps.shape, value), **grid)


def side(metrics, phase2=None, args=None):
    phases = {1: {m.name: m for m in metrics}}
    if phase2 is not None:
        phases[2] = {m.name: m for m in phase2}
    return Side("s", phases, model_args=args)


def test_metrics_added_and_removed_per_phase():
    ref = side([series("lm loss", [1, 2]), series("num-zeros", [1, 2])], phase2=[series("lm loss", [2])])
    cand = side([series("lm loss", [1, 2]), series("grad-norm", [1, 2])], phase2=[series("lm loss", [2]),
                                                                                  series("grad-norm", [2])])
    drift = structural_drift(ref, cand)
    assert drift.metrics_removed == ("num-zeros",)
    assert sorted(drift.metrics_added) == ["grad-norm", "grad-norm (phase 2)"]
    assert drift.has_drift


def test_grid_change_reports_both_grids():
    ref = side([series("lm loss", np.arange(1, 51), start_step=1, end_step=50, step_interval=1)])
    cand = side([series("lm loss", [1, *range(5, 51, 5)], start_step=1, end_step=50, step_interval=5)])
    (change,) = structural_drift(ref, cand).grid_changes
    assert change.metric == "lm loss" and change.phase == 1
    assert change.reference == {"start_step": 1, "end_step": 50, "step_interval": 1, "count": 50}
    assert change.candidate == {"start_step": 1, "end_step": 50, "step_interval": 5, "count": 11}


def test_same_grid_is_no_drift():
    ref = side([series("lm loss", [1, 2, 3])], args={"--hidden-size": 64})
    drift = structural_drift(ref, ref)
    assert not drift.has_drift and drift.args_compared and drift.notes == ()


def test_grid_of_infers_what_the_header_does_not_say():
    assert grid_of(series("x", [10, 20, 40])) == {"start_step": 10, "end_step": 40, "step_interval": 10, "count": 3}


def test_model_argument_changes_are_named():
    ref = {"--hidden-size": 1024, "--num-layers": 24, "--bf16": True, "opt": {"lr": 1e-4}, "--seq-length": 512}
    cand = {"--hidden-size": 512, "--num-layers": 24, "--bf16": "yes", "opt": {"lr": 2e-4}, "--fp8": True}
    changes = {c.name: (c.change, c.reference, c.candidate) for c in arg_changes(ref, cand)}
    assert changes == {
        "--hidden-size": ("changed", 1024, 512),
        "--bf16": ("type_changed", True, "yes"),
        "opt.lr": ("changed", 1e-4, 2e-4),
        "--fp8": ("added", None, True),
        "--seq-length": ("removed", 512, None),
    }


def test_integer_and_float_of_equal_value_are_not_a_change():
    assert arg_changes({"--lr": 1}, {"--lr": 1.0}) == ()


def test_args_not_recorded_are_noted_not_guessed():
    drift = structural_drift(side([series("x", [1])]), side([series("x", [1])], args={"--tp": 2}))
    assert not drift.args_compared and drift.arg_changes == ()
    assert drift.notes == ("model arguments not compared: not recorded for the reference",)


def test_drift_is_its_own_section_and_does_not_decide_the_verdict():
    ref = side([series("lm loss", [1, 2])], args={"--hidden-size": 1024})
    cand = side([series("lm loss", [1, 2])], args={"--hidden-size": 512})
    result = compare(ref, cand, preset("default"))
    assert result.verdict == Verdict.PASS
    assert [(a.name, a.reference, a.candidate) for a in result.drift.arg_changes] == [("--hidden-size", 1024, 512)]
    back = ComparisonResult.from_json(json.loads(json.dumps(result.to_json())))
    assert back.drift == result.drift


def test_missing_phase_is_a_note():
    drift = structural_drift(side([series("x", [1])], phase2=[series("x", [2])]), side([series("x", [1])]))
    assert "the candidate has no phase 2" in drift.notes
