"""A fake CI server: GitHub's REST API (Actions runs, jobs, artifacts; issue comments) and GitLab's v4
(pipelines, bridges, jobs, job artifacts; merge-request notes) on 127.0.0.1, and the zip archives
their artifacts hold.

Why: ``golden fetch`` and the GitHub Action's PR comment talk to these APIs, and no test touches a
real network. ``FakeCI`` answers with the fields, paging and redirects of the public documentation,
checks the token, and records every request so a test can see what was asked and where a token went.
"""
from __future__ import annotations

import io
import json
import re
import threading
import urllib.parse
import zipfile
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def zip_bytes(members: Mapping[str, bytes | str]) -> bytes:
    """A zip archive of ``members`` (name → content), names written as given (hostile ones too)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(zipfile.ZipInfo(name, (2025, 1, 1, 0, 0, 0)),
                             content.encode() if isinstance(content, str) else content)
    return buffer.getvalue()


def gitlab_results_zip(job_name: str, environment: str | None, files: Mapping[str, bytes | str], *,
                       iteration: int = 1, restart: str = "restart=0") -> bytes:
    """A GitLab functional job's artifacts as Megatron's CI lays them out:
    results/iteration=<N>/<restart>/assets/basic/<job-name>-<environment>/<file> (lowercase, '-' for '_')."""
    folder = job_name.replace("_", "-").lower() + (f"-{environment.replace('_', '-')}" if environment else "")
    base = f"results/iteration={iteration}/{restart}/assets/basic/{folder}/"
    return zip_bytes({f"results/iteration={iteration}/{restart}/logs/stdout.log": "training log\n",
                      **{base + name: content for name, content in files.items()}})


class FakeCI:
    """GitHub's REST API (Actions: run, jobs, artifacts, the artifact zip by a 302 to a blob host;
    issue comments) and GitLab's v4 (pipeline, bridges, jobs, job artifacts) on 127.0.0.1, with
    the fields and paging of their public documentation (/work/notes/megatron-ci.md §4.3):
    GitHub pages by ``per_page`` (default 30, at most 100) and ``page`` with a ``Link`` header,
    GitLab by the same with ``Link`` and ``X-*-Page`` headers; merge-request notes (``notes``).
    Requests need ``TOKEN``
    (GitHub: ``Authorization: Bearer|token``; GitLab: ``PRIVATE-TOKEN`` or ``JOB-TOKEN``).

    The blob host is a second server (another origin): ``blob_requests`` records what reached it.
    ``fail(pattern, status, ...)`` makes matching requests answer an error; ``requests`` logs
    every API request. Both servers stop at ``stop()`` or by themselves after ``lifetime_s``.
    """

    TOKEN = "loopback-token-0123"
    EPOCH = "2025-06-01T12:00:00Z"

    def __init__(self, lifetime_s: float = 120.0):
        self.lifetime_s = lifetime_s
        self.github_runs: dict[tuple[str, int], dict[str, Any]] = {}
        self.blobs: dict[int, bytes] = {}
        self.comments: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.gitlab: dict[tuple[str, int], dict[str, Any]] = {}
        self.job_archives: dict[int, bytes] = {}
        self.notes: dict[tuple[str, int], list[dict[str, Any]]] = {}  # merge-request notes posted
        self.failures: list[tuple[Any, int, dict[str, str], Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.blob_requests: list[dict[str, str]] = []
        self.link_headers = True
        self.token_user: str | None = None  # GET /user: None answers 403, as for a GitHub Actions token
        self._ids = iter(range(1001, 10**9))
        self._servers: list[Any] = []

    # --- lifecycle
    def start(self) -> FakeCI:
        for handler in (self._api_handler(), self._blob_handler()):
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
            self._servers.append(server)
        self._timer = threading.Timer(self.lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers = []
        self._timer.cancel()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def gitlab_url(self) -> str:
        return self.url + "/api/v4"

    @property
    def blob_url(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    def fail(self, pattern: str, status: int, headers: Mapping[str, str] | None = None, body: Any = None) -> None:
        """Requests whose path (with query) matches ``pattern`` answer ``status`` from now on."""
        self.failures.append((re.compile(pattern), status, dict(headers or {}), body))

    # --- GitHub
    def github_run(self, repo: str, run_id: int, *, status: str = "completed",
                   conclusion: str | None = "failure") -> dict:
        run = {"id": run_id, "name": "CICD NeMo", "node_id": f"WFR_{run_id}", "head_branch": "main",
               "head_sha": "009b8a3a9ccbb128af87f9b1c0f4c62e8a304f6d", "run_number": 7, "run_attempt": 1,
               "event": "pull_request", "status": status, "conclusion": conclusion, "workflow_id": 161335,
               "url": f"https://api.github.com/repos/{repo}/actions/runs/{run_id}",
               "jobs_url": f"https://api.github.com/repos/{repo}/actions/runs/{run_id}/jobs",
               "artifacts_url": f"https://api.github.com/repos/{repo}/actions/runs/{run_id}/artifacts",
               "created_at": self.EPOCH, "updated_at": self.EPOCH}
        self.github_runs[(repo, run_id)] = {"run": run, "jobs": [], "artifacts": []}
        return run

    def github_job(self, repo: str, run_id: int, name: str, conclusion: str | None, *,
                   workflow_name: str = "CICD NeMo / cicd-integration-tests-latest",
                   labels: Sequence[str] = ()) -> dict:
        job_id = next(self._ids)
        job = {"id": job_id, "run_id": run_id, "workflow_name": workflow_name, "head_branch": "main",
               "run_url": f"https://api.github.com/repos/{repo}/actions/runs/{run_id}", "run_attempt": 1,
               "node_id": f"CR_{job_id}", "head_sha": "009b8a3a9ccbb128af87f9b1c0f4c62e8a304f6d",
               "url": f"https://api.github.com/repos/{repo}/actions/jobs/{job_id}",
               "html_url": f"https://github.com/{repo}/actions/runs/{run_id}/job/{job_id}",
               "status": "completed" if conclusion else "in_progress", "conclusion": conclusion,
               "created_at": self.EPOCH, "started_at": self.EPOCH, "completed_at": self.EPOCH if conclusion else None,
               "name": name, "steps": [{"name": "Run tests", "status": "completed", "conclusion": conclusion,
                                        "number": 1, "started_at": self.EPOCH, "completed_at": self.EPOCH}],
               "check_run_url": f"https://api.github.com/repos/{repo}/check-runs/{job_id}", "labels": list(labels),
               "runner_id": 1, "runner_name": "runner-1", "runner_group_id": 1, "runner_group_name": "default"}
        self.github_runs[(repo, run_id)]["jobs"].append(job)
        return job

    def github_artifact(self, repo: str, run_id: int, name: str, archive: bytes, *, expired: bool = False,
                        created_at: str | None = None) -> dict:
        artifact_id = next(self._ids)
        artifact = {"id": artifact_id, "node_id": f"MDg6QXJ0aWZhY3Q{artifact_id}", "name": name,
                    "size_in_bytes": len(archive), "url": f"https://api.github.com/repos/{repo}/actions/artifacts/{artifact_id}",
                    "archive_download_url": f"https://api.github.com/repos/{repo}/actions/artifacts/{artifact_id}/zip",
                    "expired": expired, "created_at": created_at or self.EPOCH, "expires_at": "2025-08-30T12:00:00Z",
                    "updated_at": created_at or self.EPOCH, "digest": None,
                    "workflow_run": {"id": run_id, "repository_id": 42, "head_repository_id": 42, "head_branch": "main",
                                     "head_sha": "009b8a3a9ccbb128af87f9b1c0f4c62e8a304f6d"}}
        self.github_runs[(repo, run_id)]["artifacts"].append(artifact)
        self.blobs[artifact_id] = archive
        return artifact

    def github_test(self, repo: str, run_id: int, model: str, test: str, conclusion: str,
                    files: Mapping[str, bytes | str], *, version: str = "latest") -> tuple[dict, dict]:
        """One Megatron integration test: job ``<model>/<test> - <version>`` and its artifact
        ``logs-<test>-<run id>-<uuid>`` holding ``files`` at the root (as action.yml uploads them)."""
        job = self.github_job(repo, run_id, f"{model}/{test} - {version}", conclusion)
        artifact = self.github_artifact(repo, run_id, f"logs-{test}-{run_id}-8f2c1e4a",
                                        zip_bytes({"stdout.log": "log\n", **files}))
        return job, artifact

    # --- GitLab
    def gitlab_pipeline(self, project: str, pipeline_id: int, *, status: str = "failed") -> dict:
        pipeline = {"id": pipeline_id, "iid": pipeline_id % 1000, "project_id": 19378, "status": status, "ref": "main",
                    "sha": "009b8a3a9ccbb128af87f9b1c0f4c62e8a304f6d", "source": "push",
                    "web_url": f"https://gitlab.example.com/{project}/-/pipelines/{pipeline_id}",
                    "created_at": self.EPOCH, "updated_at": self.EPOCH}
        self.gitlab[(project, pipeline_id)] = {"pipeline": pipeline, "bridges": [], "jobs": []}
        return pipeline

    def _gitlab_job(self, project: str, pipeline_id: int, name: str, stage: str, status: str,
                    archive: bytes | None) -> dict:
        job_id = next(self._ids)
        job = {"id": job_id, "name": name, "stage": stage, "status": status, "ref": "main", "tag": False,
               "allow_failure": False, "created_at": self.EPOCH, "started_at": self.EPOCH, "finished_at": self.EPOCH,
               "duration": 812.5, "queued_duration": 3.1, "coverage": None,
               "artifacts_expire_at": "2025-07-01T12:00:00Z", "tag_list": ["gpu"],
               "pipeline": {"id": pipeline_id, "project_id": 19378, "ref": "main",
                            "sha": "009b8a3a9ccbb128af87f9b1c0f4c62e8a304f6d", "status": status},
               "commit": {"id": "009b8a3a9ccbb128af87f9b1c0f4c62e8a304f6d", "short_id": "009b8a3a", "title": "t",
                          "message": "t", "author_name": "a", "author_email": "a@example.com",
                          "created_at": self.EPOCH},
               "runner": None, "web_url": f"https://gitlab.example.com/{project}/-/jobs/{job_id}",
               "project": {"ci_job_token_scope_enabled": False},
               "user": {"id": 1, "name": "ci", "username": "ci", "state": "active"},
               "artifacts": [] if archive is None else [{"file_type": "archive", "size": len(archive),
                                                         "filename": "artifacts.zip", "file_format": "zip"}]}
        if archive is not None:
            job["artifacts_file"] = {"filename": "artifacts.zip", "size": len(archive)}
            self.job_archives[job_id] = archive
        if status == "failed":
            job["failure_reason"] = "script_failure"
        self.gitlab[(project, pipeline_id)]["jobs"].append(job)
        return job

    def gitlab_job(self, project: str, pipeline_id: int, name: str, stage: str, status: str,
                   archive: bytes | None = None) -> dict:
        return self._gitlab_job(project, pipeline_id, name, stage, status, archive)

    def gitlab_bridge(self, project: str, pipeline_id: int, name: str, downstream: int | None) -> dict:
        """A trigger job of ``pipeline_id``; ``downstream``: the child pipeline's id (made here), or None."""
        bridge = self._gitlab_job(project, pipeline_id, name, "functional", "success", None)
        self.gitlab[(project, pipeline_id)]["jobs"].remove(bridge)
        if downstream is not None:
            child = self.gitlab_pipeline(project, downstream)
            bridge["downstream_pipeline"] = {"id": downstream, "sha": child["sha"], "ref": "main", "status": "failed",
                                             "created_at": self.EPOCH, "updated_at": self.EPOCH,
                                             "web_url": child["web_url"], "project_id": 19378}
        else:
            bridge["downstream_pipeline"] = None
        self.gitlab[(project, pipeline_id)]["bridges"].append(bridge)
        return bridge

    # --- serving
    def _page(self, handler: Any, items: list, query: dict, *, github: bool) -> list:
        default, top = (30, 100) if github else (20, 100)
        per_page = max(1, min(int(query.get("per_page", default)), top))
        page = max(1, int(query.get("page", 1)))
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        base = f"{self.url}{handler.path.split('?')[0]}"

        def link(n: int) -> str:
            return f"{base}?per_page={per_page}&page={n}"

        rels = ([(link(page + 1), "next"), (link(last), "last")] if page < last else []) + \
               ([(link(1), "first"), (link(page - 1), "prev")] if page > 1 else [])
        if not github:  # GitLab always sends first and last, and the X-* headers
            rels = ([(link(page + 1), "next")] if page < last else []) + [(link(1), "first"), (link(last), "last")]
        headers = {}
        if rels and self.link_headers:
            headers["Link"] = ", ".join(f'<{u}>; rel="{r}"' for u, r in rels)
        if not github:
            headers.update({"X-Page": str(page), "X-Per-Page": str(per_page), "X-Total": str(len(items)),
                            "X-Total-Pages": str(last), "X-Next-Page": str(page + 1) if page < last else "",
                            "X-Prev-Page": str(page - 1) if page > 1 else ""})
        handler.extra_headers = headers
        return chunk

    def _route(self, handler: Any, method: str) -> tuple[int, Any, dict[str, str]]:
        path, _, raw_query = handler.path.partition("?")
        query = dict(urllib.parse.parse_qsl(raw_query))
        self.requests.append({"method": method, "path": path, "query": query,
                              "headers": {k.lower(): v for k, v in handler.headers.items()}})
        for pattern, status, headers, body in self.failures:
            if pattern.search(handler.path):
                return status, body if body is not None else {"message": "injected failure"}, headers
        if path.startswith("/api/v4/"):
            if self.TOKEN not in (handler.headers.get("PRIVATE-TOKEN"), handler.headers.get("JOB-TOKEN")):
                return 401, {"message": "401 Unauthorized"}, {}
            return self._gitlab_route(handler, path[len("/api/v4"):], query)
        if handler.headers.get("Authorization") not in (f"Bearer {self.TOKEN}", f"token {self.TOKEN}"):
            return 401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest",
                         "status": "401"}, {}
        return self._github_route(handler, method, path, query)

    def _github_route(self, handler: Any, method: str, path: str, query: dict) -> tuple[int, Any, dict[str, str]]:
        not_found = (404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest",
                           "status": "404"}, {})
        if path == "/user":
            if self.token_user is None:
                return 403, {"message": "Resource not accessible by integration", "status": "403"}, {}
            return 200, {"login": self.token_user, "id": 7, "type": "User"}, {}
        if m := re.fullmatch(r"/repos/([^/]+/[^/]+)/actions/runs/(\d+)(/jobs|/artifacts)?", path):
            record = self.github_runs.get((m.group(1), int(m.group(2))))
            if record is None:
                return not_found
            if m.group(3) is None:
                return 200, record["run"], {}
            key = m.group(3)[1:]
            return 200, {"total_count": len(record[key]), key: self._page(handler, record[key], query, github=True)}, {}
        if m := re.fullmatch(r"/repos/([^/]+/[^/]+)/actions/artifacts/(\d+)/zip", path):
            artifact = next((a for r in self.github_runs.values() for a in r["artifacts"]
                             if a["id"] == int(m.group(2))), None)
            if artifact is None:
                return not_found
            if artifact["expired"]:
                return 410, {"message": "Artifact has expired", "status": "410"}, {}
            return 302, b"", {"Location": f"{self.blob_url}/blobs/{artifact['id']}?sig=short-lived"}
        if m := re.fullmatch(r"/repos/([^/]+/[^/]+)/issues/(\d+)/comments", path):
            thread = self.comments.setdefault((m.group(1), int(m.group(2))), [])
            if method == "POST":
                comment = {"id": next(self._ids), "body": handler.json_body()["body"],
                           "user": {"login": self.token_user or "github-actions[bot]",
                                    "type": "User" if self.token_user else "Bot"}, "created_at": self.EPOCH,
                           "html_url": f"https://github.com/{m.group(1)}/pull/{m.group(2)}#issuecomment"}
                thread.append(comment)
                return 201, comment, {}
            return 200, self._page(handler, thread, query, github=True), {}
        if m := re.fullmatch(r"/repos/([^/]+/[^/]+)/issues/comments/(\d+)", path):
            comment = next((c for (repo, _), t in self.comments.items() if repo == m.group(1)
                            for c in t if c["id"] == int(m.group(2))), None)
            if comment is None or method != "PATCH":
                return not_found
            comment["body"] = handler.json_body()["body"]
            return 200, comment, {}
        return not_found

    def _gitlab_route(self, handler: Any, path: str, query: dict) -> tuple[int, Any, dict[str, str]]:
        not_found = (404, {"message": "404 Not found"}, {})
        if m := re.fullmatch(r"/projects/([^/]+)/merge_requests/(\d+)/notes", path):
            if handler.command != "POST":
                return not_found
            sent = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
            form = dict(urllib.parse.parse_qsl(sent.decode()))
            note = {"id": next(self._ids), "body": form.get("body", ""), "author": {"username": "project_bot"}}
            self.notes.setdefault((urllib.parse.unquote(m.group(1)), int(m.group(2))), []).append(note)
            return 201, note, {}
        m = re.fullmatch(r"/projects/([^/]+)/(pipelines|jobs)/(\d+)(/bridges|/jobs|/artifacts)?", path)
        if m is None:
            return not_found
        project, kind, number, tail = urllib.parse.unquote(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
        if kind == "jobs" and tail == "/artifacts":
            archive = self.job_archives.get(number)
            if archive is None:
                return not_found
            return 200, archive, {"Content-Type": "application/zip",
                                  "Content-Disposition": "attachment; filename=artifacts.zip",
                                  "Content-Transfer-Encoding": "binary"}
        record = self.gitlab.get((project, number)) if kind == "pipelines" else None
        if record is None:
            return not_found
        if tail is None:
            return 200, record["pipeline"], {}
        if tail in ("/bridges", "/jobs"):
            return 200, self._page(handler, record[tail[1:]], query, github=False), {}
        return not_found

    def _api_handler(self) -> type:
        ci = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10

            def json_body(self) -> Any:
                return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")

            def _answer(self, method: str) -> None:
                self.extra_headers = {}
                status, body, headers = ci._route(self, method)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json; charset=utf-8", **self.extra_headers,
                                    **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._answer("GET")

            def do_POST(self):
                self._answer("POST")

            def do_PATCH(self):
                self._answer("PATCH")

            def log_message(self, *args):
                pass

        return Handler

    def _blob_handler(self) -> type:
        ci = self

        class Blob(BaseHTTPRequestHandler):
            timeout = 10

            def do_GET(self):
                ci.blob_requests.append({k.lower(): v for k, v in self.headers.items()})
                m = re.fullmatch(r"/blobs/(\d+)", self.path.split("?")[0])
                data = ci.blobs.get(int(m.group(1))) if m else None
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

            def log_message(self, *args):
                pass

        return Blob
