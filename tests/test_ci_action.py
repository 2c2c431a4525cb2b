"""The CI wiring: the composite GitHub Action (.github/actions/golden/action.yml) with its steps run
here in a fake GITHUB_* environment (``fakes.actions.ActionRun``: run scripts in bash, ``uses:`` steps
checked for their inputs), and the GitLab job (ci/golden.gitlab-ci.yml) run the same way; both
against the loopback GitHub/GitLab server (``fakes.ci_server.FakeCI``)."""
from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fakes.actions import ActionRun
from tests.fakes.ci_server import FakeCI, gitlab_results_zip

REPO_ROOT = Path(__file__).resolve().parents[1]
ACTION = REPO_ROOT / ".github" / "actions" / "golden" / "action.yml"
GITLAB_JOB = REPO_ROOT / "ci" / "golden.gitlab-ci.yml"
GITHUB_REPO = "NVIDIA/Megatron-LM"

@pytest.fixture
def tools_path(tmp_path: Path) -> str:
    """PATH for the steps: the installed ``golden`` first."""
    real = Path(sys.executable).parent / "golden"
    assert real.is_file(), "the golden command is installed with the package"
    return os.pathsep.join([str(real.parent), os.environ.get("PATH", "/usr/bin:/bin")])


def megatron_golden(loss: list[float]) -> str:
    """A golden as Megatron's CI writes it (indent 4, no trailing newline)."""
    steps = range(1, len(loss) + 1)
    return json.dumps({"lm loss": {"start_step": 1, "end_step": len(loss), "step_interval": 1,
                                   "values": {str(s): v for s, v in zip(steps, loss, strict=True)}},
                       "num-zeros": {"start_step": 1, "end_step": len(loss), "step_interval": 1,
                                     "values": {str(s): 5000.0 + s for s in steps}}}, indent=4)


LOSS = [round(10.5 - 0.1 * s, 5) for s in range(1, 21)]
DRIFTED = [round(v * 1.1, 5) for v in LOSS]  # +10 %: outside the 5 % rule
CASES = (("gpt", "gpt3_mcore_te_tp2_pp2"), ("moe", "gpt3_moe_tp2_ep4"))
FILE = "golden_values_dev_dgx_h100.json"


def megatron_store(root: Path) -> Path:
    store = root / "store"
    for model, case in CASES:
        (store / model / case).mkdir(parents=True)
        (store / model / case / FILE).write_text(megatron_golden(LOSS))
    return store


def candidates(root: Path, drifted: bool) -> Path:
    """Candidates in Megatron's layout: the gpt case drifted (when asked), the moe case as the golden."""
    out = root / "candidates"
    for model, case in CASES:
        (out / model / case).mkdir(parents=True)
        values = DRIFTED if drifted and model == "gpt" else LOSS
        (out / model / case / FILE).write_text(megatron_golden(values))
    return out


def runner_env(ci: FakeCI, path: str) -> dict[str, str]:
    return {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), "PYTHONPATH": str(REPO_ROOT),
            "GITHUB_REPOSITORY": GITHUB_REPO, "GITHUB_API_URL": ci.url, "GITHUB_EVENT_NAME": "pull_request",
            "GITHUB_RUN_ID": "16482213", "GITHUB_TOKEN": ci.TOKEN, "LANG": "C.UTF-8"}


def run_action(tmp_path: Path, ci: FakeCI, path: str, **inputs: str) -> ActionRun:
    return ActionRun(ACTION, tmp_path, inputs={"install": "false", **inputs},
                     event={"pull_request": {"number": 42}}, env=runner_env(ci, path)).run()


def ran(run: ActionRun) -> list[str]:
    return [o["name"] for o in run.outcomes if o["ran"]]


