"""Post a Markdown report as a pull-request comment, or update the one this action's token posted before.

It talks to GitHub through the toolkit's one CI client (``goldens.fetch.http.Api``: the token
only to the API's own origin — never across a redirect or a ``Link`` page to another host —, https
only, a deadline, a size cap on each answer). The comment is recognised by a hidden marker *and*
by its author: only a comment the token's own user wrote is ever edited (``GET /user``; a
GitHub Actions token cannot read that, so ``$COMMENT_AUTHOR``, by default
``github-actions[bot]``, names it). GitHub rejects a body over 65,536 characters, so a longer
report becomes a pointer to the artifact; ``@mentions`` in it are broken, so a name in a
candidate cannot ping anyone. A comment that cannot be posted (a fork's read-only token, an API
error, an answer of the wrong shape) is a warning in the log, never a failed job: the verdict is
the judge's, and the report is in the step summary anyway.

    GITHUB_TOKEN=… GITHUB_REPOSITORY=owner/name PR_NUMBER=42 python pr_comment.py REPORT.md
    ($GITHUB_API_URL, set by GitHub Actions, points elsewhere for GitHub Enterprise.)
"""
from __future__ import annotations

import os
import sys

MARKER = "<!-- golden-report -->"
LIMIT = 65_536
ACTIONS_BOT = "github-actions[bot]"


def _login(name: object) -> str:
    """A login compared as GitHub shows it in comments (``app[bot]``) and in GraphQL (``app``)."""
    return str(name or "").lower().removesuffix("[bot]")


def own_login(api, env) -> str:
    """The login of the token's user: ``GET /user``, else ``$COMMENT_AUTHOR``, else the Actions bot."""
    from goldens.fetch.http import FetchError

    try:
        user = api.json("/user")
        if isinstance(user, dict) and isinstance(user.get("login"), str) and user["login"]:
            return user["login"]
    except FetchError as exc:
        if exc.status not in (401, 403, 404):
            raise
    return env.get("COMMENT_AUTHOR") or ACTIONS_BOT


def main(report_path: str, env=os.environ) -> int:
    from goldens.core.sanitize import unmention
    from goldens.fetch.http import Api, FetchError, Limits, check_base_url

    missing = [v for v in ("GITHUB_TOKEN", "GITHUB_REPOSITORY", "PR_NUMBER") if not env.get(v)]
    if missing:
        raise FetchError(f"{', '.join(missing)} not set")
    repo, number = env["GITHUB_REPOSITORY"], env["PR_NUMBER"]
    if not number.isascii() or not number.isdigit() or len(number) > 12 or repo.count("/") != 1:
        raise FetchError("PR_NUMBER must be a number and GITHUB_REPOSITORY owner/name")
    base = check_base_url(env.get("GITHUB_API_URL") or "https://api.github.com", "the GitHub API URL")
    api = Api("GitHub", base, {"Authorization": f"Bearer {env['GITHUB_TOKEN']}",
                               "Accept": "application/vnd.github+json",
                               "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "golden-toolkit-action"},
              limits=Limits.from_env(env))
    with open(report_path, encoding="utf-8", errors="replace") as fh:
        report = fh.read(LIMIT + 1)
    body = f"{MARKER}\n{unmention(report)}"
    if len(body) > LIMIT:
        body = (f"{MARKER}\nThe golden report is too long for a comment: see the job's step summary and its "
                "report artifact.")
    me = _login(own_login(api, env))
    thread = f"/repos/{repo}/issues/{int(number)}/comments"
    ours = [c for c in api.pages(thread)
            if MARKER in str(c.get("body") or "") and isinstance(c.get("user"), dict)
            and _login(c["user"].get("login")) == me and isinstance(c.get("id"), int) and not isinstance(c["id"], bool)]
    if ours:
        api.send("PATCH", f"/repos/{repo}/issues/comments/{ours[-1]['id']}", {"body": body})
        print(f"updated the comment on {repo}#{int(number)}")
    else:
        api.send("POST", thread, {"body": body})
        print(f"commented on {repo}#{int(number)}")
    return 0


def warn(message: str) -> None:
    """A ``::warning::`` line whose text can be no other workflow command (escaped as GitHub's runner does)."""
    try:
        from goldens.core.sanitize import line
        message = line(message)
    except ImportError:
        message = " ".join(message.split()).replace("::", ": :")
    print("::warning::" + message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A"))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: pr_comment.py REPORT.md (with GITHUB_TOKEN, GITHUB_REPOSITORY, PR_NUMBER set)")
    try:
        sys.exit(main(sys.argv[1]))
    except ImportError as exc:
        warn(f"the pull-request comment was not posted: the golden toolkit is not importable ({exc.name})")
    except Exception as exc:
        warn(f"the pull-request comment was not posted: {type(exc).__name__}: {exc}")
    sys.exit(0)
