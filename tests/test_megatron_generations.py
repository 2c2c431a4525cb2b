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
from hypothesis import given, settings
from hypothesis import strategies as st

from goldens import inputs
from goldens.core.compare.engine import round_each
from goldens.core.megatron import CHECK_THRESHOLDS, COMPARATOR_FILES, GENERATIONS, generation
from goldens.core.model import GoldenKey, GoldenSet, MetricSeries
from goldens.core.policy.presets import MEGATRON_PRESET
from goldens.files.formats.golden import read_golden
from goldens.files.validate import ERROR, OK, WARNING
from goldens.megatron import NEWER_COMPARATOR, detect_generation
from goldens.megatron.lint import lint_changed
from goldens.store import GoldenStore
from goldens.workflow.judge import judge_run
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
    return {"lm loss": block(dict.fromkeys(STEPS, loss), loss_marked),
            "num-zeros": block(dict.fromkeys(STEPS, zeros), zeros_marked)}


def judge(tmp_path: Path, config: str, golden: dict, actual: dict, row: str | None) -> dict[str, bool]:
    """The megatron preset's verdict per metric: ``golden`` in a tree case, ``actual`` as Megatron's CI
    output (a golden_values file); ``row`` forces the generation (None: detected)."""
    root = tmp_path / "test_cases"
    write_megatron_case(root, "gpt/case", config, {GOLDEN: golden})
    candidate = tmp_path / "ci" / GOLDEN
    candidate.parent.mkdir(parents=True, exist_ok=True)
    candidate.write_text(json.dumps(actual, indent=4))
    judgement = judge_run(GoldenStore(root, generation=row), inputs.load_run(str(candidate)),
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
    pytest.importorskip("tensorboard", reason="Megatron's common.py imports tensorboard (extra 'tb')")
    golden = golden_doc(0.00001, loss_marked=False)
    actual = golden_doc(0.0000149, loss_marked=False)
    ours = judge(tmp_path, APPROXIMATE, golden, actual, "legacy")
    assert ours == {"lm loss": False, "num-zeros": True}
    from tests.oracle import megatron_oracle, megatron_verdict

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
    nudged = golden_doc(0.0000149, loss_marked=True)
    assert judge(tmp_path / "b", DETERMINISTIC, marked, nudged, row)["lm loss"] is False


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


# ---------------------------------------------------------------- writing into a tree, row by row

RUN_LOSS = {1: 10.929539680480957, 5: 10.5, 10: 9.123456789}


def approve_into(tmp_path: Path, row: str, existing: dict | None = None) -> tuple[GoldenStore, Path]:
    """A run's lm loss approved into a Megatron tree of generation ``row`` (through the store's write)."""
    root = tmp_path / "test_cases"
    goldens = {} if existing is None else {GOLDEN: existing}
    folder = write_megatron_case(root, "gpt/case", DETERMINISTIC, goldens)
    (folder / "golden_values_lts_dgx_a100.json").write_text(json.dumps(golden_doc(1.0, loss_marked=False)))
    store = GoldenStore(root, generation=row)
    metrics = dict(read_golden(folder / GOLDEN).metrics) if existing is not None else {}
    metrics["lm loss"] = MetricSeries.from_mapping("lm loss", RUN_LOSS)  # as approve plans it: one metric taken
    store.write("gpt/case", {GoldenKey("gpt/case", "dev", "dgx_h100"): GoldenSet(metrics)},
                approver="ada", reason="new baseline")
    return store, folder


def test_legacy_row_writes_5_decimals_without_a_marker(tmp_path):
    store, folder = approve_into(tmp_path, "legacy")
    doc = json.loads((folder / GOLDEN).read_text())
    assert doc["lm loss"]["values"] == {"1": 10.92954, "5": 10.5, "10": 9.12346}
    assert "value_precision" not in doc["lm loss"]
    assert store.dialect == "megatron" and store.megatron_generation.generation.name == "legacy"


@pytest.mark.parametrize("row", ["pr7087", "pr7217"])
def test_rows_since_7087_write_full_precision_with_the_marker_on_every_block_written(tmp_path, row):
    before = (golden_doc(1.0, loss_marked=False))
    _, folder = approve_into(tmp_path, row, before)
    untouched = folder / "golden_values_lts_dgx_a100.json"
    assert untouched.read_text() == json.dumps(golden_doc(1.0, loss_marked=False))  # byte-identical
    written = read_golden(folder / GOLDEN)
    loss = written.metrics["lm loss"]
    assert loss.precision == "full"
    assert loss.as_dict() == {s: float(np.float32(v)) for s, v in RUN_LOSS.items()}  # the float32 TB holds
    assert loss.as_dict()[1] == 10.929539680480957
    assert written.metrics["num-zeros"].precision is None  # a block the change did not touch: kept as it was


def test_an_unchanged_block_keeps_its_exact_text_and_a_marked_file_survives_a_round_trip(tmp_path):
    marked = golden_doc(0.5, loss_marked=True)
    marked["lm loss"]["values"] = {str(s): float(np.float32(v)) for s, v in RUN_LOSS.items()}
    _, folder = approve_into(tmp_path, "pr7217", marked)
    assert json.loads((folder / GOLDEN).read_text()) == marked


# ---------------------------------------------------------------- linting a change, row by row

def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@x", "HOME": str(cwd), "PATH": "/usr/bin:/bin"})


def checkout(tmp_path: Path) -> Path:
    """A git repository holding a Megatron tree: a deterministic, an approximate and an opted-out case,
    each with a legacy (unmarked) golden, committed."""
    repo = tmp_path / "repo"
    root = repo / "tests" / "functional_tests" / "test_cases"
    for name, config in (("det", DETERMINISTIC), ("approx", APPROXIMATE), ("skip", OPTED_OUT)):
        write_megatron_case(root, f"gpt/{name}", config, {GOLDEN: golden_doc(1.0, loss_marked=False)})
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "goldens")
    return root


