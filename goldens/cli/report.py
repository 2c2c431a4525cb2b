"""``golden report``: render comparison results (Markdown, HTML, JUnit, JSON) or golden changes.

Typed options plus one library call (``reports.build``); numpy, pandas, matplotlib and jinja2
load inside the command body so ``golden --help`` stays light.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .common import fail, handles_errors
from .options import StoreOpt, out_option


@handles_errors
def report(
    inputs: Annotated[list[Path] | None, typer.Argument(
        help="Run folders (runs/<id>/ holding result.json) or result JSON files.")] = None,
    out: Annotated[Path | None, out_option(
        "Folder for the report files (default: <run>/report/ beside the one input; with --changes, print the "
        "Markdown instead).")] = None,
    formats: Annotated[str | None, typer.Option(
        "--format", "-f", help="Comma-separated subset of md, html, junit, json (--changes: md, html, json); "
                               "default: all.")] = None,
    changes: Annotated[str | None, typer.Option(
        "--changes", help="Golden-change report instead: BASE..HEAD (two git refs of the store) or CASE@vA..vB "
                          "(two store versions).")] = None,
    store: StoreOpt = None,
) -> None:
    """Render reports for pull requests and CI.

    Exit 0 when every reported case passed, 1 when one failed (the change report always exits 0),
    2 on bad input. With GITHUB_STEP_SUMMARY set, the Markdown is appended to it.
    """
    from reports.build import build_changes_report, build_result_report
    from reports.output import CHANGES_FORMATS, RESULT_FORMATS, parse_formats

    if changes is not None:
        if inputs:
            raise fail("--changes compares golden revisions: give no run folders or result files with it")
        chosen = parse_formats(formats or ",".join(CHANGES_FORMATS), CHANGES_FORMATS)
        written = build_changes_report(changes, store, out, chosen)
        if out is None:
            sys.stdout.write(written.markdown)
    else:
        if not inputs:
            raise fail("give run folders or result files to report on, or --changes BASE..HEAD")
        written = build_result_report(inputs, out, parse_formats(formats or ",".join(RESULT_FORMATS), RESULT_FORMATS),
                                      store=store)
    for path in written.files:
        print(f"wrote {path}", file=sys.stderr)
    if written.step_summary is not None:
        print(f"appended the summary to {written.step_summary}", file=sys.stderr)
    if not written.passed:
        raise typer.Exit(1)
