"""A Megatron case's model_config.yaml decides what ``--policy megatron`` checks, as Megatron's CI:
METRICS, the regime from ENV_VARS read as yq prints it, and the test type; the result says where
each choice came from. (Against Megatron's own functions: tests/test_megatron_oracle.py, extra.)"""
from __future__ import annotations

import copy
import json

import pytest
from typer.testing import CliRunner

from goldens import inputs
from goldens.cli import app
from goldens.core.errors import FormatError, GoldenError
from goldens.core.megatron import DEFAULT_METRICS, INFERENCE, REGULAR, RESUME
from goldens.core.policy import build_policies
from goldens.core.result import Verdict
from goldens.megatron.case import read_megatron_case
from goldens.store import GoldenStore
from goldens.workflow.judge import judge_run
from tests.builders import inference_doc, training_doc, write_megatron_case


def case_of(tmp_path, text: str):
    path = tmp_path / "model_config.yaml"
    path.write_text(text)
    return read_megatron_case(path)


@pytest.mark.parametrize("line, allowed", [
    ("NVTE_ALLOW_NONDETERMINISTIC_ALGO: 1", True),
    ('NVTE_ALLOW_NONDETERMINISTIC_ALGO: "1"', True),
    ("NVTE_ALLOW_NONDETERMINISTIC_ALGO: '1'", True),
    ("NVTE_ALLOW_NONDETERMINISTIC_ALGO: 1  # on", True),
    ("NVTE_ALLOW_NONDETERMINISTIC_ALGO: 0", False),
    ("NVTE_ALLOW_NONDETERMINISTIC_ALGO: 1.0", False),   # yq prints 1.0: not the text "1"
    ("NVTE_ALLOW_NONDETERMINISTIC_ALGO: true", False),
    ("NVTE_ALLOW_NONDETERMINISTIC_ALGO: 01", False),    # safe_load reads 1; yq prints 01
    ("NVTE_ALLOW_NONDETERMINISTIC_ALGO: +1", False),
    ("OTHER: 1", False),
    ("NVTE_ALLOW_NONDETERMINISTIC_ALGO: 0\n  NON_DETERMINSTIC_RESULTS: 1", True),
    ('NVTE_ALLOW_NONDETERMINISTIC_ALGO: 0\n  NON_DETERMINSTIC_RESULTS: "1"', True),
    ("NVTE_ALLOW_NONDETERMINISTIC_ALGO: 0\n  NON_DETERMINSTIC_RESULTS: false", False),
    ("NVTE_ALLOW_NONDETERMINISTIC_ALGO: 0\n  NON_DETERMINISTIC_RESULTS: 1", False),  # only Megatron's spelling
])
def test_the_regime_is_the_text_yq_prints_compared_with_1(tmp_path, line, allowed):
    case = case_of(tmp_path, f"ENV_VARS:\n  {line}\nTEST_TYPE: regular\n")
    assert case.allow_nondeterministic is allowed
    assert "ENV_VARS.NVTE_ALLOW_NONDETERMINISTIC_ALGO=" in case.regime_origin


@pytest.mark.parametrize("text, metrics", [
    ("TEST_TYPE: regular\n", DEFAULT_METRICS),
    ("TEST_TYPE: regular\nMETRICS: [iteration-time, lm loss]\n", ("iteration-time", "lm loss")),
    ("TEST_TYPE: regular\nMETRICS: []\n", ()),
    ("TEST_TYPE: regular\nMETRICS:\n  - lm loss\n  - lm loss\n", ("lm loss",)),
    ("TEST_TYPE: frozen-start\nMODE: inference\nMETRICS: null\n", ()),
    ("TEST_TYPE: frozen-start\nMODE: inference\nMETRICS: [generated_tokens, 3]\n", ("generated_tokens",)),
])
def test_metrics_are_what_megatrons_test_reads(tmp_path, text, metrics):
    case = case_of(tmp_path, text)
    assert case.metrics == metrics
    assert case.metrics_origin.startswith("metrics:")


@pytest.mark.parametrize("text, message", [
    ("TEST_TYPE: regular\nMETRICS: null\n", "METRICS is null"),
    ("TEST_TYPE: regular\nMETRICS: lm loss\n", "METRICS must be a list"),
    ("TEST_TYPE: regular\nMETRICS: [lm loss, 5]\n", "METRICS holds 5"),
    ("TEST_TYPE: frozen-start\nMODE: inference\n", "no METRICS"),
    ("- a list\n", "expected a mapping"),
    ("TEST_TYPE: [unclosed\n", "invalid YAML"),
])
def test_settings_megatrons_test_errors_on_are_one_line_errors(tmp_path, text, message):
    with pytest.raises(FormatError, match=message):
        case_of(tmp_path, text)