def changed_loss(root: Path, case: str, marked: bool) -> Path:
    path = root / "gpt" / case / GOLDEN
    doc = json.loads(path.read_text())
    doc["lm loss"] = block(dict.fromkeys(STEPS, 2.0), marked)
    path.write_text(json.dumps(doc, indent=4))
    return path


def lint(root: Path, row: str, **kw) -> dict[str, tuple[str, list[str]]]:
    reports, _ = lint_changed(cwd=root, generation=row, **kw)
    return {Path(r.path).parent.name: (r.status, [f.message for f in r.findings]) for r in reports}


def test_pr7217_rejects_a_changed_unmarked_block_of_a_deterministic_case_only(tmp_path):
    root = checkout(tmp_path)
    for case in ("det", "approx", "skip"):
        changed_loss(root, case, marked=False)
    found = lint(root, "pr7217")
    assert found["det"][0] == ERROR and "'lm loss': changed block of a deterministic case without" in found["det"][1][0]
    assert len(found["det"][1]) == 1  # num-zeros did not change: not asked for the marker
    assert found["approx"] == (OK, []) and found["skip"] == (OK, [])
    assert lint(root, "pr7217", allow_legacy_precision=True)["det"][0] == WARNING


@pytest.mark.parametrize("row", ["legacy", "pr7087"])
def test_rows_before_7217_accept_a_changed_unmarked_block(tmp_path, row):
    root = checkout(tmp_path)
    changed_loss(root, "det", marked=False)
    assert lint(root, row)["det"] == (OK, [])


@pytest.mark.parametrize("row", ["legacy", "pr7087", "pr7217"])
def test_every_row_rejects_nan_or_infinity_in_a_changed_megatron_golden(tmp_path, row):
    root = checkout(tmp_path)
    path = changed_loss(root, "approx", marked=True)
    path.write_text(path.read_text().replace('"5": 2.0', '"5": "nan"'))
    status, messages = lint(root, row)["approx"]
    assert status == ERROR and any("non-finite value at $['lm loss']['values']['5']" in m for m in messages)


