"""The pytest plugin as a user meets it: a test project whose tests call ``golden_values.check``,
run by pytest (pytester) — passing, failing with the tool's why lines, staging with --golden-regen,
refusing to stage in CI — and a staged candidate that ``golden approve`` takes."""
from __future__ import annotations

import json
import re
from importlib.metadata import entry_points
from pathlib import Path

import pytest

# Imported here, before any in-process pytester run: pytester drops the modules a run imported, and
# PyYAML's C extension cannot be imported twice (a second `yaml` beside the old `_yaml` resolves no
# tag), so a later test of this process would read YAML wrongly.
import yaml  # noqa: F401

from goldens.approve import candidate_run, list_pending
from goldens.store import GoldenStore
from tests.builders import invoke, tree_bytes

pytest_plugins = ["pytester"]

LOSS = {str(step): 10.0 - 0.25 * step + 1e-9 * step for step in range(1, 11)}
ZEROS = {str(step): 1000.0 + step for step in range(1, 11)}


def megatron_metrics(loss_factor: float = 1.0) -> dict:
    """What Megatron's CI extracts from a run's TensorBoard logs (golden_values_<env>_<platform>.json)."""
    grid = {"start_step": 1, "end_step": 10, "step_interval": 1}
    return {"lm loss": {**grid, "values": {k: v * loss_factor for k, v in LOSS.items()}},
            "num-zeros": {**grid, "values": dict(ZEROS)}}


TESTS = '''
import json
import re
from pathlib import Path

METRICS = json.loads(Path(__file__).with_name("metrics.json").read_text())
REGRESSED = json.loads(Path(__file__).with_name("regressed.json").read_text())


def test_same_values_pass(golden_values):
    result = golden_values.check(METRICS, case="tiny", env="dev", platform="cpu")
    assert result.passed


def test_a_regression(golden_values):
    golden_values.check(REGRESSED, case="tiny", env="dev", platform="cpu")
'''


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    """A user's project: a store in cases/ with the golden of case ``tiny`` (dev/cpu), and tests."""
    root = pytester.path
    case = root / "cases" / "tiny"
    case.mkdir(parents=True)
    (case / "golden_values_dev_cpu.json").write_text(json.dumps(megatron_metrics(), indent=2) + "\n")
    (root / "metrics.json").write_text(json.dumps(megatron_metrics()))
    (root / "regressed.json").write_text(json.dumps(megatron_metrics(loss_factor=1.2)))
    pytester.makepyfile(test_model=TESTS)
    return root


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """pytest in the project, the plugin loaded as its entry point would load it (hypothesis's plugin
    left out: in a nested session it rewrites and re-imports hypothesis, seconds per run)."""
    installed = any(ep.value == "goldens.pytest_plugin" for ep in entry_points(group="pytest11"))
    plugin = () if installed else ("-p", "goldens.pytest_plugin")
    return pytester.runpytest(*plugin, "-p", "no:cacheprovider", "-p", "no:hypothesispytest", *args)


def test_a_project_passes_and_fails_with_the_why_lines_writing_nothing(pytester, project):
    before = tree_bytes(project, folders=True)
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    text = result.stdout.str()
    result.stdout.fnmatch_lines(["*golden_values: tiny dev/cpu*", "why:",
                                 "*1 lm loss: 10 of 10 steps out of tolerance*", "*rule: approx*", "*1 num-zeros:*",
                                 "*(pytest --golden-regen stages this run*"])
    assert "FAILED test_model.py::test_a_regression" in text and "Traceback" not in text
    assert "golden approve" not in text  # a dict kept in memory has no file to approve from
    after = tree_bytes(project, folders=True)
    assert {k: v for k, v in after.items() if "__pycache__" not in k} == before


def test_golden_regen_stages_a_candidate_that_golden_approve_takes(pytester, project):
    result = run(pytester, "--golden-regen")
    result.assert_outcomes(passed=1, failed=1)  # a staged run is not a pass: a person approves it
    result.stdout.fnmatch_lines(["*staged tiny dev/cpu (golden_values_dev_cpu-*) for review*"])
    store = GoldenStore(project / "cases")
    [candidate] = list_pending(store)
    assert (candidate.case, candidate.env, candidate.platform, candidate.verdict) == ("tiny", "dev", "cpu", "fail")
    saved = project / "runs" / "pytest" / "tiny" / "golden_values_dev_cpu.json"
    result.stdout.fnmatch_lines([f"*golden approve {saved} --case tiny --env dev --platform cpu*"])
    assert Path(candidate.artifact) == saved.resolve()
    assert json.loads(saved.read_text()) == megatron_metrics(loss_factor=1.2)
    assert candidate_run(candidate).run_id == candidate.run_id  # review reads the run it was staged from

    approved = invoke("approve", "--pending", "--store", str(project / "cases"), "--reason", "loss moved on purpose")
    assert approved.exit_code == 0, approved.output
    assert list_pending(store) == []
    run(pytester, "-k", "regression").assert_outcomes(passed=1)  # the approved values are the golden now


