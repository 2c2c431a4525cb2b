"""Post a Markdown report as a pull-request comment, or update the one this action posted before.

Standard library only, so it runs with any Python. The comment is recognised by a hidden marker;
GitHub rejects a body over 65,536 characters, so a longer report becomes a pointer to the artifact.
A comment that cannot be posted (a fork's read-only token, an API error) is a warning in the log,
never a failed job: the verdict is the judge's, and the report is in the step summary anyway.

    GITHUB_TOKEN=… GITHUB_REPOSITORY=owner/name PR_NUMBER=42 python pr_comment.py REPORT.md
    ($GITHUB_API_URL, set by GitHub Actions, points elsewhere for GitHub Enterprise.)
"""
from __future__ import annotations

import json
import os
import re
import sys
import urllib.request

MARKER = "<!-- golden-report -->"
LIMIT = 65_536


def call(method: str, url: str, token: str, body: dict | None = None) -> tuple[object, str | None]:
    request = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                                              "X-GitHub-Api-Version": "2022-11-28", "Content-Type": "application/json",
                                              "User-Agent": "golden-toolkit-action"})
    with urllib.request.urlopen(request, timeout=60) as response:
        link = response.headers.get("Link") or ""
        found = re.search(r'<([^>]+)>;\s*rel="next"', link)
        return json.loads(response.read() or b"null"), found.group(1) if found else None


def main(report_path: str) -> int:
    api = os.environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
    repo, number, token = os.environ["GITHUB_REPOSITORY"], int(os.environ["PR_NUMBER"]), os.environ["GITHUB_TOKEN"]
    with open(report_path, encoding="utf-8") as fh:
        report = fh.read()
    body = f"{MARKER}\n{report}"
    if len(body) > LIMIT:
        body = f"{MARKER}\nThe golden report is too long for a comment: see the job's step summary and its report artifact."
    url: str | None = f"{api}/repos/{repo}/issues/{number}/comments?per_page=100"
    previous = None
    while url:
        comments, url = call("GET", url, token)
        previous = next((c["id"] for c in comments if MARKER in (c.get("body") or "")), previous)
    if previous is None:
        call("POST", f"{api}/repos/{repo}/issues/{number}/comments", token, {"body": body})
        print(f"commented on {repo}#{number}")
    else:
        call("PATCH", f"{api}/repos/{repo}/issues/comments/{previous}", token, {"body": body})
        print(f"updated the comment on {repo}#{number}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: pr_comment.py REPORT.md (with GITHUB_TOKEN, GITHUB_REPOSITORY, PR_NUMBER set)")
    try:
        sys.exit(main(sys.argv[1]))
    except (OSError, KeyError, ValueError) as exc:  # urllib's HTTPError and URLError are OSErrors
        print(f"::warning::the pull-request comment was not posted: {type(exc).__name__}: {exc}")