def test_the_tools_own_writes_pass_the_lint_and_a_pure_rename_is_not_linted(tmp_path):
    root = checkout(tmp_path)
    store = GoldenStore(root, generation="pr7217")
    run = MetricSeries.from_mapping("lm loss", RUN_LOSS)
    store.write("gpt/det", {GoldenKey("gpt/det", "dev", "dgx_h100"): GoldenSet({"lm loss": run})},
                approver="ada", reason="new baseline")
    assert lint(root, "pr7217") == {"det": (OK, [])}
    git(root, "add", "-A")
    git(root, "commit", "-qm", "approved")
    git(root, "mv", "gpt/approx/" + GOLDEN, "gpt/approx/golden_values_dev_dgx_a100.json")
    assert lint(root, "pr7217", base="HEAD") == {}


def test_validate_changed_on_the_command_line(tmp_path, monkeypatch):
    root = checkout(tmp_path)
    changed_loss(root, "det", marked=False)
    monkeypatch.chdir(root)
    result = invoke("validate", "--changed", "--megatron-generation", "pr7217")
    assert result.exit_code == 1
    assert "Megatron generation pr7217 (PR #7217, 2026-09-10): set explicitly (--megatron-generation)" in result.output
    assert result.output.rstrip().endswith("1 changed golden files: 0 ok, 0 warning, 1 error")
    assert invoke("validate", "--changed", "--allow-legacy-precision", env={"GOLDEN_MEGATRON_GENERATION": "pr7217"}
                  ).exit_code == 0
    given = str(root / "gpt" / "approx" / GOLDEN)
    assert invoke("validate", "--changed", given, "--megatron-generation", "pr7217").exit_code == 0
    assert invoke("validate", "--changed", "--megatron-generation", "pr9999").exit_code == 2
    assert invoke("validate", "--base", "HEAD").exit_code == 2


# ---------------------------------------------------------------- detecting a tree's row

def comparator_copy(tmp_path: Path, megatron_fixtures: Path) -> Path:
    """A checkout whose comparator files are Megatron's at d98e8a64 (the fixtures' copies); its test_cases."""
    repo = tmp_path / "checkout"
    utils = repo / "tests" / "functional_tests" / "python_test_utils"
    utils.mkdir(parents=True)
    for rel in COMPARATOR_FILES:
        source = megatron_fixtures / "python_test_utils" / Path(rel).name
        if source.is_file():
            shutil.copy(source, repo / rel)
    root = repo / "tests" / "functional_tests" / "test_cases"
    write_megatron_case(root, "gpt/case", DETERMINISTIC, {GOLDEN: golden_doc(1.0, loss_marked=False)})
    return root


def test_the_fixtures_comparator_is_the_legacy_row_by_digest(tmp_path, megatron_fixtures):
    detection = detect_generation(megatron_fixtures / "test_cases")
    assert detection.generation.name == "legacy" and "match its digests" in detection.why
    assert detection.warning is None
    assert detect_generation(comparator_copy(tmp_path, megatron_fixtures)).generation.name == "legacy"


def test_a_comparator_the_table_does_not_know_is_said_once(tmp_path, megatron_fixtures):
    root = comparator_copy(tmp_path, megatron_fixtures)
    common = root.parent / "python_test_utils" / "common.py"
    common.write_text(common.read_text() + "\n# a later change\n")
    detection = detect_generation(root)
    assert detection.warning.startswith(NEWER_COMPARATOR) and "common.py" in detection.warning
    # judge: in the result's warnings; fsck: in its first lines
    candidate = tmp_path / "ci" / GOLDEN
    candidate.parent.mkdir()
    candidate.write_text(json.dumps(golden_doc(1.0, loss_marked=False)))
    judgement = judge_run(GoldenStore(root), inputs.load_run(str(candidate)), case="gpt/case",
                          policy="megatron", stage=False)
    assert sum(NEWER_COMPARATOR in w for w in judgement.result.warnings) == 1
    fsck = invoke("fsck", "--store", str(root), "--no-repair")
    assert fsck.output.count(NEWER_COMPARATOR) == 1


