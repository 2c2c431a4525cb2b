"""``golden fetch github|gitlab ID``: candidate golden values from a CI run into a candidates folder.

Typed options and one library call (``goldens.fetch``); the library loads inside the command body
so ``golden --help`` stays light.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..core.sanitize import line
from .common import handles_errors, say
from .options import out_option


@handles_errors
def fetch(
    source: Annotated[str, typer.Argument(metavar="github|gitlab", help="Where the CI run is.", show_default=False)],
    run_id: Annotated[int, typer.Argument(metavar="ID", help="GitHub workflow run id, or GitLab pipeline id.",
                                          show_default=False)],
    out: Annotated[Path, out_option(
        "Candidates folder: <out>/<model>/<test>/golden_values_<env>_<platform>[_2nd].json, as in Megatron-LM's "
        "test_cases [default: candidates].")] = Path("candidates"),
    only_failing: Annotated[bool, typer.Option(
        "--only-failing", help="Only from jobs that did not succeed (GitHub: conclusion; GitLab: status).")] = False,
    repo: Annotated[str | None, typer.Option(
        "--repo", metavar="OWNER/NAME", show_default=False,
        help="GitHub repository [default: $GITHUB_REPOSITORY]. Token: $GITHUB_TOKEN or $GH_TOKEN.")] = None,
    project: Annotated[str | None, typer.Option(
        "--project", metavar="ID|GROUP/NAME", show_default=False,
        help="GitLab project [default: $CI_PROJECT_ID]. Token: $GITLAB_TOKEN or $RO_API_TOKEN (PRIVATE-TOKEN), "
             "else $CI_JOB_TOKEN.")] = None,
    api_url: Annotated[str | None, typer.Option(
        "--api-url", metavar="URL", show_default=False,
        help="API base URL, for GitHub Enterprise or a self-hosted GitLab [default: $GITHUB_API_URL or "
             "https://api.github.com; $CI_API_V4_URL, https://$GITLAB_ENDPOINT/api/v4 or "
             "https://gitlab.com/api/v4].")] = None,
) -> None:
    """Download candidate golden values from a CI run (as Megatron's download_golden_values.py finds them).

    Exit 0 when the fetch completed (also when it found nothing), 2 on any error: then nothing is written.
    """
    from ..fetch import fetch as run_fetch

    fetched = run_fetch(source, run_id, out, repo=repo, project=project, api_url=api_url, only_failing=only_failing)
    for note in fetched.notes:  # names from the CI API: one line each, never a workflow command
        say(line(note), err=True)
    for path in fetched.files:
        say(line(f"wrote {path}"), err=True)
    if fetched.files:
        say(line(f"fetched {len(fetched.files)} golden file(s) of {fetched.folders} test(s) into {out}"))
    else:
        say(line(f"no golden values found; {out} left as it was"))
