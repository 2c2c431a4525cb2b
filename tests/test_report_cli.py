"""``golden report``: where reports go, exit codes, formats, bad input, the step summary, --changes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from goldens.cli import app as golden_app
from goldens.files.formats.artifact import ARTIFACT_SCHEMA
from tests.builders import BASE, HEAD, git_store, make_store, parse_html, result

ALL_FILES = {"report.md", "report.html", "junit.xml", "report.json"}


@pytest.fixture
def app() -> typer.Typer:
    return golden_app


def invoke(app, *args: str, env: dict | None = None):
    return CliRunner().invoke(app, ["report", *args], env=env)


def make_run(root: Path, run_id: str, *, fail: bool) -> Path:
    run = root / "runs" / run_id
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps(result(f"case_{run_id}", fail=fail).to_json()))
    (run / "artifact.json").write_text(json.dumps({
        "schema": ARTIFACT_SCHEMA, "case": f"case_{run_id}", "run_id": run_id, "status": "complete",
        "provenance": {"host": "ci-runner-7", "versions": {"torch": "2.13.0"}}, "phases": {}}))
    return run


def test_a_run_gets_its_report_beside_it_and_a_failure_exits_1(app, tmp_path):
    run = make_run(tmp_path, "r1", fail=True)
    outcome = invoke(app, str(run), env={"GITHUB_STEP_SUMMARY": ""})
    assert outcome.exit_code == 1, outcome.output
    assert {p.name for p in (run / "report").iterdir()} == ALL_FILES
    html = (run / "report" / "report.html").read_text()
    assert "ci-runner-7" in html and "versions.torch" in html  # the candidate's provenance from the artifact
    assert "Golden check failed: 1 of 1" in (run / "report" / "report.md").read_text()


def test_golden_side_provenance_comes_from_the_store_ledger(app, tmp_path):
    from goldens.core.model import GoldenKey
    from goldens.files.formats.golden import parse_golden

    run = make_run(tmp_path, "g", fail=False)
    store = make_store(tmp_path / "cases", ("case_g",), case_yaml="{}\n")
    golden = parse_golden({"lm loss": {"start_step": 1, "end_step": 1, "step_interval": 1, "values": {"1": 1.0}}})
    store.write("case_g", {GoldenKey("case_g", "dev", "cpu"): golden}, approver="alice",
                reason="refresh after the torch bump", source_run_id="run-42", provenance={"host": "dgx-1"})
    assert invoke(app, str(run), "--store", str(tmp_path / "cases"), "--format", "html",
                  env={"GITHUB_STEP_SUMMARY": ""}).exit_code == 0
    text = " ".join(" ".join(parse_html((run / "report" / "report.html").read_text()).text).split())
    assert "approver alice —" in text and "reason refresh after the torch bump —" in text
    assert "source run run-42 —" in text and "version v1 —" in text
    assert "host dgx-1 ci-runner-7" in text  # both sides of one provenance key side by side


def test_passing_run_exits_0(app, tmp_path):
    run = make_run(tmp_path, "ok", fail=False)
    assert invoke(app, str(run), env={"GITHUB_STEP_SUMMARY": ""}).exit_code == 0


def test_several_inputs_need_out_and_then_share_one_report(app, tmp_path):
    runs = [make_run(tmp_path, name, fail=False) for name in ("a", "b")]
    refused = invoke(app, *map(str, runs))
    assert refused.exit_code == 2
    assert "give --out DIR" in refused.output
    assert not any((r / "report").exists() for r in runs)
    out = tmp_path / "combined"
    assert invoke(app, *map(str, runs), "--out", str(out), "--format", "junit,md",
                  env={"GITHUB_STEP_SUMMARY": ""}).exit_code == 0
    assert {p.name for p in out.iterdir()} == {"junit.xml", "report.md"}
    assert "all 2 case(s) passed" in (out / "report.md").read_text()


def test_result_file_input_and_step_summary_is_appended(app, tmp_path):
    path = tmp_path / "result.json"
    path.write_text(json.dumps(result(fail=False).to_json()))
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    for _ in range(2):
        assert invoke(app, str(path), "--format", "md", env={"GITHUB_STEP_SUMMARY": str(summary)}).exit_code == 0
    text = summary.read_text()
    assert text.startswith("earlier step\n")
    assert text.count("## ✅ Golden check passed") == 2
    assert (tmp_path / "report" / "report.md").exists()


@pytest.mark.parametrize("content, message", [
    ("{", "truncated JSON"),
    ('{"schema": "golden.result/1"}', "missing field"),
    ("[1, 2]", "not a comparison result"),
])
def test_bad_result_file_is_one_line_exit_2_and_writes_nothing(app, tmp_path, content, message):
    path = tmp_path / "result.json"
    path.write_text(content)
    outcome = invoke(app, str(path))
    assert outcome.exit_code == 2
    assert message in outcome.output and len(outcome.output.strip().splitlines()) == 1
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("key", ["case", "env", "platform"])
def test_a_name_that_is_not_text_is_one_line_exit_2(app, tmp_path, key):
    doc = result().to_json()
    doc[key] = ["dev", "lts"]  # the renderers join these names; a list crashed them
    path = tmp_path / "result.json"
    path.write_text(json.dumps(doc))
    outcome = invoke(app, str(path))
    assert outcome.exit_code == 2, outcome.output
    assert outcome.output == f"error: {path}: key {key!r}: expected a string, got list\n"
    assert not (tmp_path / "report").exists()


def test_usage_errors(app, tmp_path):
    assert invoke(app).exit_code == 2
    assert invoke(app, str(tmp_path / "missing")).exit_code == 2
    run = make_run(tmp_path, "r", fail=False)
    assert invoke(app, str(run), "--format", "pdf").exit_code == 2
    assert invoke(app, str(run), "--changes", "a..b").exit_code == 2
    assert invoke(app, str(tmp_path), "--changes", "a..b").exit_code == 2
    assert not (run / "report").exists()


def test_changes_to_files_and_to_stdout(app, tmp_path):
    store = git_store(tmp_path, BASE, HEAD)
    out = tmp_path / "changes"
    outcome = invoke(app, "--changes", "HEAD~1..HEAD", "--store", str(store), "--out", str(out),
                     env={"GITHUB_STEP_SUMMARY": ""})
    assert outcome.exit_code == 0, outcome.output
    assert {p.name for p in out.iterdir()} == {"changes.md", "changes.html", "changes.json"}
    doc = json.loads((out / "changes.json").read_text())
    rows = {(r["file"], r["metric"]): r["mean_rel_diff"] for r in doc["rows"]}
    assert rows[("caseA/golden_values_dev_cpu.json", "lm loss")] == pytest.approx(-0.05, rel=1e-12)
    printed = invoke(app, "--changes", "HEAD~1..HEAD", "--store", str(store), env={"GITHUB_STEP_SUMMARY": ""})
    assert printed.exit_code == 0
    assert "| lm loss | 2 | 2.500e-02 | 5.000e-02 |" in printed.stdout
    assert invoke(app, "--changes", "HEAD~1..HEAD", "--store", str(store), "--format", "junit").exit_code == 2
    assert invoke(app, "--changes", "HEAD~5..HEAD", "--store", str(store)).exit_code == 2


def test_the_installed_command_runs_and_help_stays_light(tmp_path):
    run = make_run(tmp_path, "sub", fail=True)
    done = subprocess.run([sys.executable, "-m", "goldens", "report", str(run), "--format", "md"],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == f"wrote {run / 'report' / 'report.md'}"
    probe = ("import sys; from typer.testing import CliRunner; from goldens.cli import app; "
             "CliRunner().invoke(app, ['report', '--help']); "
             "print(sorted(m for m in ('pandas', 'numpy', 'matplotlib', 'jinja2', 'torch') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