def test_comparator_markers_name_the_row(tmp_path, megatron_fixtures):
    root = comparator_copy(tmp_path, megatron_fixtures)
    common = root.parent / "python_test_utils" / "common.py"
    common.write_text(common.read_text() + "\nPRECISION = 'value_precision'\n")
    assert detect_generation(root).generation.name == "pr7087"
    linter = root.parents[2] / "tools" / "check_golden_values.py"
    linter.parent.mkdir()
    linter.write_text("parser.add_argument('--allow-legacy-precision')\n")
    found = detect_generation(root)
    assert (found.generation.name, found.warning) == ("pr7217", None)


def test_an_explicit_choice_wins_and_is_said_so(tmp_path, monkeypatch):
    root = tmp_path / "test_cases"
    write_megatron_case(root, "gpt/case", DETERMINISTIC, {GOLDEN: golden_doc(1.0, loss_marked=True)})
    assert detect_generation(root).generation.name == "pr7217"
    assert detect_generation(root, "legacy").why == "set explicitly (--megatron-generation)"
    monkeypatch.setenv("GOLDEN_MEGATRON_GENERATION", "pr7087")
    found = detect_generation(root)
    assert (found.generation.name, found.why) == ("pr7087", "set explicitly ($GOLDEN_MEGATRON_GENERATION)")
    monkeypatch.delenv("GOLDEN_MEGATRON_GENERATION")
    unmarked = tmp_path / "plain"
    write_megatron_case(unmarked, "gpt/case", DETERMINISTIC, {GOLDEN: golden_doc(1.0, loss_marked=False)})
    assert detect_generation(unmarked).generation.name == "legacy"


def test_fsck_and_approve_say_which_generation_and_why(tmp_path):
    root = tmp_path / "test_cases"
    write_megatron_case(root, "gpt/case", DETERMINISTIC, {GOLDEN: golden_doc(1.0, loss_marked=True)})
    fsck = invoke("fsck", "--store", str(root), "--no-repair")
    assert "Megatron generation pr7217 (detected: golden_values_dev_dgx_h100.json in case carries" in fsck.output
    candidate = tmp_path / "ci" / GOLDEN
    candidate.parent.mkdir()
    candidate.write_text(json.dumps(golden_doc(2.0, loss_marked=True)))
    approved = invoke("approve", str(candidate), "--store", str(root), "--case", "gpt/case", "--reason", "r",
                      "--approver", "ada", "--megatron-generation", "pr7087")
    assert approved.exit_code == 0, approved.output
    assert "Megatron generation pr7087 (set explicitly (--megatron-generation))" in approved.output


# ---------------------------------------------------------------- explaining a failure (PR #7321)

def judged_result(tmp_path: Path, config: str, golden: dict, actual: dict, row: str):
    root = tmp_path / "test_cases"
    write_megatron_case(root, "gpt/case", config, {GOLDEN: golden})
    candidate = tmp_path / "ci" / GOLDEN
    candidate.parent.mkdir(parents=True, exist_ok=True)
    candidate.write_text(json.dumps(actual, indent=4))
    return judge_run(GoldenStore(root, generation=row), inputs.load_run(str(candidate)),
                     case="gpt/case", policy="megatron", stage=False).result


def test_an_exact_failure_lists_each_sample_at_full_precision_in_every_format(tmp_path):
    from reports.document import Report
    from reports.html import result_html
    from reports.markdown import result_markdown
    from reports.terminal import result_lines

    result = judged_result(tmp_path, DETERMINISTIC, golden_doc(0.5, loss_marked=True),
                           golden_doc(ULP_ABOVE_HALF, loss_marked=True), "pr7217")
    loss = next(m for m in result.metric_verdicts() if m.metric == "lm loss" and m.rule.mode == "exact")
    assert [s.step for s in loss.samples] == [1, 5, 10] and loss.sample_decimals is None
    sample = loss.samples[0]
    assert (sample.golden, sample.actual, sample.tolerance) == (0.5, ULP_ABOVE_HALF, 0.0)
    assert sample.abs_error == ULP_ABOVE_HALF - 0.5 and sample.rel_error == (ULP_ABOVE_HALF - 0.5) / 0.5
    row = "step 1, golden 0.5, actual 0.5000000596046448, abs error 5.960464477539063e-08, " \
          "rel error 1.1920928955078125e-07, tolerance 0"
    assert any(row in line for line in result_lines(result))
    report = Report.of(result)
    markdown, page = result_markdown(report), result_html(report)
    assert "| 1 | 0.5 | 0.5000000596046448 | 5.960464477539063e-08 | 1.1920928955078125e-07 | 0 |" in markdown
    assert "<td class=\"num\">0.5000000596046448</td>" in page and "failing samples of &#39;lm loss&#39;" in page
    again = type(result).from_json(json.loads(json.dumps(result.to_json())))
    assert next(m for m in again.metric_verdicts() if m.metric == "lm loss").samples == loss.samples