@pytest.mark.parametrize("text, pipelines, train_iters", [
    ("TEST_TYPE: regular\nMODEL_ARGS:\n  --train-iters: 50\n", (REGULAR,), 50),
    ("TEST_TYPE: ckpt-resume\nMODEL_ARGS:\n  --train-iters: 100\n", (REGULAR, RESUME), 100),
    ("TEST_TYPE: frozen-resume\n", (REGULAR, RESUME), 100),  # yq's // "100"
    ('TEST_TYPE: "release"\nMODEL_ARGS:\n  --train-iters: 20000\n  --exit-interval: 2000\n', (REGULAR,), 2000),
    ("TEST_TYPE: checkpoint-consistency\n", (), 100),
    ("TEST_TYPE: frozen-start\nMODE: inference\nMETRICS: [generated_tokens]\n", (INFERENCE,), 100),
    ("TEST_TYPE: regular\nMODE: inference\nMETRICS: [generated_tokens]\n", (), 100),
    ("TEST_TYPE: regular\nENV_VARS:\n  SKIP_PYTEST: 1\n", (), 100),
    ("TEST_TYPE: regular\nENV_VARS:\n  ENABLE_LIGHTWEIGHT_MODE: true\n", (), 100),
])
def test_the_test_type_decides_which_of_megatrons_tests_run(tmp_path, text, pipelines, train_iters):
    case = case_of(tmp_path, text)
    assert (case.pipelines, case.train_iters) == (pipelines, train_iters)
    assert case.pipeline_origin.startswith("test type: TEST_TYPE")


def test_rl_is_refused_by_name(tmp_path):
    case = case_of(tmp_path, "TEST_TYPE: frozen-start\nMODE: rl\n")
    with pytest.raises(GoldenError, match=r"test_grpo_training_loop\.py"):
        build_policies(preset_name="megatron", megatron_case=case)


def test_the_case_overlays_the_megatron_preset_only(tmp_path):
    case = case_of(tmp_path, "ENV_VARS:\n  NVTE_ALLOW_NONDETERMINISTIC_ALGO: 1\nTEST_TYPE: ckpt-resume\n"
                             "MODEL_ARGS:\n  --train-iters: 80\nMETRICS: [iteration-time, lm loss]\n")
    ps = build_policies(preset_name="megatron", megatron_case=case)
    assert ps.required == ("iteration-time", "lm loss")
    assert not ps.resolve("iteration-time").policy.report_only and ps.resolve("num-zeros").policy.report_only
    assert ps.regime.exact is False and (ps.resume, ps.resume_after, ps.golden_phases) == ("as_golden", 40, (1,))
    assert ps.choices[0].startswith("rules from ") and len(ps.choices) == 4
    default = build_policies(preset_name="default", megatron_case=case)
    assert default.required == () and default.regime is None and default.choices == ()


# ---------------------------------------------------------------- judged through the workflow

def judge(store_root, candidate, case, **kw):
    return judge_run(GoldenStore(store_root), inputs.load_run(str(candidate)), case=case,
                     policy="megatron", stage=False, **kw)


def write_candidate(folder, doc, second=None):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "golden_values_dev_dgx_h100.json"
    path.write_text(json.dumps(doc))
    if second is not None:
        (folder / "golden_values_dev_dgx_h100_2nd.json").write_text(json.dumps(second))
    return path


MEMORY_SPEED = ("TEST_TYPE: regular\nENV_VARS:\n  NVTE_ALLOW_NONDETERMINISTIC_ALGO: 0\nMODEL_ARGS:\n"
                "  --train-iters: 50\nMETRICS:\n  - iteration-time\n  - lm loss\n  - num-zeros\n"
                "  - mem-allocated-bytes\n  - mem-max-allocated-bytes\n")
ALL = ("lm loss", "num-zeros", "iteration-time", "mem-allocated-bytes", "mem-max-allocated-bytes")


def scaled(doc, factors):
    out = copy.deepcopy(doc)
    for metric, factor in factors.items():
        out[metric]["values"] = {k: v * factor for k, v in out[metric]["values"].items()}
    return out


