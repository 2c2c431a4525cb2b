"""Megatron golden JSON in every variant, the round trip, and the run artifact (goldens.files.formats)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goldens.core.errors import FormatError, NotATrainingGolden
from goldens.core.model import Artifact, GoldenKey, GoldenSet, MetricSeries, Phase
from goldens.files.formats.artifact import (
    ARTIFACT_SCHEMA,
    artifact_phase_golden,
    dumps_artifact,
    export_megatron,
    parse_artifact,
    read_artifact,
)
from goldens.files.formats.golden import (
    dumps_golden,
    load_golden_text,
    parse_golden,
    parse_golden_filename,
    parse_metric,
    read_golden,
)
from goldens.files.formats.jsontext import load_json_text
from goldens.files.formats.numeric import megatron_grid
from tests.builders import series

VARIANTS = Path(__file__).parent / "fixtures" / "megatron_variants"
NAME = "golden_values_dev_cpu.json"


def variant(name: str, filename: str = NAME) -> Path:
    return VARIANTS / name / filename


def bits(values: np.ndarray) -> bytes:
    return np.asarray(values, dtype=np.float64).tobytes()


# ---------------------------------------------------------------- every variant, read faithfully

def test_current_layout_dict_keyed_by_step_strings():
    golden = read_golden(variant("current_dict"))
    assert list(golden.metrics) == ["lm loss", "num-zeros", "iteration-time", "mem-allocated-bytes"]
    loss = golden.metrics["lm loss"]
    assert loss.steps.tolist() == [1, 5, 10, 15, 20]
    assert loss.steps.dtype == np.int64 and loss.values.dtype == np.float64
    assert loss.values.tolist() == [10.49226, 10.123456789012345, 9.87654321, 9.5, 9.000000000000002]
    assert (loss.start_step, loss.end_step, loss.step_interval) == (1, 20, 5)
    assert golden.key == GoldenKey("current_dict", "dev", "cpu", 1)


def test_compact_one_line_file_reads_the_same_as_the_indented_one():
    assert read_golden(variant("compact_dict")) == read_golden(variant("current_dict"))


def test_nan_string_reads_as_nan_and_other_values_stay_exact():
    itime = read_golden(variant("current_dict")).metrics["iteration-time"]
    assert math.isnan(itime.values[0])
    assert itime.values[1:].tolist() == [0.29824, 0.29549, 0.2957400000000001, 0.29514]


def test_older_list_layout_starts_at_start_step_by_step_interval():
    golden = read_golden(variant("list_values"))
    loss = golden.metrics["lm loss"]
    assert loss.steps.tolist() == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]
    assert loss.values[0] == 10.86122 and loss.values[-1] == 9.8348
    assert (loss.start_step, loss.end_step, loss.step_interval) == (0, 50, 5)
    assert golden.scalars == {"iteration_timing_avg": 0.61}


def test_bare_nan_literal_reads_as_nan():
    loss = read_golden(variant("bare_nan_literal")).metrics["lm loss"]
    assert np.isnan(loss.values[:2]).all() and loss.values[2:].tolist() == [9.25, 9.125]


def test_inf_strings_read_as_signed_infinity():
    assert read_golden(variant("inf_value")).metrics["lm loss"].values[1] == math.inf
    series = parse_metric("x", {"start_step": 1, "step_interval": 1, "values": ["-inf", "Infinity", " NaN "]})
    assert series.values[0] == -math.inf and series.values[1] == math.inf and math.isnan(series.values[2])


def test_scalar_entries_are_kept_beside_the_metrics():
    golden = read_golden(variant("scalar_entries"))
    assert list(golden.metrics) == ["lm loss"] and golden.scalars == {"iteration_timing_avg": 0.61}


def test_resume_pair_second_file_is_phase_2_and_spans_the_whole_run():
    second = read_golden(variant("resume_pair", "golden_values_dev_cpu_2nd.json"))
    assert second.key == GoldenKey("resume_pair", "dev", "cpu", 2)
    loss = second.metrics["lm loss"]
    assert loss.steps.tolist() == list(range(1, 21))
    assert np.isnan(loss.values[:10]).all() and not np.isnan(loss.values[10:]).any()


def test_inference_golden_is_recognised_not_crashed_on():
    with pytest.raises(NotATrainingGolden, match="not a training golden") as info:
        read_golden(variant("inference"))
    assert str(variant("inference")) in str(info.value)


def test_inference_golden_with_extra_top_level_entries_is_still_recognised():
    doc = {"0": {"input_prompt": "a", "generated_text": "b", "logprobs": [-1.0]}, "throughput": [12.5, 13.0]}
    with pytest.raises(NotATrainingGolden):
        parse_golden(doc)


@pytest.mark.parametrize("name, message", [
    ("empty_file", "empty file"),
    ("empty_object", "no metrics in file"),
    ("truncated", "truncated JSON at line 14"),
    ("wrong_type_value", "key 'lm loss.values.2': expected a number, got the string 'ten'"),
    ("wrong_type_bool", "key 'lm loss.values.2': expected a number, got true"),
    ("wrong_type_step", "key 'lm loss.values': step must be an integer, got 'two'"),
    ("wrong_type_metric", "key 'lm loss': expected a metric object"),
    ("wrong_type_top", "expected a JSON object of metrics, got list"),
    ("duplicate_keys", "key '2': key written twice"),
])
def test_broken_files_raise_one_clear_error_naming_file_and_key(name, message):
    path = variant(name)
    with pytest.raises(FormatError) as info:
        read_golden(path)
    text = str(info.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


@pytest.mark.parametrize("raw, message", [
    ({"values": {"1": 1.0}, "colour": "red"}, "unknown field(s) ['colour']"),
    ({"start_step": 1}, "no 'values'"),
    ({"values": "1.0"}, "'values' must be an object or a list"),
    ({"values": [1.0]}, "need 'start_step' and 'step_interval'"),
    ({"start_step": 0, "step_interval": 0, "values": [1.0]}, "step_interval must be positive"),
    ({"values": {"1": 1.0, "01": 2.0}}, "step 1 written twice"),
    ({"values": {"-1": 1.0}}, "step must be an integer, got '-1'"),
    ({"values": {str(2**60): 1.0}}, "step must be between 0 and 2**53"),
    ({"values": {"1": 10**400}}, "integer too large for a float64"),
    ({"values": {"1": None}}, "expected a number, got null"),
    ({"start_step": "x", "values": {"1": 1.0}}, "key 'm.start_step': step must be an integer"),
])
def test_malformed_metric_objects_are_rejected_with_the_key(raw, message):
    with pytest.raises(FormatError) as info:
        parse_metric("m", raw, path="f.json")
    assert message in str(info.value)


def test_steps_written_out_of_order_are_sorted_with_their_values():
    series = read_golden(variant("unordered_steps")).metrics["lm loss"]
    assert series.steps.tolist() == [1, 2, 3] and series.values.tolist() == [10.5, 10.25, 10.0]


def test_missing_file_and_directory_give_format_errors(tmp_path):
    with pytest.raises(FormatError, match="no such file"):
        read_golden(tmp_path / NAME)
    with pytest.raises(FormatError, match="is a directory"):
        read_golden(tmp_path)


def test_non_utf8_file_is_rejected(tmp_path):
    path = tmp_path / NAME
    path.write_bytes(b'{"lm loss": \xff}')
    with pytest.raises(FormatError, match="not UTF-8"):
        read_golden(path)


@pytest.mark.parametrize("name, expected", [
    ("golden_values_dev_dgx_h100.json", ("dev", "dgx_h100", 1)),
    ("golden_values_dev_dgx_h100_2nd.json", ("dev", "dgx_h100", 2)),
    ("golden_values_lts_dgxa100_dracooci-ord.json", ("lts", "dgxa100_dracooci-ord", 1)),
    ("golden_values_dev.json", None),
    ("golden_values_0.9.0_dgx_a100.json", None),
    ("model_config.yaml", None),
])
def test_golden_file_names(name, expected):
    assert parse_golden_filename(name) == expected


def test_megatron_grid_is_start_then_multiples_of_the_interval():
    assert megatron_grid(1, 100, 5).tolist() == [1, *range(5, 101, 5)]
    assert megatron_grid(2, 6, 1).tolist() == [2, 3, 4, 5, 6]
    assert megatron_grid(0, 20, 5).tolist() == [0, 5, 10, 15, 20]


# ---------------------------------------------------------------- round trip

def test_canonical_file_rewrites_byte_identical():
    text = variant("current_dict").read_text()
    assert dumps_golden(read_golden(variant("current_dict"))) == text


def test_list_layout_rewrites_in_the_current_layout_and_reads_back_equal():
    golden = read_golden(variant("list_values"))
    doc = json.loads(dumps_golden(golden))
    assert doc["lm loss"]["values"]["45"] == 9.8348 and doc["iteration_timing_avg"] == 0.61
    assert parse_golden(load_json_text(dumps_golden(golden))) == golden


def test_nan_is_written_as_the_string_megatron_uses():
    doc = json.loads(dumps_golden(read_golden(variant("bare_nan_literal"))))
    assert doc["lm loss"]["values"]["1"] == "nan"


_finite = st.floats(allow_nan=False, allow_infinity=False)
_value = st.one_of(_finite, st.sampled_from(["nan", "inf", "-inf"]), st.integers(-(2**53), 2**53))
_name = st.text(min_size=1, max_size=12)


@st.composite
def _metric(draw):
    steps = sorted(draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=30, unique=True)))
    if draw(st.booleans()):
        values = draw(st.lists(_value, min_size=len(steps), max_size=len(steps)))
        return {"start_step": steps[0], "end_step": steps[-1], "step_interval": draw(st.integers(1, 100)),
                "values": {str(s): v for s, v in zip(steps, values, strict=True)}}
    start, interval = draw(st.integers(0, 100)), draw(st.integers(1, 100))
    values = draw(st.lists(_value, min_size=1, max_size=30))
    return {"start_step": start, "end_step": start + interval * len(values), "step_interval": interval,
            "values": values}


@st.composite
def _golden_doc(draw):
    metrics = draw(st.dictionaries(_name, _metric(), min_size=1, max_size=4))
    scalars = draw(st.dictionaries(_name.filter(lambda n: n not in metrics), _value, max_size=2))
    return {**metrics, **scalars}


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(doc=_golden_doc(), indent=st.sampled_from([None, 4]))
def test_read_write_read_is_bit_identical(doc, indent):
    text = json.dumps(doc, indent=indent)
    first = parse_golden(load_json_text(text))
    written = dumps_golden(first)
    second = parse_golden(load_json_text(written))
    assert second == first  # steps, float64 bits (NaN equals NaN), grid headers, scalars, order
    for name, metric in first.metrics.items():
        assert bits(second.metrics[name].values) == bits(metric.values)
    assert dumps_golden(second) == written  # a canonical file re-writes byte-identical


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(allow_nan=False), min_size=1, max_size=50))
def test_any_float64_survives_write_and_read_exactly(values):
    steps = np.arange(1, len(values) + 1)
    golden = GoldenSet({"lm loss": MetricSeries("lm loss", steps, np.array(values), 1, len(values), 1)})
    back = parse_golden(load_json_text(dumps_golden(golden)))
    assert bits(back.metrics["lm loss"].values) == bits(np.array(values))


def test_shared_megatron_files_round_trip(megatron_fixtures):
    files = list((megatron_fixtures / "test_cases" / "bert").rglob("*.json"))  # every real BERT golden
    files += [p for p in (megatron_fixtures / "history").rglob("*.json") if p.name != "index.json"]
    assert len(files) >= 40
    canonical = 0
    for path in files:
        text = path.read_text()
        golden = read_golden(path)
        written = dumps_golden(golden)
        assert parse_golden(load_json_text(written)) == golden, path
        if json.dumps(json.loads(text), indent=4) == text:
            canonical += 1
            assert written == text, path
    assert canonical >= 10


# ---------------------------------------------------------------- artifact

def _artifact() -> Artifact:
    p1 = {"lm loss": series("lm loss", range(1, 21), [10 - i / 8 for i in range(20)], grid=True),
          "iteration-time": series("iteration-time", range(2, 21), [0.5 + i / 256 for i in range(19)], grid=True)}
    p2 = {"lm loss": series("lm loss", range(11, 21), [10 - i / 8 for i in range(10, 20)], grid=True),
          "iteration-time": series("iteration-time", range(12, 21), [0.5 + i / 256 for i in range(9)], grid=True)}
    return Artifact(case="resume_case", run_id="run-1", status="complete",
                    provenance={"created": "2026-01-01T00:00:00Z", "device": "cpu", "fingerprint": "abc"},
                    phases={1: Phase(1, p1, 1, 20), 2: Phase(2, p2, 11, 20, resumed_from=10)})


def test_artifact_dump_parse_round_trip(tmp_path):
    artifact = _artifact()
    text = dumps_artifact(artifact)
    assert json.loads(text)["schema"] == ARTIFACT_SCHEMA
    back = parse_artifact(json.loads(text))
    assert (back.case, back.run_id, back.status, back.provenance) == ("resume_case", "run-1", "complete",
                                                                      artifact.provenance)
    assert back.fingerprint == "abc" and back.approvable
    for number, phase in artifact.phases.items():
        got = back.phases[number]
        assert (got.first_step, got.last_step, got.resumed_from) == (phase.first_step, phase.last_step,
                                                                      phase.resumed_from)
        assert got.metrics == phase.metrics
    (tmp_path / "artifact.json").write_text(text)
    assert read_artifact(tmp_path).phases[2].metrics == artifact.phases[2].metrics
    assert dumps_artifact(back) == text


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(schema="golden.artifact/9"), "unsupported schema"),
    (lambda d: d.pop("run_id"), "missing required field 'run_id'"),
    (lambda d: d.update(status="great"), "status must be one of"),
    (lambda d: d["phases"].update({"3": d["phases"]["1"]}), "phase must be 1 or 2"),
    (lambda d: d["phases"]["1"].update(steps=[1]), "steps must be [first, last]"),
    (lambda d: d.update(provenance=[]), "expected dict"),
    (lambda d: d.update(run_id="r1\nv9  approve  by mallory"), "key 'run_id': invalid run id 'r1\\nv9"),
    (lambda d: d.update(run_id="../../etc"), "key 'run_id': invalid run id '../../etc'"),
    (lambda d: d.update(run_id=".."), "key 'run_id': invalid run id '..'"),
    (lambda d: d.update(run_id=""), "key 'run_id': invalid run id ''"),
    (lambda d: d["provenance"].update(env="../x"), "key 'provenance.env': invalid env name '../x'"),
    (lambda d: d["provenance"].update(platform="a\nb"), "key 'provenance.platform': invalid platform name"),
    (lambda d: d["provenance"].update(platform=["cpu"]), "key 'provenance.platform': expected a string, got list"),
    (lambda d: d["phases"]["1"].update(steps=[20, 1]), "first ≤ last, got [20, 1]"),
    (lambda d: d["phases"]["1"]["metrics"].update({"a\nb": d["phases"]["1"]["metrics"]["lm loss"]}),
     "key 'a\\nb': a metric name must be printable text"),
    (lambda d: d["phases"]["1"]["metrics"].update({"": d["phases"]["1"]["metrics"]["lm loss"]}),
     "key '': a metric name must be printable text"),
])
def test_malformed_artifacts_are_rejected(mutate, message):
    doc = json.loads(dumps_artifact(_artifact()))
    mutate(doc)
    with pytest.raises(FormatError) as info:
        parse_artifact(doc, path="artifact.json")
    assert message in str(info.value)


def test_export_writes_the_megatron_pair_with_nan_for_steps_phase_2_did_not_run(tmp_path):
    written = export_megatron(_artifact(), tmp_path, "dev", "cpu")
    assert [p.name for p in written] == ["golden_values_dev_cpu.json", "golden_values_dev_cpu_2nd.json"]
    first = json.loads(written[0].read_text())
    assert list(first["lm loss"]["values"]) == [str(s) for s in range(1, 21)]
    assert first["iteration-time"]["start_step"] == 2
    second = json.loads(written[1].read_text())
    loss = second["lm loss"]
    assert (loss["start_step"], loss["end_step"], loss["step_interval"]) == (1, 20, 1)
    assert list(loss["values"]) == [str(s) for s in range(1, 21)]
    assert [loss["values"][str(s)] for s in range(1, 11)] == ["nan"] * 10
    assert loss["values"]["11"] == 10 - 10 / 8
    itime = second["iteration-time"]["values"]
    assert [itime[str(s)] for s in range(1, 12)] == ["nan"] * 11 and itime["12"] == 0.5


def test_export_pads_a_sparse_phase_2_on_megatron_s_grid(tmp_path):
    steps = list(range(55, 101, 5))
    p1 = {"lm loss": series("lm loss", [1, *range(5, 101, 5)], [10.0 - i / 16 for i in range(21)], grid=True,
                            step_interval=5)}
    p2 = {"lm loss": series("lm loss", steps, [9.0 - i / 16 for i in range(len(steps))], grid=True,
                            step_interval=5)}
    artifact = Artifact("c", "r", "complete", {}, {1: Phase(1, p1, 1, 100), 2: Phase(2, p2, 51, 100, 50)})
    second = json.loads(export_megatron(artifact, tmp_path, "dev", "cpu")[1].read_text())["lm loss"]
    assert list(second["values"]) == ["1", *map(str, range(5, 101, 5))]
    assert [second["values"][str(s)] for s in [1, 5, 50]] == ["nan"] * 3 and second["values"]["55"] == 9.0


def test_export_reproduces_megatron_s_own_resume_pair_byte_for_byte(megatron_fixtures, tmp_path):
    case_dir = megatron_fixtures / "test_cases/bert/bert_mcore_tp2_pp2_resume_torch_dist_local_spec"
    shipped_first = read_golden(case_dir / "golden_values_dev_dgx_h100.json")
    shipped_second = read_golden(case_dir / "golden_values_dev_dgx_h100_2nd.json")
    phase2 = {name: s.present() for name, s in shipped_second.metrics.items()}
    artifact = Artifact("bert", "r", "complete", {},
                        {1: Phase(1, shipped_first.metrics, 1, 100), 2: Phase(2, phase2, 51, 100, resumed_from=50)})
    first, second = export_megatron(artifact, tmp_path, "dev", "dgx_h100")
    assert second.read_bytes() == (case_dir / "golden_values_dev_dgx_h100_2nd.json").read_bytes()
    assert first.read_bytes() == (case_dir / "golden_values_dev_dgx_h100.json").read_bytes()


def test_phase_golden_without_span_is_the_phase_as_recorded():
    artifact = _artifact()
    assert artifact_phase_golden(artifact, 2).metrics == artifact.phases[2].metrics


def test_numpy_integer_grid_headers_are_plain_ints_and_writable():
    series = MetricSeries("lm loss", np.array([1, 2]), np.array([1.0, 2.0]), np.int64(1), np.int64(2), np.int32(1))
    assert type(series.end_step) is int and type(series.step_interval) is int
    assert json.loads(dumps_golden(GoldenSet({"lm loss": series})))["lm loss"]["end_step"] == 2


def test_an_integer_past_pythons_digit_limit_is_a_format_error():
    text = '{"lm loss": {"values": {"1": 1' + "0" * 5000 + "}}}"
    with pytest.raises(FormatError, match=r"g\.json: malformed JSON: Exceeds the limit \(4300 digits\)"):
        load_json_text(text, path="g.json")


# ---------------------------------------------------------------- the golden reader's arrays

def _read_both_ways(text: str, where: object):
    """What parse_golden makes of the text read plainly and read as a golden (values as arrays)."""
    out = []
    for load in (load_json_text, load_golden_text):
        try:
            out.append(parse_golden(load(text, where), path=where))
        except FormatError as exc:
            out.append((type(exc).__name__, str(exc)))
    return out


def test_the_golden_reader_reads_every_variant_exactly_as_the_plain_reader():
    files = sorted(VARIANTS.rglob("*.json"))
    assert len(files) >= 25
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            continue
        plain, compact = _read_both_ways(text, path)
        assert plain == compact, path


def test_the_golden_reader_reads_every_real_megatron_golden_as_the_plain_reader(megatron_fixtures):
    files = sorted(megatron_fixtures.rglob("*golden_values_*.json"))
    assert len(files) > 50
    for path in files:
        plain, compact = _read_both_ways(path.read_text(encoding="utf-8"), path)
        assert plain == compact, path


@pytest.mark.parametrize("doc", [
    {"lm loss": {"start_step": 1, "end_step": 3, "step_interval": 1, "values": {"3": 1.5, "1": "nan", "2": 3}}},
    {"lm loss": {"values": {"1": 1.0, "01": 2.0}}},                       # step written twice
    {"lm loss": {"values": {"1": 1.0, "x": 2.0}}},                        # not a step
    {"lm loss": {"values": {"1": "fast", "2": 2.0}}},                     # not a number
    {"lm loss": {"values": {"1": 10**400}}},                              # beyond float64
    {"lm loss": {"values": {str(2**53 + 1): 1.0}}},                       # beyond 2**53
    {"lm loss": {"values": {"1" * 17: 1.0}}},                             # 17 digits
    {"lm loss": {"values": {}}},
    {"1": 0.5, "2": 0.25},                                                # scalars named by digits
    {"values": {"1": 1.0}, "start_step": 1},                              # a metric object at the top
])
def test_the_golden_reader_agrees_with_the_plain_reader_on_odd_values(doc):
    plain, compact = _read_both_ways(json.dumps(doc), "g.json")
    if isinstance(plain, tuple):
        assert isinstance(compact, tuple)  # both refuse (the top-level metric object: each its own words)
    else:
        assert plain == compact


def test_the_golden_reader_keeps_metric_values_as_arrays():
    from goldens.files.formats.golden import StepValues

    doc = load_golden_text(json.dumps({"lm loss": {"values": {"1": 1.0, "5": 2.0}}}), "g.json")
    values = doc["lm loss"]["values"]
    assert isinstance(values, StepValues) and values.steps.tolist() == [1, 5] and values.values.tolist() == [1.0, 2.0]
    assert load_json_text('{"provenance": {"values": {"1": 1}}}', "a.json") == {"provenance": {"values": {"1": 1}}}
