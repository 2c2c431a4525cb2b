"""Structural drift (deepdiff): metrics added/removed, grid changes, model-argument changes."""
from __future__ import annotations

import json

import numpy as np

from goldens.core.compare import Side, compare
from goldens.core.compare.drift import arg_changes, grid_of, structural_drift
from goldens.core.model import MetricSeries
from goldens.core.policy import preset
from goldens.core.result import ComparisonResult, Verdict
from tests.builders import series


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


# ---------------------------------------------------------------- resume cases: the _2nd file's padding

def _resume_artifact(phase1_steps, phase2_steps, interval=1):
    """A resume run: phase 1 from scratch, phase 2 resumed after step phase2_steps[0] - 1."""
    from goldens.core.model import Artifact, Phase

    def metrics(steps):  # a value per step, equal in both phases (a faithful resume)
        return {name: MetricSeries(name, steps, base + 0.125 * steps, int(steps[0]), int(steps[-1]), interval)
                for name, base in (("lm loss", 6.5), ("num-zeros", 3.0))}

    return Artifact("c", "r", "complete", {}, {
        1: Phase(1, metrics(phase1_steps), int(phase1_steps[0]), int(phase1_steps[-1])),
        2: Phase(2, metrics(phase2_steps), int(phase2_steps[0]), int(phase2_steps[-1]),
                 resumed_from=int(phase2_steps[0]) - 1)})


def _golden_pair(artifact):
    """The Megatron file pair of a run, read back as written (the _2nd file padded with "nan")."""
    from goldens.core.compare import side_from_goldens
    from goldens.files.formats.artifact import artifact_phase_golden
    from goldens.files.formats.golden import dumps_golden, parse_golden
    from goldens.files.formats.jsontext import load_json_text

    span = (artifact.phases[1].first_step, artifact.phases[2].last_step)
    files = {1: artifact_phase_golden(artifact, 1), 2: artifact_phase_golden(artifact, 2, span=span)}
    return side_from_goldens({n: parse_golden(load_json_text(dumps_golden(g))) for n, g in files.items()}, "golden")


def test_a_resume_run_matching_its_padded_2nd_golden_has_no_grid_drift():
    from goldens.core.compare import side_from_artifact

    run = _resume_artifact(np.arange(1, 21), np.arange(11, 21))
    golden = _golden_pair(run)
    # The _2nd file spans 1..20 with "nan" for 1..10; the run's phase 2 holds 11..20 only.
    assert golden.phases[2]["lm loss"].steps.tolist() == list(range(1, 21))
    result = compare(golden, side_from_artifact(run), preset("default"))
    assert result.drift.grid_changes == () and not result.drift.has_drift
    # Steps 1..10 (NaN in the golden, absent in the run) are neither failing nor missing.
    for verdict in (v for p in result.phases if p.phase == 2 for v in p.metrics):
        assert verdict.passed and verdict.failing_steps == 0
        assert verdict.step_counts == {"pass": 10, "empty": 10}
        assert verdict.steps.statuses()[:10].tolist() == ["empty"] * 10
    assert result.verdict == Verdict.PASS


def test_real_grid_changes_of_a_resume_phase_are_still_reported():
    from goldens.core.compare import side_from_artifact

    golden = _golden_pair(_resume_artifact(np.arange(1, 21), np.arange(11, 21)))
    # The run stops early: its phase 2 ends at step 15, the golden's at 20.
    stopped = structural_drift(golden, side_from_artifact(_resume_artifact(np.arange(1, 21), np.arange(11, 16))))
    assert {(g.metric, g.phase) for g in stopped.grid_changes} == {("lm loss", 2), ("num-zeros", 2)}
    change = stopped.grid_changes[0]
    assert change.reference == {"start_step": 11, "end_step": 20, "step_interval": 1, "count": 10}
    assert change.candidate == {"start_step": 11, "end_step": 15, "step_interval": 1, "count": 5}
    # The golden logged every 5 steps, the run every step.
    every5 = _golden_pair(_resume_artifact(np.array([1, 5, 10, 15, 20]), np.array([11, 15, 20]), interval=5))
    drift = structural_drift(every5, side_from_artifact(_resume_artifact(np.arange(1, 21), np.arange(11, 21))))
    by_key = {(g.metric, g.phase): g for g in drift.grid_changes}
    assert set(by_key) == {("lm loss", 1), ("num-zeros", 1), ("lm loss", 2), ("num-zeros", 2)}
    assert by_key[("lm loss", 2)].reference == {"start_step": 11, "end_step": 20, "step_interval": 5, "count": 3}
    assert by_key[("lm loss", 2)].candidate == {"start_step": 11, "end_step": 20, "step_interval": 1, "count": 10}


def test_a_nan_inside_the_run_is_a_value_not_a_grid_change():
    ref = side([series("lm loss", np.arange(1, 11))])
    values = np.ones(10)
    values[4] = np.nan
    cand = side([MetricSeries("lm loss", np.arange(1, 11), values)])
    assert structural_drift(ref, cand).grid_changes == ()