def test_listed_time_and_memory_are_judged_and_the_result_says_why(tmp_path):
    # The case: memory +10 %, iteration time +30 %: Megatron fails three metrics.
    golden = training_doc(range(1, 51), ALL)
    write_megatron_case(tmp_path / "store", "memory_speed", MEMORY_SPEED, {"golden_values_dev_dgx_h100.json": golden})
    worse = scaled(golden, {"iteration-time": 1.3, "mem-allocated-bytes": 1.1, "mem-max-allocated-bytes": 1.1})
    result = judge(tmp_path / "store", write_candidate(tmp_path / "ci" / "memory_speed", worse), "memory_speed").result
    failed = {v.metric for v in result.metric_verdicts() if not v.passed}
    assert result.verdict == Verdict.FAIL and failed == {"iteration-time", "mem-allocated-bytes",
                                                         "mem-max-allocated-bytes"}
    assert result.exact_applied and "NVTE_ALLOW_NONDETERMINISTIC_ALGO=0" in result.fingerprint.reason
    assert any("METRICS ['iteration-time'" in c for c in result.choices)
    assert any("TEST_TYPE regular" in c for c in result.choices)
    same = judge(tmp_path / "store", write_candidate(tmp_path / "ci2" / "memory_speed", golden), "memory_speed")
    assert same.passed


def test_a_listed_metric_the_golden_lacks_or_without_a_threshold_fails(tmp_path):
    golden = training_doc(range(1, 51))
    write_megatron_case(tmp_path / "store", "lacks", MEMORY_SPEED, {"golden_values_dev_dgx_h100.json": golden})
    write_megatron_case(tmp_path / "store", "unknown", "TEST_TYPE: regular\nMETRICS: [lm loss, mtp_3 loss]\n",
                        {"golden_values_dev_dgx_h100.json": golden})
    result = judge(tmp_path / "store", write_candidate(tmp_path / "a" / "lacks", golden), "lacks").result
    lacking = {v.metric: v.explanation for v in result.metric_verdicts() if not v.passed}
    assert set(lacking) == {"iteration-time", "mem-allocated-bytes", "mem-max-allocated-bytes"}
    assert "the golden and the run have no such metric" in lacking["iteration-time"]
    result = judge(tmp_path / "store", write_candidate(tmp_path / "b" / "unknown", golden), "unknown").result
    [failed] = [v for v in result.metric_verdicts() if not v.passed]
    assert failed.metric == "mtp_3 loss" and "KeyError" in failed.explanation


def test_resume_is_judged_on_run_one_against_run_two_after_the_cut(tmp_path):
    golden = training_doc(range(1, 101))
    write_megatron_case(tmp_path / "store", "resume", "TEST_TYPE: ckpt-resume\nMODEL_ARGS:\n  --train-iters: 100\n",
                        {"golden_values_dev_dgx_h100.json": golden, "golden_values_dev_dgx_h100_2nd.json": {}})

    def second(factor_before, factor_after):
        doc = copy.deepcopy(golden)
        for metric in doc.values():
            metric["values"] = {k: v * (factor_before if int(k) <= 50 else factor_after)
                                for k, v in metric["values"].items() if int(k) > 30}
        return doc

    ok = judge(tmp_path / "store", write_candidate(tmp_path / "1" / "resume", golden, second(1.5, 1.0)), "resume")
    assert ok.passed and ok.result.resume.verdict == Verdict.PASS and "after step 50" in ok.result.resume.explanation
    # the store's _2nd file ({} here) is never read: Megatron's CI does not read it either
    assert any("_2nd.json not read" in w for w in ok.result.warnings)
    bad = judge(tmp_path / "store", write_candidate(tmp_path / "2" / "resume", golden, second(1.0, 1.01)), "resume")
    assert not bad.passed and bad.result.resume.verdict == Verdict.FAIL
    missing = judge(tmp_path / "store", write_candidate(tmp_path / "3" / "resume", golden), "resume")
    assert not missing.passed and "no resumed phase (no _2nd file)" in missing.result.resume.explanation


def test_a_test_type_megatron_runs_no_check_for_passes_saying_so(tmp_path):
    golden = training_doc(range(1, 51))
    write_megatron_case(tmp_path / "store", "consistency", "TEST_TYPE: checkpoint-consistency\n",
                        {"golden_values_dev_dgx_h100.json": golden})
    result = judge(tmp_path / "store", write_candidate(tmp_path / "c" / "consistency", scaled(golden, {"lm loss": 2})),
                   "consistency").result
    assert result.passed and result.phases == () and "no golden values" in result.choices[1]


# ---------------------------------------------------------------- inference goldens

INFERENCE_CONFIG = "TEST_TYPE: frozen-start\nMODE: inference\nMETRICS: [generated_tokens, logprobs, throughput]\n"