def test_golden_regen_is_refused_in_ci_before_anything_runs(pytester, project, monkeypatch):
    monkeypatch.setenv("CI", "true")
    before = tree_bytes(project, folders=True)
    result = run(pytester, "--golden-regen")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--golden-regen stages candidates in the golden store, and CI never writes goldens*"])
    assert tree_bytes(project, folders=True) == before
    run(pytester).assert_outcomes(passed=1, failed=1)  # without the flag CI judges as usual


def test_the_store_from_the_option_the_ini_key_or_the_rootdir(pytester, project):
    (project / "cases").rename(project / "goldens_here")
    missing = run(pytester)
    missing.assert_outcomes(failed=2)
    missing.stdout.fnmatch_lines(["*golden_values: no golden store at *cases*"])
    pytester.makeini("[pytest]\ngolden_store = goldens_here\n")
    run(pytester).assert_outcomes(passed=1, failed=1)
    (project / "elsewhere").mkdir()
    run(pytester, "--golden-store", "elsewhere").assert_outcomes(failed=2)  # the option wins over the ini key


def test_a_run_file_or_an_artifact_is_checked_and_a_bad_dict_is_one_line(pytester, project):
    pytester.makepyfile(test_kinds='''
from pathlib import Path

import goldens


def test_a_golden_values_file(golden_values, tmp_path):
    path = Path("cases/tiny/golden_values_dev_cpu.json")
    golden_values.check(path, case="tiny")


def test_a_loaded_run_with_its_policy(golden_values):
    run = goldens.load_run("cases/tiny/golden_values_dev_cpu.json")
    assert golden_values.check(run.artifact, case="tiny", policy="megatron").policy == "megatron"


def test_a_bad_dict(golden_values):
    golden_values.check({"lm loss": {"values": {"1": "ten"}}}, case="tiny", env="dev", platform="cpu")
''')
    result = run(pytester, "test_kinds.py")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*golden_values: <metrics>*lm loss*"])
    assert "Traceback" not in result.stdout.str()


def test_the_megatron_functional_test_in_docs_judges_a_ci_job_output(pytester, monkeypatch):
    """docs/api.md's Megatron test, as written, on a Megatron-shaped tree: a regular case (METRICS
    lm loss, approximate), the job's extracted values in $OUTPUT_PATH; then a regression there."""
    from tests.builders import training_doc, write_megatron_case

    doc = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", doc, flags=re.S | re.M)
    [block] = [b for b in blocks if "def test_functional_case" in b]
    pytester.makepyfile(test_functional=block)
    golden = training_doc(range(1, 41))
    name = "golden_values_dev_dgx_h100.json"
    config = ("ENV_VARS:\n  NVTE_ALLOW_NONDETERMINISTIC_ALGO: 1\nTEST_TYPE: regular\nMETRICS:\n  - lm loss\n"
              "MODEL_ARGS:\n  --train-iters: 40\n")
    case = write_megatron_case(pytester.path / "test_cases" / "gpt", "gpt3_tiny", config, {name: golden})
    output = pytester.path / "output"
    output.mkdir()
    (output / name).write_text(json.dumps(golden))
    monkeypatch.setenv("GOLDEN_VALUES_PATH", str(case / name))
    monkeypatch.setenv("OUTPUT_PATH", str(output))
    run(pytester, "--golden-store", "test_cases").assert_outcomes(passed=1)
    golden["lm loss"]["values"] = {step: value * 1.1 for step, value in golden["lm loss"]["values"].items()}
    (output / name).write_text(json.dumps(golden))
    result = run(pytester, "--golden-store", "test_cases")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*golden_values: gpt/gpt3_tiny dev/dgx_h100*", "why:", "*1 lm loss: * steps*",
                                 "*FAIL * (policy megatron)*"])
