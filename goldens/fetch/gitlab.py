"""Candidate golden values from a GitLab pipeline, as Megatron-LM's
``download_golden_values.py`` (at d98e8a64dd) finds them through python-gitlab.

1. the pipeline (``GET /projects/:id/pipelines/:pid``); its bridges, paged: those named
   ``functional*`` with a downstream pipeline are the functional-test child pipelines, each of
   environment ``name[len("functional:run_"):]``. A pipeline without such bridges is taken as a
   functional pipeline itself (its environment unknown);
2. each child pipeline's jobs, paged (name, stage, status); with ``only_failing`` the jobs whose
   status is ``success`` are left out, as in Megatron;
3. each job's artifacts zip (``GET /projects/:id/jobs/:job_id/artifacts``; 404: the job has
   none): under ``results/iteration=<highest N>/<last folder>/assets/basic/`` the folder
   ``<job-name>-<environment>`` (lowercase, '_' as '-'), else ``<job-name>``; its ``g*.json``
   go to ``<out>/<job stage>/<job name>/<name with 'generations' as 'golden_values'>``.

Where Megatron's script would stop with an IndexError (no ``iteration=`` folder) this notes the
job and goes on. Without a known environment the ``<job-name>`` folder is used, else the only
``<job-name>-*`` one.
"""
from __future__ import annotations

import fnmatch
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from .http import Api, FetchError, Limits, check_base_url, typed
from .land import Archive, Staging, safe_part

DEFAULT_API = "https://gitlab.com/api/v4"
PRIVATE_TOKEN_VARIABLES = ("GITLAB_TOKEN", "RO_API_TOKEN")  # RO_API_TOKEN: Megatron's name
BRIDGE_PREFIX, ENV_PREFIX = "functional", "functional:run_"
_ITERATION = re.compile(r"^results/iteration=(\d{1,18})/([^/]+)/")  # more digits: no iteration of a real run


@dataclass(frozen=True)
class GitLab:
    api: Api
    project: str  # URL-encoded id or path


def connect(project: str | None, api_url: str | None, env: Mapping[str, str] = os.environ) -> GitLab:
    """The API from the options and the environment: ``--project`` or ``$CI_PROJECT_ID``;
    ``--api-url`` or ``$CI_API_V4_URL`` or ``https://$GITLAB_ENDPOINT/api/v4`` (Megatron's
    variable) or gitlab.com; a personal/project token from ``$GITLAB_TOKEN`` or ``$RO_API_TOKEN``
    (header PRIVATE-TOKEN), else the job's ``$CI_JOB_TOKEN`` (header JOB-TOKEN)."""
    project = project or env.get("CI_PROJECT_ID")
    if not project:
        raise FetchError("which project? give --project ID|GROUP/NAME (or set CI_PROJECT_ID)")
    endpoint = env.get("GITLAB_ENDPOINT")
    default = f"https://{endpoint}/api/v4" if endpoint else DEFAULT_API
    base = check_base_url(api_url or env.get("CI_API_V4_URL") or default, "the GitLab API URL")
    variable = next((v for v in PRIVATE_TOKEN_VARIABLES if env.get(v)), None)
    if variable is not None:
        header = "PRIVATE-TOKEN"
    elif env.get("CI_JOB_TOKEN"):
        variable, header = "CI_JOB_TOKEN", "JOB-TOKEN"
    else:
        raise FetchError(f"no GitLab token: set {' or '.join(PRIVATE_TOKEN_VARIABLES)} (read_api scope), or run "
                         "inside a GitLab job (CI_JOB_TOKEN)")
    hints = {401: f"${variable} was refused",
             403: f"the token in ${variable} may lack read_api or access to the project",
             404: f"no such pipeline or job in project {project}, or the token in ${variable} cannot see it"}
    api = Api("GitLab", base, {header: env[variable], "Accept": "application/json",
                               "User-Agent": "golden-toolkit-fetch"}, hints=hints, limits=Limits.from_env(env))
    return GitLab(api, urllib.parse.quote(project, safe=""))


def hyphenated(name: str) -> str:
    return name.replace("_", "-").lower()