@pytest.mark.parametrize("edit, passed, failing", [
    (lambda d: d, True, set()),
    (lambda d: d["0"]["logprobs"].__setitem__(0, d["0"]["logprobs"][0] + 0.0009), True, set()),
    (lambda d: d["0"]["logprobs"].__setitem__(0, d["0"]["logprobs"][0] + 0.002), False, {"logprobs"}),
    (lambda d: d["32"]["generated_tokens"].__setitem__(3, 7), False, {"generated_tokens"}),
    (lambda d: d.__setitem__("throughput", [v * 0.85 for v in d["throughput"]]), False, {"throughput"}),
    (lambda d: d.__setitem__("throughput", [v * 1.1 for v in d["throughput"]]), True, set()),
    (lambda d: d.pop("64"), False, {"request ids"}),
    (lambda d: d["0"].__setitem__("generated_text", "changed"), True, set()),  # not in METRICS
])
def test_inference_goldens_are_judged_request_by_request(tmp_path, edit, passed, failing):
    golden = inference_doc()
    write_megatron_case(tmp_path / "store", "infer", INFERENCE_CONFIG, {"golden_values_dev_dgx_h100.json": golden})
    run = copy.deepcopy(golden)
    edit(run)
    judgement = judge(tmp_path / "store", write_candidate(tmp_path / "ci" / "infer", run), "infer")
    assert judgement.passed is passed
    assert {v.metric for v in judgement.result.metric_verdicts() if not v.passed} == failing
    assert "inference pipeline" in judgement.result.choices[1]


def test_diff_compares_two_inference_files_and_refuses_a_training_one(tmp_path):
    golden = inference_doc()
    case = write_megatron_case(tmp_path, "infer", INFERENCE_CONFIG, {"golden_values_dev_dgx_h100.json": golden})
    other = copy.deepcopy(golden)
    other["0"]["generated_tokens"][0] += 1
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "golden_values_dev_dgx_h100.json").write_text(json.dumps(other))
    runner = CliRunner()
    out = runner.invoke(app, ["diff", str(case / "golden_values_dev_dgx_h100.json"),
                              str(tmp_path / "run" / "golden_values_dev_dgx_h100.json"), "--policy", "megatron",
                              "--format", "json"])
    assert out.exit_code == 1, out.output
    doc = json.loads(out.stdout)
    assert [m["metric"] for m in doc["phases"][0]["metrics"] if not m["passed"]] == ["generated_tokens"]
    (tmp_path / "train.json").write_text(json.dumps(training_doc(range(1, 5))))
    out = runner.invoke(app, ["diff", str(case / "golden_values_dev_dgx_h100.json"), str(tmp_path / "train.json")])
    assert out.exit_code == 2 and "training golden" in out.stderr


def test_a_golden_megatrons_reader_refuses_cannot_pass_in_a_megatron_case(tmp_path):
    golden = training_doc(range(1, 51))
    odd = copy.deepcopy(golden)
    del odd["lm loss"]["start_step"]
    scalar = {**copy.deepcopy(golden), "iteration_timing_avg": 0.5}
    for name, doc in (("nostart", odd), ("scalar", scalar)):
        write_megatron_case(tmp_path / "store", name, "TEST_TYPE: regular\n", {"golden_values_dev_dgx_h100.json": doc})
        with pytest.raises(FormatError, match="Megatron's reader refuses the file"):
            judge(tmp_path / "store", write_candidate(tmp_path / name / name, golden), name)
        # the default preset reads the same golden and judges it
        assert judge_run(GoldenStore(tmp_path / "store"), inputs.load_run(str(tmp_path / name / name /
                         "golden_values_dev_dgx_h100.json")), case=name, stage=False).result is not None


def test_an_inference_golden_written_as_json_inside_a_string_is_read_as_megatron_reads_it(tmp_path):
    golden = inference_doc()
    write_megatron_case(tmp_path / "store", "infer", INFERENCE_CONFIG,
                        {"golden_values_dev_dgx_h100.json": json.dumps(json.dumps(golden))})
    run = copy.deepcopy(golden)
    assert judge(tmp_path / "store", write_candidate(tmp_path / "ok" / "infer", run), "infer").passed
    run["0"]["generated_tokens"] = run["0"]["generated_tokens"][:-1]
    failed = judge(tmp_path / "store", write_candidate(tmp_path / "bad" / "infer", run), "infer")
    [verdict] = [v for v in failed.result.metric_verdicts() if not v.passed]
    assert verdict.metric == "generated_tokens" and "length 11 where the golden has 12" in verdict.explanation


def test_only_a_policy_that_follows_model_config_reads_it(tmp_path):
    golden = training_doc(range(1, 21))
    write_megatron_case(tmp_path / "store", "broken_config", "TEST_TYPE: regular\nMETRICS: null\n",
                        {"golden_values_dev_dgx_h100.json": golden})
    candidate = write_candidate(tmp_path / "ci" / "broken_config", golden)
    with pytest.raises(FormatError, match="METRICS is null"):
        judge(tmp_path / "store", candidate, "broken_config")
    default = judge_run(GoldenStore(tmp_path / "store"), inputs.load_run(str(candidate)),
                        case="broken_config", stage=False)
    assert default.passed and default.result.choices == ()
