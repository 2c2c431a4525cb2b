"""``golden judge``: many candidates against the store in one process, one combined result and report.

    golden judge PATH... [--store S] [--policy P] [--exact/--approx] [--format table|json|md]
                         [--out DIR] [--stage/--no-stage]

PATHs are files or folders searched recursively: golden_values files as Megatron's CI writes them
(with their ``_2nd`` pairs) and run artifacts. A candidate's case is its folder's path relative to
the folder given (a candidates tree mirrors ``test_cases/<model>/<case>/``), else the folder's name
where one store case has it. ``--out DIR`` writes ``DIR/results/*.json`` (one result per judged
target, for ``golden report``), ``DIR/findings.json`` and the reports. Exit 0 when every target
passed and nothing was found unjudgeable, 1 when any failed or any finding, 2 for a usage error.
The workflow, the reports and rich are imported inside the functions (the start-up rule in
``goldens.cli``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..core.errors import GoldenError
from ..core.sanitize import line as one_line
from .common import console, handles_errors, progress_bar, writes_to_terminal
from .options import ExactOpt, GenerationOpt, PolicyOpt, StoreOpt, out_option

if TYPE_CHECKING:
    from ..workflow.bulk import BulkJudgement

JUDGE_FORMATS = ("table", "json", "md")

PathsArg = Annotated[list[Path], typer.Argument(
    metavar="PATH", show_default=False,
    help="Candidate files or folders (searched recursively): golden_values_<env>_<platform>[_2nd].json as "
         "Megatron's CI writes them, or run artifacts; a folder tree mirrors the store's cases.")]
FormatOpt = Annotated[str, typer.Option(
    "--format", "-f", metavar="|".join(JUDGE_FORMATS),
    help="table (one row per target, for terminals and logs), json (every result and finding), md (the report).")]
OutOpt = Annotated[Path | None, out_option(
    "Write DIR/results/*.json (one result per target), DIR/findings.json and the reports (md, html, junit, json).")]
StageOpt = Annotated[bool | None, typer.Option(
    "--stage/--no-stage", show_default=False,
    help="Stage failing candidates (and those without a golden) for `golden review` [default: yes outside CI; "
         "CI never writes].")]


@handles_errors
def judge(paths: PathsArg, store: StoreOpt = None, policy: PolicyOpt = None, exact: ExactOpt = None,
          fmt: FormatOpt = "table", out: OutOpt = None, stage: StageOpt = None,
          generation: GenerationOpt = None) -> None:
    """Judge many candidates against the store in one process: one combined result and report.

    Unpaired or unreadable files are findings (exit 1), never a crash of the batch."""
    from ..approve import in_ci
    from ..workflow.bulk import judge_bulk, publish_bulk
    from ..workflow.judge import force_regime

    if fmt not in JUDGE_FORMATS:
        raise GoldenError(f"--format must be one of {', '.join(JUDGE_FORMATS)}, got {fmt!r}")
    with progress_bar("judging") as advance:
        bulk = judge_bulk(paths, store_root=store, policy=policy, force=force_regime(exact),
                          stage=not in_ci(None) if stage is None else stage, generation=generation,
                          progress=advance)
    if out is not None:
        publish_bulk(bulk, out, store_root=store)
    if fmt == "json":
        emit_json(bulk)
    elif fmt == "md":
        emit_markdown(bulk)
    else:
        emit_table(bulk)
    for note in bulk.notes:
        print(note, file=sys.stderr)
    raise typer.Exit(bulk.exit_code)


def emit_json(bulk: BulkJudgement) -> None:
    sys.stdout.write(json.dumps(bulk.to_json(), indent=2, allow_nan=False) + "\n")


def emit_markdown(bulk: BulkJudgement) -> None:
    from reports.document import CaseEntry, Report
    from reports.markdown import result_markdown

    report = Report(tuple(CaseEntry(r) for r in bulk.results), findings=bulk.findings)
    sys.stdout.write(result_markdown(report) + f"\n**{bulk.summary_line()}**\n")


def emit_table(bulk: BulkJudgement) -> None:
    """A table on a terminal (wrapped to its width); in a log or pipe (CI), one plain line per target —
    a boxed table of a whole tree there made lines of 1,300 characters."""
    from rich.markup import escape as markup_escape
    from rich.table import Table

    from ..workflow.bulk import FAIL_VERDICT, PASS_VERDICT

    styles = {PASS_VERDICT: "green", FAIL_VERDICT: "bold red"}  # a pre-existing failure, a finding: yellow

    def escape(text: object) -> str:  # names from files: no rich markup, no terminal escape, one line
        return markup_escape(one_line(text))

    out = console()
    if not writes_to_terminal():
        for case, target, verdict, why in bulk.rows():
            print("\t".join(one_line(x) for x in (verdict.upper(), case, target, why)).rstrip())
    else:
        table = Table(title="golden judge", title_justify="left")
        for column in ("case", "target", "verdict", "why"):
            table.add_column(column, overflow="fold")
        for case, target, verdict, why in bulk.rows():
            style = styles.get(verdict, "yellow")
            table.add_row(escape(case), escape(target), f"[{style}]{escape(verdict)}[/]", escape(why))
        out.print(table)
    for text in bulk.preexisting_lines():
        out.print("[yellow]" + escape(text) + "[/]")
    out.print(("[green]" if bulk.passed else "[bold red]") + escape(bulk.summary_line()) + "[/]")
