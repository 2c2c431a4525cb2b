"""golden validate's library half: every file classified ok / warning / error with a reason."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goldens.core.errors import FormatError
from goldens.core.model import GoldenSet, MetricSeries
from goldens.files.validate import (
    ERROR,
    OK,
    WARNING,
    check_golden_set,
    check_grid,
    check_values,
    validate_golden_file,
    validate_paths,
)
from tests.builders import series

VARIANTS = Path(__file__).parent / "fixtures" / "megatron_variants"
NAME = "golden_values_dev_cpu.json"

EXPECTED = {  # variant folder → (status of its golden file, a fragment of the first finding)
    "current_dict": (OK, None),
    "compact_dict": (OK, None),
    "list_values": (OK, None),
    "bare_nan_literal": (OK, None),
    "scalar_entries": (OK, None),
    "bad_model_config": (OK, None),
    "inference": (WARNING, "not a training golden"),
    "unknown_metric": (WARNING, "unknown metric 'my-custom-metric'"),
    "unordered_steps": (WARNING, "steps not in increasing order (step 2 written after 3)"),
    "missing_grid_steps": (WARNING, "grid step 10 absent"),
    "nan_inside": (WARNING, "'lm loss': \"nan\" at step 3 after values began at step 1: read as steps with no value"),
    "inf_value": (ERROR, "'lm loss': infinite value at step 2"),
    "off_grid": (ERROR, "step 7 off the grid declared by start_step 1, step_interval 5"),
    "outside_range": (ERROR, "step 15 outside start_step 1 … end_step 10"),
    "empty_file": (ERROR, "empty file"),
    "empty_object": (ERROR, "no metrics in file"),
    "truncated": (ERROR, "truncated JSON"),
    "wrong_type_value": (ERROR, "expected a number, got the string 'ten'"),
    "wrong_type_bool": (ERROR, "expected a number, got true"),
    "wrong_type_step": (ERROR, "step must be an integer, got 'two'"),
    "wrong_type_metric": (ERROR, "expected a metric object"),
    "wrong_type_top": (ERROR, "expected a JSON object of metrics"),
    "duplicate_keys": (ERROR, "key '2': key written twice"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_variant_is_classified_with_its_reason(name):
    status, fragment = EXPECTED[name]
    report = validate_golden_file(VARIANTS / name / NAME)
    assert report.status == status, report.findings
    if fragment is None:
        assert report.findings == ()
    else:
        assert fragment in report.findings[0].message


def test_every_fixture_variant_has_an_expectation():
    assert sorted(p.name for p in VARIANTS.iterdir() if p.is_dir()) == sorted(EXPECTED | {"resume_pair": 0})


def test_folder_walk_checks_golden_and_case_files_only(tmp_path):
    summary = validate_paths([VARIANTS])
    by_path = {Path(r.path).relative_to(VARIANTS).as_posix(): r for r in summary.reports}
    assert by_path["bad_model_config/model_config.yaml"].status == ERROR
    assert "invalid YAML at line 3" in by_path["bad_model_config/model_config.yaml"].findings[0].message
    assert by_path["current_dict/model_config.yaml"].status == OK
    assert by_path["resume_pair/golden_values_dev_cpu_2nd.json"].status == OK
    assert len(summary.reports) == len(EXPECTED) + 2 + 2  # one golden each, the pair's 2nd, two model configs
    assert summary.count(ERROR) == 13 and summary.count(WARNING) == 5 and summary.worst == ERROR


def test_hidden_folders_and_other_files_are_ignored(tmp_path):
    case = tmp_path / "case"
    (case / ".golden" / "objects").mkdir(parents=True)
    (case / ".golden" / "objects" / "golden_values_x_y.json").write_text("broken")
    (case / "notes.json").write_text("broken")
    (case / "README.md").write_text("hello")
    assert validate_paths([tmp_path]).reports == ()


def test_a_file_named_explicitly_is_validated_whatever_its_name(tmp_path):
    path = tmp_path / "golden_values_dev.json"
    path.write_text('{"lm loss": {"start_step": 1, "end_step": 1, "step_interval": 1, "values": {"1": 1.5}}}')
    report = validate_paths([path]).reports[0]
    assert report.status == WARNING and "golden_values_<env>_<platform>" in report.findings[0].message


def test_second_phase_file_without_its_first_phase_file_warns(tmp_path):
    (tmp_path / "golden_values_dev_cpu_2nd.json").write_bytes((VARIANTS / "resume_pair" / NAME).read_bytes())
    report = validate_paths([tmp_path]).reports[0]
    assert report.status == WARNING
    assert "without its phase-1 file golden_values_dev_cpu.json" in report.findings[0].message


def test_metric_declared_in_case_yaml_is_known(tmp_path):
    (tmp_path / NAME).write_bytes((VARIANTS / "unknown_metric" / NAME).read_bytes())
    (tmp_path / "case.yaml").write_text("metrics:\n  my-custom-metric: {mode: exact}\n")
    assert validate_golden_file(tmp_path / NAME).status == OK


def test_nonexistent_path_is_a_usage_error(tmp_path):
    with pytest.raises(FormatError, match="no such file or directory"):
        validate_paths([VARIANTS, tmp_path / "nope"])


def test_the_same_file_given_twice_is_reported_once():
    path = VARIANTS / "current_dict" / NAME
    assert len(validate_paths([path, path.parent, path]).reports) == 2  # the golden and model_config.yaml


def test_json_shape():
    doc = validate_paths([VARIANTS / "inf_value"]).to_json()
    assert doc["summary"] == {"ok": 0, "warning": 0, "error": 1}
    finding = doc["files"][0]["findings"][0]
    assert (finding["severity"], finding["metric"], finding["step"]) == ("error", "lm loss", 2)


# ---------------------------------------------------------------- the in-memory rules

nan, inf = float("nan"), float("inf")


def test_leading_nan_run_is_the_steps_not_run_marker():
    assert check_values(series("lm loss", values=[nan, nan, nan, 1.0, 2.0], grid=True)) == []


def test_nan_after_the_first_value_is_a_warning_naming_every_step():
    # Megatron's reader takes "nan" as a step with no value and its CI wrote such files: never an error.
    findings = check_values(series("lm loss", values=[nan, 1.0, nan, 2.0, nan], grid=True))
    assert [(f.severity, f.metric, f.step) for f in findings] == [(WARNING, "lm loss", 3)]
    assert '"nan" at step 3, 5 after values began at step 2' in findings[0].message


def test_long_lists_of_steps_are_abbreviated_with_a_count():
    message = check_values(series("lm loss", values=[1.0] + [nan] * 8, grid=True))[0].message
    assert "step 2, 3, 4, 5, 6, … (8 in all)" in message


def test_any_infinity_is_an_error_even_in_the_leading_run():
    findings = check_values(series("lm loss", values=[-inf, 1.0, inf], grid=True))
    assert [(f.severity, f.step) for f in findings] == [(ERROR, 1)]
    assert "infinite value at step 1, 3" in findings[0].message


def test_all_nan_metric_warns():
    assert [f.severity for f in check_values(series("lm loss", values=[nan, nan], grid=True))] == [WARNING]


def test_megatron_grid_start_1_interval_5_is_normal():
    steps = [1, *range(5, 101, 5)]
    assert check_grid(series("lm loss", steps, [1.0] * len(steps), grid=True, step_interval=5)) == []


@pytest.mark.parametrize("start, end, interval, message", [
    (1, 10, 0, "step_interval must be positive"),
    (10, 1, 1, "end_step 1 is before start_step 10"),
])
def test_impossible_headers_are_errors(start, end, interval, message):
    findings = check_grid(series("lm loss", values=[1.0, 2.0], grid=True, start_step=start, end_step=end,
                                step_interval=interval))
    assert findings[0].severity == ERROR and message in findings[0].message


def test_missing_header_warns():
    plain = MetricSeries("lm loss", np.array([1, 2]), np.array([1.0, 2.0]))
    assert "no start_step, end_step, step_interval" in check_grid(plain)[0].message


def test_list_layout_checks_the_count_against_start_end_interval():
    short = MetricSeries("lm loss", np.arange(0, 40, 5), np.ones(8), 0, 50, 5)
    assert check_golden_set(GoldenSet({"lm loss": short}), list_metrics=["lm loss"])[0].message.startswith(
        "'lm loss': 8 values do not fill start_step 0 … end_step 50 every 5 (expected 10 or 11)")
    exclusive = MetricSeries("lm loss", np.arange(0, 50, 5), np.ones(10), 0, 50, 5)
    assert check_golden_set(GoldenSet({"lm loss": exclusive}), list_metrics=["lm loss"]) == []


def test_non_finite_scalar_is_an_error_and_unknown_scalar_a_warning():
    findings = check_golden_set(GoldenSet({}, {"iteration_timing_avg": nan, "speed": 1.0}))
    assert [(f.severity, f.metric) for f in findings] == [(ERROR, "iteration_timing_avg"), (WARNING, "speed")]


def test_shared_megatron_test_cases_all_classified(megatron_fixtures):
    summary = validate_paths([megatron_fixtures / "test_cases" / "bert"])
    goldens = [r for r in summary.reports if r.kind == "golden"]
    assert len(goldens) == 31 and summary.count(ERROR) == 0  # Megatron's reader accepts every one of them
    warned = sorted(Path(r.path).parent.name for r in summary.reports if r.status == WARNING)
    assert warned == ["bert_release"] * 3 + ["bert_release_sm"] * 2  # "nan" inside their series: steps not logged
    assert all(r.status == OK for r in summary.reports if "bert_release" not in r.path)


def test_shared_megatron_sample_errors_only_where_megatrons_reader_refuses(megatron_fixtures):
    """Every file the validator calls an error, Megatron's own reader (common.py) refuses too."""
    pytest.importorskip("tensorboard", reason="Megatron's common.py imports tensorboard")
    pydantic = pytest.importorskip("pydantic", reason="Megatron's common.py reads goldens with pydantic")
    from tests.oracle import megatron_oracle

    summary = validate_paths([megatron_fixtures / "test_cases"])
    errors = [r.path for r in summary.reports if r.status == ERROR]
    assert len(errors) == 2  # an empty file and a {} golden
    with megatron_oracle(megatron_fixtures / "python_test_utils") as oracle:
        for path in errors:
            with pytest.raises((json.JSONDecodeError, pydantic.ValidationError)):  # the empty file, the {} golden
                oracle.common.read_golden_values_from_json(path)


# ---------------------------------------------------------------- hostile input never tracebacks

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from(["nan", "inf", "1", "values", "start_step"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.text(max_size=6) | st.sampled_from(["values", "start_step", "end_step", "step_interval", "1", "2",
                                               "lm loss", "generated_text"]), children, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_json)
def test_any_json_document_gets_a_report_not_an_exception(tmp_path, doc):
    path = tmp_path / NAME
    path.write_text(json.dumps(doc))
    report = validate_golden_file(path)
    assert report.status in (OK, WARNING, ERROR)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_any_bytes_get_a_report_not_an_exception(tmp_path, data):
    path = tmp_path / NAME
    path.write_bytes(data)
    assert validate_golden_file(path).status in (OK, WARNING, ERROR)
    yaml_path = tmp_path / "model_config.yaml"
    yaml_path.write_bytes(data)
    assert validate_paths([yaml_path]).reports[0].status in (OK, ERROR)