def test_a_regression_is_judged_summarised_uploaded_commented_and_fails_the_job(tmp_path, fake_ci, tools_path):
    megatron_store(tmp_path)
    candidates(tmp_path, drifted=True)
    run = run_action(tmp_path, fake_ci, tools_path, candidates="candidates", store="store", comment="true")
    assert ran(run) == ["Judge the candidates", "Step summary", "Upload the reports", "Comment on the pull request",
                        "Verdict"]
    judge = run.step("Judge the candidates")
    assert judge["returncode"] == 0, judge["stderr"]
    assert judge["outputs"] == {"report-dir": "golden-report", "exit-code": "1", "verdict": "fail"}
    assert "Golden check failed: 1 of 2 case(s) failed" in judge["stdout"]  # --format md in the log too

    summary = run.summary.read_text()
    assert summary.startswith("## ❌ Golden check failed: 1 of 2 case(s) failed")
    assert (f"golden approve candidates/gpt/gpt3_mcore_te_tp2_pp2/{FILE} --case gpt/gpt3_mcore_te_tp2_pp2 --env dev "
            "--platform dgx_h100 --store store --reason '<why these values are right>'") in html.unescape(summary)
    report = tmp_path / "golden-report"
    assert {p.name for p in report.iterdir()} >= {"report.md", "report.html", "junit.xml", "report.json",
                                                  "results", "findings.json"}
    assert len(list((report / "results").glob("*.json"))) == 2

    upload = run.step("Upload the reports")
    assert upload["uses"] == "actions/upload-artifact@v4"
    assert upload["with"] == {"name": "golden-report", "path": "golden-report", "if-no-files-found": "warn"}

    [comment] = fake_ci.comments[(GITHUB_REPO, 42)]
    assert comment["body"].startswith("<!-- golden-report -->\n## ❌ Golden check failed: 1 of 2 case(s) failed")
    verdict = run.step("Verdict")
    assert verdict["returncode"] == 1 and run.failed
    assert run.outputs() == {"exit-code": "1", "verdict": "fail", "report-dir": "golden-report"}

    # the next push: the same comment is updated, not a second one posted
    (tmp_path / "candidates" / "gpt" / "gpt3_mcore_te_tp2_pp2" / FILE).write_text(megatron_golden(LOSS))
    again = run_action(tmp_path, fake_ci, tools_path, candidates="candidates", store="store", comment="true")
    assert again.step("Verdict")["returncode"] == 0 and not again.failed
    [comment] = fake_ci.comments[(GITHUB_REPO, 42)]
    assert "Golden check passed: all 2 case(s) passed" in comment["body"]
    assert [r["method"] for r in fake_ci.requests if "/issues/" in r["path"]] == ["GET", "POST", "GET", "PATCH"]


def test_a_comment_that_cannot_be_posted_is_a_warning_and_a_push_gets_none(tmp_path, fake_ci, tools_path):
    megatron_store(tmp_path)
    candidates(tmp_path, drifted=False)
    fake_ci.fail(r"/issues/42/comments", 403, body={"message": "Resource not accessible by integration"})
    run = run_action(tmp_path, fake_ci, tools_path, candidates="candidates", store="store", comment="true")
    comment = run.step("Comment on the pull request")
    assert comment["returncode"] == 0 and "::warning::the pull-request comment was not posted" in comment["stdout"]
    assert run.step("Verdict")["ran"] and not run.failed
    push = ActionRun(ACTION, tmp_path, inputs={"install": "false", "candidates": "candidates", "store": "store",
                                               "comment": "true"}, event={"ref": "refs/heads/main"},
                     env={**runner_env(fake_ci, tools_path), "GITHUB_EVENT_NAME": "push"}).run()
    assert not push.step("Comment on the pull request")["ran"] and push.step("Verdict")["returncode"] == 0


def test_candidates_fetched_from_the_run_only_failing_and_passing(tmp_path, fake_ci, tools_path):
    megatron_store(tmp_path)
    run_id = 16482213
    fake_ci.github_run(GITHUB_REPO, run_id)
    fake_ci.github_test(GITHUB_REPO, run_id, "gpt", "gpt3_mcore_te_tp2_pp2", "failure", {FILE: megatron_golden(LOSS)})
    fake_ci.github_test(GITHUB_REPO, run_id, "moe", "gpt3_moe_tp2_ep4", "success", {FILE: megatron_golden(DRIFTED)})
    run = run_action(tmp_path, fake_ci, tools_path, **{"fetch-run-id": str(run_id), "only-failing": "true",
                                                       "store": "store"})
    assert ran(run) == ["Fetch the candidates", "Judge the candidates", "Step summary", "Upload the reports", "Verdict"]
    fetch = run.step("Fetch the candidates")
    assert fetch["returncode"] == 0, fetch["stderr"]
    assert [p.relative_to(tmp_path).as_posix() for p in (tmp_path / "candidates").rglob("*.json")] == [
        f"candidates/gpt/gpt3_mcore_te_tp2_pp2/{FILE}"]  # the passing moe job was left out
    assert run.step("Judge the candidates")["outputs"]["verdict"] == "pass"
    assert run.summary.read_text().startswith("## ✅ Golden check passed: all 1 case(s) passed")
    assert not run.failed and (GITHUB_REPO, 42) not in fake_ci.comments  # comment: false


def test_nothing_to_judge_is_said_and_passes(tmp_path, fake_ci, tools_path):
    megatron_store(tmp_path)
    fake_ci.github_run(GITHUB_REPO, 7, conclusion="success")
    fake_ci.github_test(GITHUB_REPO, 7, "gpt", "gpt3_mcore_te_tp2_pp2", "success", {FILE: megatron_golden(LOSS)})
    run = run_action(tmp_path, fake_ci, tools_path, **{"fetch-run-id": "7", "only-failing": "true"})
    assert ran(run) == ["Fetch the candidates", "Judge the candidates"]
    assert run.step("Judge the candidates")["outputs"] == {"report-dir": "golden-report", "verdict": "none"}
    assert run.summary.read_text() == "No candidate golden values to judge.\n" and not run.failed


