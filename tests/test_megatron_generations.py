"""Megatron's conventions as versioned data (goldens.megatron): a test per row of the generation table
— how it judges, how it writes into a tree, how it lints a change — and how a tree's row is detected.

Small fixtures of our own in the current format: marked, unmarked and mixed files; deterministic and
approximate cases; values one float32 ULP apart; values that agree only after rounding to 5 decimals
(a golden of 0.00001 and an actual of 0.0000149). Where the legacy row judges, Megatron's own legacy
functions (../shared) are asked too.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from goldens import inputs, workflow
from goldens.formats import read_golden
from goldens.megatron import GENERATIONS, NEWER_COMPARATOR, detect_generation, generation
from goldens.megatron.generations import CHECK_THRESHOLDS, COMPARATOR_FILES
from goldens.megatron.lint import lint_changed
from goldens.model import GoldenKey, GoldenSet, MetricSeries
from goldens.policy import MEGATRON_PRESET
from goldens.store import GoldenStore
from goldens.validate import ERROR, OK, WARNING
from tests.builders import invoke, write_megatron_case

ULP_ABOVE_HALF = float(np.nextafter(np.float32(0.5), np.float32(1.0)))  # 0.5 + one float32 ULP
DETERMINISTIC = "TEST_TYPE: regular\nMODE: pretraining\nENV_VARS:\n  NVTE_ALLOW_NONDETERMINISTIC_ALGO: 0\n" \
                "METRICS: [lm loss, num-zeros]\nMODEL_ARGS:\n  --train-iters: 10\n"
APPROXIMATE = DETERMINISTIC.replace("NVTE_ALLOW_NONDETERMINISTIC_ALGO: 0", "NVTE_ALLOW_NONDETERMINISTIC_ALGO: 1")
OPTED_OUT = DETERMINISTIC.replace("ENV_VARS:\n", "ENV_VARS:\n  SKIP_PYTEST: 1\n")
GOLDEN = "golden_values_dev_dgx_h100.json"
STEPS = (1, 5, 10)


def block(values: dict[int, float], marked: bool) -> dict:
    doc = {"start_step": min(values), "end_step": max(values), "step_interval": 5,
           "values": {str(s): v for s, v in values.items()}}
    if marked:
        doc["value_precision"] = "full"
    return doc


def golden_doc(loss: float, zeros: float = 100.0, *, loss_marked: bool, zeros_marked: bool | None = None) -> dict:
    zeros_marked = loss_marked if zeros_marked is None else zeros_marked
    return {"lm loss": block({s: loss for s in STEPS}, loss_marked),
            "num-zeros": block({s: zeros for s in STEPS}, zeros_marked)}


def judge(tmp_path: Path, config: str, golden: dict, actual: dict, row: str | None) -> dict[str, bool]:
    """The megatron preset's verdict per metric: ``golden`` in a tree case, ``actual`` as Megatron's CI
    output (a golden_values file); ``row`` forces the generation (None: detected)."""
    root = tmp_path / "test_cases"
    write_megatron_case(root, "gpt/case", config, {GOLDEN: golden})
    candidate = tmp_path / "ci" / GOLDEN
    candidate.parent.mkdir(parents=True, exist_ok=True)
    candidate.write_text(json.dumps(actual, indent=4))
    judgement = workflow.judge_run(GoldenStore(root, generation=row), inputs.load_run(str(candidate)),
                                   case="gpt/case", policy="megatron", stage=False)
    return {v.metric: v.passed for v in judgement.result.phases[0].metrics}


# ---------------------------------------------------------------- the table

def test_rows_are_ordered_by_date_named_by_their_pr_and_each_known_by_name():
    assert [g.name for g in GENERATIONS] == ["legacy", "pr7087", "pr7217"]
    assert [g.since for g in GENERATIONS] == sorted(g.since for g in GENERATIONS)
    assert [g.pr for g in GENERATIONS] == [None, 7087, 7217]
    assert generation("7217") is generation("#7217") is generation("pr7217") is GENERATIONS[2]


@pytest.mark.parametrize("row", GENERATIONS, ids=lambda g: g.name)
def test_each_row_keeps_the_thresholds_the_megatron_preset_applies(row):
    """Every row's threshold table is the preset's (Megatron's CHECK_THRESHOLDS did not change)."""
    assert row.thresholds == CHECK_THRESHOLDS
    for name, (deterministic, rtol) in row.thresholds.items():
        policy = MEGATRON_PRESET["metrics"][name]
        assert policy["rtol"] == rtol and policy.get("deterministic", False) == deterministic
        assert policy.get("max_failing_steps", row.allowance) == row.allowance


# ---------------------------------------------------------------- judging, row by row

def test_legacy_row_compares_values_as_read_as_megatrons_legacy_functions_do(tmp_path, megatron_fixtures):
    """0.00001 against 0.0000149 in an approximate case: legacy compares raw values (a 49 % difference)."""
    golden = golden_doc(0.00001, loss_marked=False)
    actual = golden_doc(0.0000149, loss_marked=False)
    ours = judge(tmp_path, APPROXIMATE, golden, actual, "legacy")
    assert ours == {"lm loss": False, "num-zeros": True}
    from tests.builders import megatron_oracle, megatron_verdict

    case = tmp_path / "test_cases" / "gpt" / "case"
    with megatron_oracle(megatron_fixtures / "python_test_utils") as oracle:
        assert megatron_verdict(oracle, case / "model_config.yaml", case / GOLDEN, tmp_path / "ci" / GOLDEN) is False


@pytest.mark.parametrize("row", ["pr7087", "pr7217"])
def test_approximate_checks_round_both_sides_to_5_decimals(tmp_path, row):
    golden = golden_doc(0.00001, loss_marked=True)
    assert judge(tmp_path, APPROXIMATE, golden, golden_doc(0.0000149, loss_marked=True), row) == \
        {"lm loss": True, "num-zeros": True}
    assert judge(tmp_path / "b", APPROXIMATE, golden, golden_doc(0.0000151, loss_marked=True), row)["lm loss"] is False


@pytest.mark.parametrize("row", ["pr7087", "pr7217"])
def test_deterministic_checks_compare_a_full_block_raw_one_float32_ulp_fails(tmp_path, row):
    golden = golden_doc(0.5, loss_marked=True)
    assert judge(tmp_path, DETERMINISTIC, golden, golden_doc(ULP_ABOVE_HALF, loss_marked=True), row)["lm loss"] is False
    assert judge(tmp_path / "b", DETERMINISTIC, golden, golden_doc(0.5, loss_marked=True), row)["lm loss"] is True
    # The same ULP in an approximate case rounds away.
    assert judge(tmp_path / "c", APPROXIMATE, golden, golden_doc(ULP_ABOVE_HALF, loss_marked=True), row)["lm loss"]


@pytest.mark.parametrize("row", ["pr7087", "pr7217"])
def test_deterministic_checks_of_a_legacy_block_compare_5_decimal_values(tmp_path, row):
    unmarked = golden_doc(0.00001, loss_marked=False)
    assert judge(tmp_path, DETERMINISTIC, unmarked, golden_doc(0.0000149, loss_marked=True), row)["lm loss"] is True
    marked = golden_doc(0.00001, loss_marked=True)
    assert judge(tmp_path / "b", DETERMINISTIC, marked, golden_doc(0.0000149, loss_marked=True), row)["lm loss"] is False


@pytest.mark.parametrize("row", ["pr7087", "pr7217"])
def test_a_mixed_file_is_judged_block_by_block(tmp_path, row):
    golden = golden_doc(0.5, 100.0, loss_marked=True, zeros_marked=False)
    actual = golden_doc(ULP_ABOVE_HALF, 100.000001, loss_marked=True)
    assert judge(tmp_path, DETERMINISTIC, golden, actual, row) == {"lm loss": False, "num-zeros": True}


def test_the_tree_decides_the_row_when_none_is_given(tmp_path):
    """A marked golden anywhere in the tree: the newest row that writes the marker judges."""
    golden = golden_doc(0.00001, loss_marked=True)
    assert judge(tmp_path, APPROXIMATE, golden, golden_doc(0.0000149, loss_marked=True), None)["lm loss"] is True
    detection = GoldenStore(tmp_path / "test_cases").megatron_generation
    assert detection.generation.name == "pr7217" and "carries \"value_precision\"" in detection.why