def test_a_rounded_failure_shows_five_decimals_and_an_undefined_relative_error_says_why(tmp_path):
    from reports.terminal import result_lines

    golden = golden_doc(0.00001, 0.0, loss_marked=True)
    actual = golden_doc(0.0000151, 3.0, loss_marked=True)
    result = judged_result(tmp_path, APPROXIMATE, golden, actual, "pr7217")
    loss, zeros = (next(m for m in result.metric_verdicts() if m.metric == name) for name in ("lm loss", "num-zeros"))
    assert loss.sample_decimals == 5 and loss.samples[0].actual == 0.00002  # compared as rounded
    lines = "\n".join(result_lines(result))
    assert "step 1, golden 0.00001, actual 0.00002, abs error 0.00001, rel error 1.00000, tolerance 0.00000" in lines
    assert "values rounded to 5 decimals before comparing" in lines
    assert zeros.samples[0].rel_error is None and "rel error undefined (golden is 0)" in lines


# ---------------------------------------------------------------- the real sample

def test_approve_takes_megatrons_own_golden_with_nan_mid_series(tmp_path, megatron_fixtures):
    """bert_release's golden as Megatron's CI wrote it ("nan" where a step was not logged), approved
    into a copy of its case: accepted; the blocks the change did not touch keep their "nan" as written."""
    source = megatron_fixtures / "test_cases" / "bert" / "bert_release"
    root = tmp_path / "test_cases"
    shutil.copytree(source, root / "bert" / "bert_release")
    for path in (root / "bert" / "bert_release").iterdir():
        path.chmod(0o644)
    (root / "bert" / "bert_release").chmod(0o755)
    candidate = tmp_path / "ci" / "golden_values_dev_dgx_h100.json"
    candidate.parent.mkdir()
    doc = json.loads((source / "golden_values_dev_dgx_h100.json").read_text())
    doc["lm loss"]["values"]["100"] = doc["lm loss"]["values"]["100"] + 0.5  # a change to approve
    candidate.write_text(json.dumps(doc, indent=4))
    assert any(v == "nan" for v in doc["iteration-time"]["values"].values())
    approved = invoke("approve", str(candidate), "--store", str(root), "--case", "bert/bert_release",
                      "--reason", "new baseline", "--approver", "ada")
    assert approved.exit_code == 0, approved.output
    written = read_golden(root / "bert" / "bert_release" / "golden_values_dev_dgx_h100.json")
    assert written.metrics["lm loss"].as_dict()[100] == doc["lm loss"]["values"]["100"]
    after = json.loads((root / "bert" / "bert_release" / "golden_values_dev_dgx_h100.json").read_text())
    assert after["iteration-time"] == doc["iteration-time"]
    assert "Megatron generation legacy" in approved.output


@settings(max_examples=3000, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**9, 10**9).map(lambda k: k / 10**6 + 5e-6)
       | st.integers(-10**12, 10**12).map(lambda k: k * 5e-6), st.integers(0, 8))
def test_vectorised_rounding_is_pythons_round(x, decimals):
    """The engine rounds as Megatron's comparator does (Python's round), halves and their neighbours included."""
    with np.errstate(over="ignore"):
        values = [x, float(np.nextafter(x, np.inf)), float(np.nextafter(x, -np.inf))]
    got = round_each(np.array(values), decimals)
    want = [round(v, decimals) for v in values]
    assert got.tobytes() == np.array(want).tobytes()
