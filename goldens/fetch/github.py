"""Candidate golden values from a GitHub Actions workflow run, as Megatron-LM's
``tests/test_utils/python_scripts/download_golden_values.py`` (at d98e8a64dd) finds them.

1. the run (``GET /repos/{repo}/actions/runs/{id}``): it must exist; its status is reported;
2. its jobs, paged; those of the ``cicd-integration-tests-latest`` workflow (by ``workflow_name``,
   else by a label), else all of them; a job named ``"<model>/<test> - <version>"`` is test
   ``<test>`` of folder ``<model>`` (``model_and_test``);
3. its artifacts, paged; ``logs-<test>-<run id>-<uuid>`` belongs to the job of that test
   (``artifact_test``: Megatron's own expression); with ``only_failing`` the artifacts of jobs
   that concluded ``success`` are left out, as in Megatron;
4. each artifact's zip (``GET /repos/{repo}/actions/artifacts/{id}/zip``, a redirect to a blob
   host that never sees the token): its root-level ``golden_values*.json`` go to
   ``<out>/<model>/<test>/<the same name>``, bytes unchanged.

Where Megatron's script would silently lose or mix data, this says so instead: two jobs of one
test name in different models (the artifact name cannot tell them apart) are skipped with a note
rather than written to whichever job came last; of several uploads for one job (a ``-retry``) the
newest is taken; an expired artifact is a note, not a failed download.
"""
from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from .http import Api, FetchError, Limits, check_base_url, typed
from .land import Archive, Staging, safe_part

DEFAULT_API = "https://api.github.com"
TOKEN_VARIABLES = ("GITHUB_TOKEN", "GH_TOKEN")
MEGATRON_WORKFLOW = "cicd-integration-tests-latest"
GOLDEN_GLOB = "golden_values*.json"


@dataclass(frozen=True)
class GitHub:
    """Where and as whom: the API base, the repository, and the token's variable name."""

    api: Api
    repo: str


