"""``golden fetch``: candidate golden values from a GitHub workflow run or a GitLab pipeline, against
GitHub's and GitLab's REST shapes served on the loopback (``fakes.ci_server.FakeCI``); no real network."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from typer.testing import CliRunner

from goldens.cli import app
from goldens.fetch import FetchError, fetch
from goldens.fetch.github import artifact_test, job_test_key, model_and_test, workflow_jobs
from goldens.fetch.gitlab import golden_members
from goldens.fetch.http import check_base_url, next_link
from goldens.fetch.land import hostile_member
from tests.builders import tree_bytes
from tests.fakes.ci_server import FakeCI, gitlab_results_zip, zip_bytes

REPO = "NVIDIA/Megatron-LM"
RUN = 16482213
# Megatron writes goldens without a trailing newline; the bytes must arrive unchanged.
GOLDEN_A = b'{\n    "lm loss": {\n        "start_step": 1,\n        "end_step": 2,\n        "step_interval": 1,\n' \
           b'        "values": {\n            "1": 10.84012,\n            "2": 10.8467\n        }\n    }\n}'
GOLDEN_A2 = b'{"lm loss": {"start_step": 51, "end_step": 52, "step_interval": 1, "values": {"51": 9.1, "52": 9.0}}}'
GOLDEN_B = b'{"lm loss": {"start_step": 1, "end_step": 1, "step_interval": 1, "values": {"1": 3.25}}}'
UNSET = ("GITHUB_TOKEN", "GH_TOKEN", "GITHUB_REPOSITORY", "GITHUB_API_URL", "GITLAB_TOKEN", "RO_API_TOKEN",
         "CI_JOB_TOKEN", "CI_PROJECT_ID", "CI_API_V4_URL", "GITLAB_ENDPOINT")


def github_env(ci: FakeCI, **extra: str) -> dict:
    return {**dict.fromkeys(UNSET), "GITHUB_TOKEN": ci.TOKEN, "GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": ci.url,
            **extra}


def golden(*args: str, env: dict):
    return CliRunner().invoke(app, ["fetch", *args], env=env)


def one_line_error(outcome, text: str) -> None:
    assert outcome.exit_code == 2, outcome.output
    assert outcome.stderr.count("\n") == 1 and outcome.stderr.startswith("error: "), outcome.stderr
    assert text in outcome.stderr, outcome.stderr


def megatron_run(ci: FakeCI) -> None:
    """A run of Megatron's integration tests: two failing tests and a passing one, a job and artifact
    of another workflow, and 150 artifacts of no test (two pages of 100)."""
    ci.github_run(REPO, RUN)
    ci.github_test(REPO, RUN, "gpt", "gpt3_mcore_te_tp1_pp2_resume", "failure",
                   {"golden_values_dev_dgx_h100.json": GOLDEN_A, "golden_values_dev_dgx_h100_2nd.json": GOLDEN_A2})
    ci.github_test(REPO, RUN, "moe", "gpt3_moe_tp2_ep4", "success", {"golden_values_dev_dgx_h100.json": GOLDEN_B})
    ci.github_test(REPO, RUN, "bert", "bert_mcore_tp2_pp2", "cancelled", {"golden_values_lts_dgx_a100.json": GOLDEN_B,
                                                                          "nested/golden_values_x.json": GOLDEN_B})
    ci.github_job(REPO, RUN, "lint / pre-commit", "success", workflow_name="CICD NeMo / lint")
    for i in range(150):
        ci.github_artifact(REPO, RUN, f"coverage-{i}", zip_bytes({"coverage.xml": "<coverage/>"}))


# ---------------------------------------------------------------- GitHub

def test_github_run_lands_in_megatrons_layout_bytes_unchanged(fake_ci, tmp_path):
    megatron_run(fake_ci)
    out = tmp_path / "candidates"
    done = golden("github", str(RUN), "--out", str(out), env=github_env(fake_ci))
    assert done.exit_code == 0, done.output
    assert tree_bytes(out) == {
        "bert/bert_mcore_tp2_pp2/golden_values_lts_dgx_a100.json": GOLDEN_B,  # root level only, as Megatron's glob
        "gpt/gpt3_mcore_te_tp1_pp2_resume/golden_values_dev_dgx_h100.json": GOLDEN_A,
        "gpt/gpt3_mcore_te_tp1_pp2_resume/golden_values_dev_dgx_h100_2nd.json": GOLDEN_A2,
        "moe/gpt3_moe_tp2_ep4/golden_values_dev_dgx_h100.json": GOLDEN_B}
    assert done.stdout == f"fetched 4 golden file(s) of 3 test(s) into {out}\n"
    assert f"run {RUN} of {REPO}: completed, failure; 4 job(s), 153 artifact(s)" in done.stderr
    assert "150 artifact(s) belong to no test job" in done.stderr
    # both lists were read page by page (100 per page), and every API request carried the token
    pages = [(r["path"].rsplit("/", 1)[1], r["query"].get("page")) for r in fake_ci.requests if "page" in r["query"]]
    assert pages == [("jobs", "1"), ("artifacts", "1"), ("artifacts", "2")]
    assert {r["headers"]["authorization"] for r in fake_ci.requests} == {f"Bearer {FakeCI.TOKEN}"}
    assert {r["headers"]["x-github-api-version"] for r in fake_ci.requests} == {"2022-11-28"}
    # the archives came from the blob host through the API's redirect, and the token never went there
    assert len(fake_ci.blob_requests) == 3 and all("authorization" not in h for h in fake_ci.blob_requests)
    assert not [p for p in tmp_path.iterdir() if p.name != "candidates"]  # no staging left behind


def test_only_failing_leaves_out_jobs_that_succeeded(fake_ci, tmp_path):
    megatron_run(fake_ci)
    out = tmp_path / "candidates"
    done = golden("github", str(RUN), "--out", str(out), "--only-failing", env=github_env(fake_ci))
    assert done.exit_code == 0, done.output
    assert sorted(p.parent.relative_to(out).as_posix() for p in out.rglob("*.json")) == [
        "bert/bert_mcore_tp2_pp2", "gpt/gpt3_mcore_te_tp1_pp2_resume", "gpt/gpt3_mcore_te_tp1_pp2_resume"]
    assert "1 artifact(s) of jobs that succeeded left out (--only-failing)" in done.stderr


def test_paging_without_link_headers_goes_on_while_pages_are_full(fake_ci, tmp_path):
    megatron_run(fake_ci)
    fake_ci.link_headers = False
    fetched = fetch("github", RUN, tmp_path / "c", env=github_env(fake_ci))
    assert len(fetched.files) == 4


def test_the_newest_upload_of_a_job_wins_and_ambiguity_or_expiry_is_a_note(fake_ci, tmp_path):
    fake_ci.github_run(REPO, RUN)
    _job, _ = fake_ci.github_test(REPO, RUN, "gpt", "gpt3_retry", "failure", {"golden_values_dev.json": "old"})
    fake_ci.github_artifact(REPO, RUN, f"logs-gpt3_retry-{RUN}-8f2c1e4a-retry",
                            zip_bytes({"golden_values_dev.json": "new"}), created_at="2025-06-01T13:00:00Z")
    fake_ci.github_test(REPO, RUN, "gpt", "same_name", "failure", {"golden_values_dev.json": "gpt"})
    fake_ci.github_test(REPO, RUN, "moe", "same_name", "failure", {"golden_values_dev.json": "moe"})
    fake_ci.github_test(REPO, RUN, "t5", "t5_old", "failure", {"golden_values_dev.json": "t5"})
    fake_ci.github_runs[(REPO, RUN)]["artifacts"][-1]["expired"] = True
    fetched = fetch("github", RUN, tmp_path / "c", env=github_env(fake_ci))
    assert tree_bytes(tmp_path / "c") == {"gpt/gpt3_retry/golden_values_dev.json": b"new"}
    notes = "\n".join(fetched.notes)
    assert f"artifact logs-gpt3_retry-{RUN}-8f2c1e4a: skipped, logs-gpt3_retry-{RUN}-8f2c1e4a-retry is a newer" in notes
    assert "skipped, its test is a job in 2 places (gpt, moe) and the artifact name cannot tell which" in notes
    assert f"artifact logs-t5_old-{RUN}-8f2c1e4a: skipped, it expired" in notes


def test_an_existing_candidates_folder_keeps_its_other_files(fake_ci, tmp_path):
    megatron_run(fake_ci)
    out = tmp_path / "candidates"
    (out / "gpt" / "gpt3_mcore_te_tp1_pp2_resume").mkdir(parents=True)
    (out / "gpt" / "gpt3_mcore_te_tp1_pp2_resume" / "golden_values_dev_dgx_h100.json").write_bytes(b"stale")
    (out / "hybrid" / "kept").mkdir(parents=True)
    (out / "hybrid" / "kept" / "golden_values_dev.json").write_bytes(b"mine")
    assert golden("github", str(RUN), "--out", str(out), env=github_env(fake_ci)).exit_code == 0
    files = tree_bytes(out)
    assert files["gpt/gpt3_mcore_te_tp1_pp2_resume/golden_values_dev_dgx_h100.json"] == GOLDEN_A
    assert files["hybrid/kept/golden_values_dev.json"] == b"mine" and len(files) == 5


def test_nothing_found_writes_nothing(fake_ci, tmp_path):
    fake_ci.github_run(REPO, RUN, conclusion="success")
    fake_ci.github_test(REPO, RUN, "gpt", "gpt3_fine", "success", {"golden_values_dev.json": "x"})
    done = golden("github", str(RUN), "--out", str(tmp_path / "a" / "candidates"), "--only-failing",
                  env=github_env(fake_ci))
    assert done.exit_code == 0 and "no golden values found" in done.stdout
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- errors: one line, exit 2, nothing written

def _bad_zip(ci):
    ci.github_test(REPO, RUN, "gpt", "broken", "failure", {})
    ci.blobs[ci.github_runs[(REPO, RUN)]["artifacts"][-1]["id"]] = b"PK\x03\x04 truncated, not a zip"


def _zip_slip(ci):
    ci.github_test(REPO, RUN, "gpt", "slip", "failure", {"golden_values_dev.json": "x", "../../../evil.json": "x"})


def _absolute(ci):
    ci.github_test(REPO, RUN, "gpt", "absolute", "failure", {"/etc/golden_values_dev.json": "x"})


def _hostile_job(ci):
    job, _ = ci.github_test(REPO, RUN, "gpt", "victim", "failure", {"golden_values_dev.json": "x"})
    job["name"] = "../victim - latest"


def _hostile_file(ci):
    ci.github_test(REPO, RUN, "gpt", "odd", "failure", {"golden_values_dev\n.json": "x"})


def _server_error_after_one(ci):
    _first, second = (a["id"] for a in ci.github_runs[(REPO, RUN)]["artifacts"][:2])
    ci.fail(rf"/actions/artifacts/{second}/zip", 502)  # the first one is fetched and staged by then


@pytest.mark.parametrize("spoil, env_change, message", [
    (None, {"GITHUB_TOKEN": None}, "no GitHub token: set GITHUB_TOKEN or GH_TOKEN"),
    (None, {"GITHUB_TOKEN": "wrong"}, "GitHub API: 401 Unauthorized on GET /repos/NVIDIA/Megatron-LM/actions/runs/"
                                      f"{RUN}: Bad credentials ($GITHUB_TOKEN was refused)"),
    (None, {"GITHUB_REPOSITORY": "NVIDIA/Other"}, "GitHub API: 404 Not Found on GET /repos/NVIDIA/Other/actions/runs/"),
    (None, {"GITHUB_REPOSITORY": "../x"}, "--repo '../x': unsafe owner '..'"),
    (_bad_zip, {}, "artifact logs-broken-16482213-8f2c1e4a: not a readable zip archive"),
    (_zip_slip, {}, "unsafe path '../../../evil.json' inside the zip (zip-slip); nothing written"),
    (_absolute, {}, "unsafe path '/etc/golden_values_dev.json' inside the zip (zip-slip)"),
    (_hostile_job, {}, "unsafe model folder '..'"),
    (_hostile_file, {}, "unsafe file name 'golden_values_dev\\n.json'"),
    (_server_error_after_one, {}, "GitHub API: 502 Bad Gateway on GET /repos/NVIDIA/Megatron-LM/actions/artifacts/"),
])
def test_github_errors_are_one_line_exit_2_and_write_nothing(fake_ci, tmp_path, spoil, env_change, message):
    megatron_run(fake_ci)
    if spoil is not None:
        spoil(fake_ci)
    out = tmp_path / "candidates"
    (out / "gpt").mkdir(parents=True)
    (out / "gpt" / "golden_values_dev.json").write_bytes(b"before")
    before = tree_bytes(tmp_path, folders=True)
    one_line_error(golden("github", str(RUN), "--out", str(out), env=github_env(fake_ci, **env_change)), message)
    assert tree_bytes(tmp_path, folders=True) == before
    if spoil is _server_error_after_one:
        assert len(fake_ci.blob_requests) == 1  # one archive was downloaded before the failure
    assert FakeCI.TOKEN not in message


def test_rate_limits_say_until_when(fake_ci, tmp_path):
    megatron_run(fake_ci)
    fake_ci.fail(r"/runs/\d+/jobs", 403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1735732800"},
                 {"message": "API rate limit exceeded for installation ID 1."})
    one_line_error(golden("github", str(RUN), "--out", str(tmp_path / "c"), env=github_env(fake_ci)),
                   "GitHub API rate limit reached until 12:00:00 UTC (403 on GET /repos/NVIDIA/Megatron-LM/actions/"
                   f"runs/{RUN}/jobs?per_page=100&page=1); try again later")
    assert list(tmp_path.iterdir()) == []


def test_a_token_never_travels_in_clear_to_another_machine(tmp_path):
    with pytest.raises(FetchError, match="use https"):
        fetch("github", RUN, tmp_path / "c", env={"GITHUB_TOKEN": "t", "GITHUB_REPOSITORY": REPO,
                                                  "GITHUB_API_URL": "http://api.example.com"})
    assert check_base_url("http://127.0.0.1:8080/api/v4/", "x") == "http://127.0.0.1:8080/api/v4"
    assert check_base_url("https://ghe.example.com/api/v3", "x") == "https://ghe.example.com/api/v3"
    with pytest.raises(FetchError, match="not an http"):
        check_base_url("file:///etc/passwd", "the GitHub API URL")


def test_usage_errors(tmp_path):
    one_line_error(golden("gitea", "5", env={}), "unknown source 'gitea': choose github or gitlab")
    one_line_error(golden("github", "0", env={}), "run id must be a positive number, got 0")
    one_line_error(golden("github", "5", "--project", "1", env={}), "--project is for gitlab")
    one_line_error(golden("gitlab", "5", "--repo", "a/b", env={}), "--repo is for github")
    import subprocess
    import sys

    bad_id = subprocess.run([sys.executable, "-m", "goldens", "fetch", "github", "x"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)  # click's usage errors are made one line by goldens.cli.main
    assert bad_id.returncode == 2 and bad_id.stderr.count("\n") == 1, bad_id.stderr
    assert "Invalid value for 'ID'" in bad_id.stderr


# ---------------------------------------------------------------- names, as Megatron's script maps them

@pytest.mark.parametrize("job, key, place", [
    ("bert/bert_mcore_tp2_pp2 - latest", "bert_mcore_tp2_pp2", ("bert", "bert_mcore_tp2_pp2")),
    ("gpt/GPT3_MCore_TE - dev - extra", "gpt3_mcore_te", ("gpt", "GPT3_MCore_TE")),  # key lowercased, folder not
    ("moe/gpt3_moe/with_slash - latest", "gpt3_moe/with_slash", ("moe", "gpt3_moe/with_slash")),
    ("t5/t5_220m", "t5_220m", ("t5", "t5_220m")),
    ("no_stage - latest", "no_stage", None),
])
def test_job_names_map_to_model_and_test(job, key, place):
    assert job_test_key(job) == key and model_and_test(job) == place


@pytest.mark.parametrize("artifact, test", [
    (f"logs-bert_mcore_tp2_pp2-{RUN}-4b1e0c2d", "bert_mcore_tp2_pp2"),
    (f"logs-bert_mcore_tp2_pp2-{RUN}-4b1e0c2d-retry", "bert_mcore_tp2_pp2"),
    (f"logs-GPT3-{RUN}-x", "gpt3"),
    (f"logs-a-logs-b-{RUN}-x", "a-b"),  # Megatron's replace() drops every "logs-"
    ("coverage", "coverage"),
])
def test_artifact_names_map_to_tests(artifact, test):
    assert artifact_test(artifact, RUN) == test


def test_the_job_filter_prefers_the_integration_workflow_then_labels_then_all():
    tests = {"name": "a", "workflow_name": "CICD / cicd-integration-tests-latest"}
    other = {"name": "b", "workflow_name": "lint"}
    labelled = {"name": "c", "labels": ["self-hosted", "cicd-integration-tests-latest-h100"]}
    assert workflow_jobs([tests, other, labelled]) == [tests]
    assert workflow_jobs([other, labelled]) == [labelled]
    assert workflow_jobs([other]) == [other]


def test_hostile_members_and_link_headers():
    for name in ("../x.json", "a/../../x.json", "/abs.json", "\\\\server\\x.json", "C:x.json", "a\\..\\x.json", ""):
        assert hostile_member(name), name
    for name in ("golden_values_dev.json", "a/b/golden_values..json", "x..y/z"):
        assert not hostile_member(name), name
    link = '<https://api.github.com/x?page=3>; rel="last", <https://api.github.com/x?page=2>; rel="next"'
    assert next_link(link) == "https://api.github.com/x?page=2" and next_link('<u>; rel="prev"') is None


# ---------------------------------------------------------------- GitLab

PROJECT = "adlr/megatron-lm"
PIPELINE = 2790511


def gitlab_env(ci: FakeCI, **extra: str) -> dict:
    return {**dict.fromkeys(UNSET), "RO_API_TOKEN": ci.TOKEN, "CI_PROJECT_ID": PROJECT, "CI_API_V4_URL": ci.gitlab_url,
            **extra}


def megatron_pipeline(ci: FakeCI) -> None:
    """A merge-request pipeline: functional child pipelines for dev and lts, a build bridge, and in
    the dev child a failing job with two iterations, a passing one, one without artifacts, one
    whose archive has no results, and 105 passing jobs (two pages of 100)."""
    ci.gitlab_pipeline(PROJECT, PIPELINE)
    ci.gitlab_bridge(PROJECT, PIPELINE, "build:trigger", 111)
    ci.gitlab_bridge(PROJECT, PIPELINE, "functional:run_dev", 2790600)
    ci.gitlab_bridge(PROJECT, PIPELINE, "functional:run_lts", 2790700)
    ci.gitlab_bridge(PROJECT, PIPELINE, "functional:run_nightly", None)  # not started: no downstream
    archive = gitlab_results_zip("gpt3_mcore_te_tp2_pp2", "dev", {"golden_values_dev_dgx_h100.json": GOLDEN_A},
                                 iteration=2)
    old = gitlab_results_zip("gpt3_mcore_te_tp2_pp2", "dev", {"golden_values_dev_dgx_h100.json": b"iteration 1"})
    ci.gitlab_job(PROJECT, 2790600, "gpt3_mcore_te_tp2_pp2", "gpt", "failed", zip_bytes({
        **_members(old), **_members(archive)}))
    ci.gitlab_job(PROJECT, 2790600, "bert_mcore_tp2_pp2", "bert", "success", gitlab_results_zip(
        "bert_mcore_tp2_pp2", "dev", {"golden_values_dev_dgx_h100.json": GOLDEN_B}))
    ci.gitlab_job(PROJECT, 2790600, "t5_220m", "t5", "failed", None)
    ci.gitlab_job(PROJECT, 2790600, "hybrid_mr", "hybrid", "failed", zip_bytes({"logs/out.log": "no results"}))
    for i in range(105):
        ci.gitlab_job(PROJECT, 2790600, f"passing_{i}", "gpt", "success", None)
    # lts: the folder without the environment suffix, and an inference job's generations file
    ci.gitlab_job(PROJECT, 2790700, "gpt_static_inference", "hybrid", "failed",
                  gitlab_results_zip("gpt_static_inference", None, {"generations_lts_dgx_a100.json": GOLDEN_B,
                                                                    "notes.txt": "not a golden"}))


def _members(archive: bytes) -> dict[str, bytes]:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        return {n: z.read(n) for n in z.namelist()}


def test_gitlab_pipeline_lands_in_megatrons_layout(fake_ci, tmp_path):
    megatron_pipeline(fake_ci)
    out = tmp_path / "candidates"
    done = golden("gitlab", str(PIPELINE), "--out", str(out), "--only-failing", env=gitlab_env(fake_ci))
    assert done.exit_code == 0, done.output
    assert tree_bytes(out) == {
        "gpt/gpt3_mcore_te_tp2_pp2/golden_values_dev_dgx_h100.json": GOLDEN_A,  # the highest iteration
        "hybrid/gpt_static_inference/golden_values_lts_dgx_a100.json": GOLDEN_B}  # generations → golden_values
    stderr = done.stderr
    assert f"pipeline {PIPELINE}: failed; 2 functional child pipeline(s)" in stderr
    assert "job t5_220m (" in stderr and "): no artifacts" in stderr
    assert "job hybrid_mr (" in stderr and "no results/iteration=* folder in its artifacts" in stderr
    assert "106 job(s) that succeeded left out (--only-failing)" in stderr
    assert {r["headers"].get("private-token") for r in fake_ci.requests} == {FakeCI.TOKEN}
    job_pages = [r["query"]["page"] for r in fake_ci.requests if r["path"].endswith("/2790600/jobs")]
    assert job_pages == ["1", "2"]
    assert not any(r["path"].endswith("/pipelines/111") for r in fake_ci.requests)  # not a functional bridge


def test_gitlab_with_the_job_token_and_a_functional_pipeline_given_directly(fake_ci, tmp_path):
    megatron_pipeline(fake_ci)
    env = gitlab_env(fake_ci, RO_API_TOKEN=None, CI_JOB_TOKEN=fake_ci.TOKEN)
    fetched = fetch("gitlab", 2790700, tmp_path / "c", env=env)
    assert [p.relative_to(tmp_path / "c").as_posix() for p in fetched.files] == [
        "hybrid/gpt_static_inference/golden_values_lts_dgx_a100.json"]
    assert "no functional child pipelines: its own jobs" in fetched.notes[0]
    assert {r["headers"].get("job-token") for r in fake_ci.requests} == {FakeCI.TOKEN}


@pytest.mark.parametrize("env_change, spoil, message", [
    ({"RO_API_TOKEN": None}, None, "no GitLab token: set GITLAB_TOKEN or RO_API_TOKEN"),
    ({"RO_API_TOKEN": "wrong"}, None, "GitLab API: 401 Unauthorized on GET /api/v4/projects/adlr%2Fmegatron-lm/"
                                      f"pipelines/{PIPELINE}: 401 Unauthorized ($RO_API_TOKEN was refused)"),
    ({"CI_PROJECT_ID": None}, None, "which project? give --project"),
    ({}, (r"/pipelines/2790600/jobs", 429, {"Retry-After": "30"}),
     "GitLab API rate limit reached for 30 s (429 on GET"),
    ({}, (r"/pipelines/2790700/jobs", 403, {}), "GitLab API: 403 Forbidden on GET"),
])
def test_gitlab_errors_are_one_line_exit_2_and_write_nothing(fake_ci, tmp_path, env_change, spoil, message):
    megatron_pipeline(fake_ci)
    if spoil is not None:
        fake_ci.fail(*spoil)
    one_line_error(golden("gitlab", str(PIPELINE), "--out", str(tmp_path / "c"), env=gitlab_env(fake_ci, **env_change)),
                   message)
    assert list(tmp_path.iterdir()) == []


def test_gitlab_zip_slip_and_hostile_job_names_write_nothing(fake_ci, tmp_path):
    megatron_pipeline(fake_ci)
    fake_ci.gitlab_job(PROJECT, 2790700, "slip", "gpt", "failed", zip_bytes({"results/../../x.json": "x"}))
    one_line_error(golden("gitlab", str(PIPELINE), "--out", str(tmp_path / "c"), env=gitlab_env(fake_ci)),
                   "unsafe path 'results/../../x.json' inside the zip (zip-slip)")
    fake_ci.gitlab[(PROJECT, 2790700)]["jobs"].pop()
    fake_ci.gitlab_job(PROJECT, 2790700, "x", "../../etc", "failed", gitlab_results_zip("x", "lts", {"g.json": "{}"}))
    one_line_error(golden("gitlab", str(PIPELINE), "--out", str(tmp_path / "c"), env=gitlab_env(fake_ci)),
                   "unsafe stage '../../etc'")
    assert list(tmp_path.iterdir()) == []


def test_the_gitlab_folder_rule():
    names = ["results/iteration=2/restart=0/assets/basic/gpt3-a-dev/golden_values_dev.json",
             "results/iteration=10/restart=0/assets/basic/gpt3-a-dev/golden_values_dev.json",
             "results/iteration=10/restart=1/assets/basic/gpt3-a/golden_values_dev.json",
             "results/iteration=10/restart=1/assets/basic/gpt3-a/sub/golden_values_x.json",
             "results/iteration=10/restart=1/assets/basic/gpt3-a/readme.json"]
    # the numerically highest iteration (10, not 2), its last restart folder, then the job's folder
    assert golden_members(names, "GPT3_A", "dev") == [names[2]]
    assert golden_members(names[:2], "gpt3_a", "dev") == [names[1]]
    assert golden_members(["logs/x"], "gpt3_a", "dev") is None
    assert golden_members(names[:2], "other", "dev") == []


def test_fetched_candidates_read_as_goldens(fake_ci, tmp_path):
    from goldens.files.formats.golden import parse_golden_bytes

    megatron_run(fake_ci)
    fetched = fetch("github", RUN, tmp_path / "c", env=github_env(fake_ci))
    for path in fetched.files:
        assert parse_golden_bytes(path.read_bytes(), path).metrics["lm loss"].values.size >= 1
    assert json.loads((tmp_path / "c" / "gpt/gpt3_mcore_te_tp1_pp2_resume/golden_values_dev_dgx_h100.json").read_text())


def test_the_fake_server_stops_by_itself():
    ci = FakeCI(lifetime_s=0.3).start()
    url = ci.url
    time.sleep(0.8)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/repos/a/b/actions/runs/1", timeout=2)