def golden_members(names: list[str], job_name: str, environment: str | None) -> list[str] | None:
    """The zip members Megatron's script takes for a job; None when the archive has no
    ``results/iteration=<N>/`` folder at all."""
    runs = [(int(m.group(1)), m.group(2)) for m in map(_ITERATION.match, names) if m]
    if not runs:
        return None
    iteration = max(n for n, _ in runs)
    restart = max(folder for n, folder in runs if n == iteration)
    basic = f"results/iteration={iteration}/{restart}/assets/basic/"
    folders = {n[len(basic):].split("/", 1)[0] for n in names if n.startswith(basic) and "/" in n[len(basic):]}
    job = hyphenated(job_name)
    if environment is not None:
        order = [f"{job}-{hyphenated(environment)}", job]
    else:
        prefixed = sorted(f for f in folders if f.startswith(f"{job}-"))
        order = [job] + (prefixed if len(prefixed) == 1 else [])
    for folder in order:
        found = sorted(n for n in names if n.startswith(f"{basic}{folder}/")
                       and "/" not in n[len(basic) + len(folder) + 1:]
                       and fnmatch.fnmatchcase(n.rsplit("/", 1)[1], "g*.json"))
        if found:
            return found
    return []


def _children(gitlab: GitLab, pipeline_id: int) -> list[tuple[int, str | None]]:
    """(pipeline id, environment) of each functional-test pipeline to read."""
    bridges = [typed(b, {"name": str}, "GitLab API: a bridge")
               for b in gitlab.api.pages(f"/projects/{gitlab.project}/pipelines/{pipeline_id}/bridges")]
    children = []
    for bridge in bridges:
        downstream = bridge.get("downstream_pipeline")
        if bridge["name"].startswith(BRIDGE_PREFIX) and downstream is not None:
            typed(downstream, {"id": int}, f"GitLab API: bridge {bridge['name']!r}'s downstream_pipeline")
            children.append((downstream["id"], bridge["name"][len(ENV_PREFIX):]))
    return children or [(pipeline_id, None)]


def fetch_pipeline(gitlab: GitLab, pipeline_id: int, staging: Staging, *, only_failing: bool) -> list[str]:
    """Stage the golden values of one pipeline; returns notes (what was left out and why)."""
    api, project = gitlab.api, gitlab.project
    pipeline = api.json(f"/projects/{project}/pipelines/{pipeline_id}")
    if not isinstance(pipeline, dict):
        raise FetchError(f"GitLab API: pipeline {pipeline_id} is not an object")
    children = _children(gitlab, pipeline_id)
    notes = [f"pipeline {pipeline_id}: {pipeline.get('status')}; "
             + (f"{len(children)} functional child pipeline(s)" if children[0][0] != pipeline_id
                else "no functional child pipelines: its own jobs")]
    passed = 0
    for child, environment in children:
        jobs = [typed(j, {"id": int, "name": str, "stage": str}, "GitLab API: a job")
                for j in api.pages(f"/projects/{project}/pipelines/{child}/jobs")]
        for job in jobs:
            if only_failing and job.get("status") == "success":
                passed += 1
                continue
            source = f"job {job['name']} ({job['id']})"
            folder = PurePosixPath(safe_part(job["stage"], "stage", source), safe_part(job["name"], "job name", source))
            archive_path = staging.scratch(f"{job['id']}.zip")
            try:
                api.download(f"/projects/{project}/jobs/{job['id']}/artifacts", archive_path)
            except FetchError as exc:
                if exc.status != 404:
                    raise
                notes.append(f"{source}: no artifacts")
                continue
            with Archive(archive_path, source, api.limits) as archive:
                members = golden_members(archive.names, job["name"], environment)
                if members is None:
                    notes.append(f"{source}: no results/iteration=* folder in its artifacts")
                    members = []
                elif not members:
                    notes.append(f"{source}: no golden values under assets/basic/ for this job")
                for member in members:
                    name = member.rsplit("/", 1)[1].replace("generations", "golden_values")
                    staging.add(folder / safe_part(name, "file name", source), archive.read(member),
                                f"{source}: {job.get('status')}")
            archive_path.unlink()
    if passed:
        notes.append(f"{passed} job(s) that succeeded left out (--only-failing)")
    return notes