def connect(repo: str | None, api_url: str | None, env: Mapping[str, str] = os.environ) -> GitHub:
    """The API from the options and the environment: ``--repo`` or ``$GITHUB_REPOSITORY``;
    ``--api-url`` or ``$GITHUB_API_URL`` (GitHub Enterprise) or api.github.com; the token from
    ``$GITHUB_TOKEN`` or ``$GH_TOKEN``."""
    repo = repo or env.get("GITHUB_REPOSITORY")
    if not repo:
        raise FetchError("which repository? give --repo OWNER/NAME (or set GITHUB_REPOSITORY)")
    owner, _, name = repo.partition("/")
    for part, what in ((owner, "owner"), (name, "repository name")):
        safe_part(part, what, f"--repo {repo!r}")
    base = check_base_url(api_url or env.get("GITHUB_API_URL") or DEFAULT_API, "the GitHub API URL")
    variable = next((v for v in TOKEN_VARIABLES if env.get(v)), None)
    if variable is None:
        raise FetchError(f"no GitHub token: set {' or '.join(TOKEN_VARIABLES)} (a token that can read the "
                         "repository's Actions artifacts)")
    headers = {"Authorization": f"Bearer {env[variable]}", "Accept": "application/vnd.github+json",
               "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "golden-toolkit-fetch"}
    hints = {401: f"${variable} was refused", 403: f"the token in ${variable} may lack actions:read",
             404: f"no such run in {repo}, or the token in ${variable} cannot see it",
             410: "the artifact expired"}
    return GitHub(Api("GitHub", base, headers, hints=hints, limits=Limits.from_env(env)), f"{owner}/{name}")


def workflow_jobs(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Megatron's job filter: the integration-test workflow's jobs by name, else by label, else all."""
    by_workflow = [j for j in jobs if "workflow_name" in j
                   and MEGATRON_WORKFLOW in str(j.get("workflow_name") or "").lower()]
    if by_workflow:
        return by_workflow
    by_label = [j for j in jobs if "labels" in j and any(MEGATRON_WORKFLOW in str(label).lower()
                                                          for label in j.get("labels") or ())]
    return by_label or jobs


def job_test_key(job_name: str) -> str:
    """The job's test name as Megatron matches it: after the first '/', before ' - ', lowercased."""
    if "/" in job_name:
        rest = job_name.split("/", 1)[1]
        return (rest.split(" - ", 1)[0] if " - " in rest else rest).lower()
    return (job_name.split(" - ", 1)[0] if " - " in job_name else job_name).lower()


def model_and_test(job_name: str) -> tuple[str, str] | None:
    """(model folder, test name) of ``"<model>/<test> - <version>"``; None without a '/'."""
    if "/" not in job_name:
        return None
    model, rest = job_name.split("/", 1)
    return model, rest.split(" - ", 1)[0] if " - " in rest else rest


def artifact_test(artifact_name: str, run_id: int) -> str:
    """The test an artifact belongs to: Megatron's expression, verbatim."""
    return artifact_name.lower().replace("logs-", "").split(f"-{run_id}")[0]


@dataclass(frozen=True)
class _Pick:
    artifact: dict[str, Any]
    job: dict[str, Any]
    model: str
    test: str


def _plan(run_id: int, jobs: list[dict[str, Any]], artifacts: list[dict[str, Any]],
          only_failing: bool) -> tuple[list[_Pick], list[str]]:
    """Which artifacts to download, and a note for everything left out."""
    by_test: dict[str, list[dict[str, Any]]] = {}
    for job in workflow_jobs(jobs):
        by_test.setdefault(job_test_key(str(job.get("name", ""))), []).append(job)
    notes: list[str] = []
    chosen: dict[Any, _Pick] = {}
    unmatched = passed = 0
    for artifact in artifacts:
        name = str(artifact.get("name", ""))
        matches = by_test.get(artifact_test(name, run_id), [])
        if not matches:
            unmatched += 1
            continue
        models = sorted({(model_and_test(str(j.get("name", ""))) or ("?",))[0] for j in matches})
        if len(matches) > 1:
            notes.append(f"artifact {name}: skipped, its test is a job in {len(matches)} places "
                         f"({', '.join(models)}) and the artifact name cannot tell which")
            continue
        job = matches[0]
        if only_failing and job.get("conclusion") == "success":
            passed += 1
            continue
        place = model_and_test(str(job.get("name", "")))
        if place is None:
            notes.append(f"artifact {name}: skipped, job {job.get('name')!r} names no '<model>/<test>'")
            continue
        if artifact.get("expired"):
            notes.append(f"artifact {name}: skipped, it expired")
            continue
        pick = _Pick(artifact, job, *place)
        earlier = chosen.get(job.get("id"))
        if earlier is not None:
            newer, older = sorted((earlier, pick), key=lambda p: (str(p.artifact.get("created_at") or ""),
                                                                  int(p.artifact.get("id") or 0)), reverse=True)
            notes.append(f"artifact {older.artifact.get('name')}: skipped, {newer.artifact.get('name')} is a "
                         "newer upload for the same job")
            pick = newer
        chosen[job.get("id")] = pick
    if passed:
        notes.append(f"{passed} artifact(s) of jobs that succeeded left out (--only-failing)")
    if unmatched:
        notes.append(f"{unmatched} artifact(s) belong to no test job")
    return list(chosen.values()), notes


def fetch_run(github: GitHub, run_id: int, staging: Staging, *, only_failing: bool) -> list[str]:
    """Stage the golden values of one workflow run; returns notes (what was left out and why)."""
    api, base = github.api, f"/repos/{github.repo}/actions"
    run = api.json(f"{base}/runs/{run_id}")
    if not isinstance(run, dict):
        raise FetchError(f"GitHub API: run {run_id} is not an object")
    jobs = [typed(j, {"id": int, "name": str}, "GitHub API: a job")
            for j in api.pages(f"{base}/runs/{run_id}/jobs", "jobs")]
    artifacts = [typed(a, {"id": int, "name": str}, "GitHub API: an artifact")
                 for a in api.pages(f"{base}/runs/{run_id}/artifacts", "artifacts")]
    picks, notes = _plan(run_id, jobs, artifacts, only_failing)
    notes.insert(0, f"run {run_id} of {github.repo}: {run.get('status')}, "
                    f"{run.get('conclusion') or 'no conclusion yet'}; {len(jobs)} job(s), {len(artifacts)} artifact(s)")
    for pick in picks:
        name = str(pick.artifact.get("name"))
        source = f"artifact {name}"
        folder = PurePosixPath(safe_part(pick.model, "model folder", source), safe_part(pick.test, "test name", source))
        archive_path = staging.scratch(f"{pick.artifact.get('id')}.zip")
        api.download(f"{base}/artifacts/{pick.artifact['id']}/zip", archive_path)
        with Archive(archive_path, source, api.limits) as archive:
            found = [n for n in archive.names if "/" not in n and fnmatch.fnmatchcase(n, GOLDEN_GLOB)]
            for member in found:
                staging.add(folder / safe_part(member, "file name", source), archive.read(member),
                            f"{source} (job {pick.job.get('name')}: {pick.job.get('conclusion')})")
        archive_path.unlink()
        if not found:
            notes.append(f"{source}: no {GOLDEN_GLOB} at the top of the archive")
    return notes