def test_a_regression_can_be_reported_without_failing_but_an_input_error_always_fails(tmp_path, fake_ci, tools_path):
    megatron_store(tmp_path)
    candidates(tmp_path, drifted=True)
    lenient = run_action(tmp_path, fake_ci, tools_path, candidates="candidates", store="store",
                         **{"fail-on-regression": "false"})
    assert lenient.step("Judge the candidates")["outputs"]["verdict"] == "fail" and not lenient.failed
    broken = run_action(tmp_path, fake_ci, tools_path, candidates="candidates", store="store", policy="no-such-preset")
    judge = broken.step("Judge the candidates")
    assert judge["outputs"]["exit-code"] == "2" and judge["outputs"]["verdict"] == "error"
    assert "error: " in judge["stderr"] and judge["stderr"].count("\n") == 1
    assert "golden judge wrote no report (exit 2)" in broken.summary.read_text()
    assert broken.step("Verdict")["returncode"] == 2 and broken.failed


def test_inputs_reach_the_scripts_as_data_never_as_code(tmp_path, fake_ci, tools_path):
    spec = yaml.safe_load(ACTION.read_text())
    scripts = [step["run"] for step in spec["runs"]["steps"] if "run" in step]
    assert scripts and not any("${{" in script for script in scripts)  # expressions only in env: and with:
    megatron_store(tmp_path)
    candidates(tmp_path, drifted=False)
    run = run_action(tmp_path, fake_ci, tools_path, candidates="candidates $(touch pwned) `touch pwned2`",
                     store="store; touch pwned3")
    assert not list(tmp_path.glob("pwned*"))
    assert run.step("Judge the candidates")["outputs"]["verdict"] in ("fail", "error")


def test_the_install_step_pins_the_toolkit_by_its_lock(tmp_path):
    # python and golden stand-ins that only record how they were called: no network, no install
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for tool in ("python", "golden"):
        (stubs / tool).write_text(f'#!/bin/bash\necho "{tool} $*" >> "{tmp_path}/calls"\n')
        (stubs / tool).chmod(0o755)
    run = ActionRun(ACTION, tmp_path, inputs={"install": "true", "python-version": "3.12", "candidates": "x"},
                    event={}, env={"PATH": f"{stubs}:/usr/bin:/bin"}).run()
    assert run.step("Set up Python")["uses"] == "actions/setup-python@v5"
    assert run.step("Set up Python")["with"] == {"python-version": "3.12"}
    assert run.step("Install golden-toolkit (pinned by its lock)")["returncode"] == 0
    install, check = (tmp_path / "calls").read_text().splitlines()[:2]
    root = f"{ACTION.parent}/../../.."
    assert install == f"python -m pip install --disable-pip-version-check -q -c {root}/requirements/lock.txt {root}"
    assert check == "golden --help"
    assert (Path(root) / "requirements" / "lock.txt").is_file() and (Path(root) / "pyproject.toml").is_file()


# ---------------------------------------------------------------- the GitLab job

PROJECT, PIPELINE = "19378", 2790511  # GitLab CI's CI_PROJECT_ID is the numeric id


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed (the job posts its note with curl)")
def test_the_gitlab_job_fetches_judges_reports_and_notes_the_merge_request(tmp_path, fake_ci, tools_path):
    megatron_store(tmp_path)
    fake_ci.gitlab_pipeline(PROJECT, PIPELINE)
    fake_ci.gitlab_bridge(PROJECT, PIPELINE, "functional:run_dev", 2790600)
    for (model, case), loss in zip(CASES, (DRIFTED, LOSS), strict=True):
        fake_ci.gitlab_job(PROJECT, 2790600, case, model, "failed",
                           gitlab_results_zip(case, "dev", {FILE: megatron_golden(loss)}))
    job = yaml.safe_load(GITLAB_JOB.read_text())[".golden"]
    assert job["artifacts"]["reports"]["junit"] == "golden-report/junit.xml"
    variables = {k: str(v) for k, v in job["variables"].items()}
    env = {**variables, "GOLDEN_STORE": "store", "PATH": tools_path, "HOME": os.environ.get("HOME", "/tmp"),
           "PYTHONPATH": str(REPO_ROOT), "LANG": "C.UTF-8", "CI": "true", "CI_PIPELINE_ID": str(PIPELINE),
           "CI_PROJECT_ID": PROJECT, "CI_API_V4_URL": fake_ci.gitlab_url, "GITLAB_TOKEN": fake_ci.TOKEN,
           "CI_MERGE_REQUEST_IID": "7", "GOLDEN_NOTE_TOKEN": fake_ci.TOKEN}
    script = tmp_path / "job.sh"
    script.write_text("\n".join(job["script"]) + "\n")  # the runner runs the lines in one shell, stopping at a failure
    done = subprocess.run(["bash", "-e", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1, done.stderr  # the gpt case drifted: the job fails
    assert (tmp_path / "golden-report" / "junit.xml").is_file()
    assert (tmp_path / "golden-report" / "report.html").is_file()
    [note] = fake_ci.notes[(PROJECT, 7)]
    assert note["body"].startswith("## ❌ Golden check failed: 1 of 2 case(s) failed")
    assert "--store store --reason" in html.unescape(note["body"])
