"""``golden judge``: many candidates against the store in one process, one combined result and report.

    golden judge PATH... [--store S] [--policy P] [--exact/--approx] [--format table|json|md]
                         [--out DIR] [--stage/--no-stage]

PATHs are files or folders searched recursively: golden_values files as Megatron's CI writes them
(with their ``_2nd`` pairs) and run artifacts. A candidate's case is its folder's path relative to
the folder given (a candidates tree mirrors ``test_cases/<model>/<case>/``), else the folder's name
where one store case has it. ``--out DIR`` writes ``DIR/results/*.json`` (one result per judged
target, for ``golden report``), ``DIR/findings.json`` and the reports. Exit 0 when every target
passed and nothing was found unjudgeable, 1 when any failed or any finding, 2 for a usage error.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import console, handles_errors, progress_bar, writes_to_terminal
from .options import ExactOpt, GenerationOpt, PolicyOpt, StoreOpt, out_option

JUDGE_FORMATS = ("table", "json", "md")
JUDGE_SCHEMA = "golden.judge/1"

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
    from .. import workflow
    from ..approve import in_ci
    from ..core.errors import GoldenError

    if fmt not in JUDGE_FORMATS:
        raise GoldenError(f"--format must be one of {', '.join(JUDGE_FORMATS)}, got {fmt!r}")
    with progress_bar("judging") as advance:
        bulk = workflow.judge_bulk(paths, store_root=store, policy=policy, force=workflow.force_regime(exact),
                                   stage=not in_ci(None) if stage is None else stage, generation=generation,
                                   progress=advance)
    if out is not None:
        workflow.publish_bulk(bulk, out, store_root=store)
    if fmt == "json":
        emit_json(bulk)
    elif fmt == "md":
        emit_markdown(bulk)
    else:
        emit_table(bulk)
    for note in bulk.notes:
        print(note, file=sys.stderr)
    raise typer.Exit(bulk.exit_code)


def summary(bulk: Any) -> dict[str, Any]:
    """Counts; ``preexisting``: how often each check failed on the committed goldens themselves (the
    tree's own defects, apart from regressions)."""
    from collections import Counter

    results = bulk.results
    counts = Counter(check for r in results for check in r.preexisting)
    return {"targets": len(bulk.judgements), "passed": sum(r.passed for r in results),
            "failed": sum(not r.passed for r in results), "regressions": sum(r.regression for r in results),
            "findings": len(bulk.findings), "preexisting": dict(sorted(counts.items()))}


def summary_line(bulk: Any) -> str:
    s = summary(bulk)
    verdict = "PASS" if bulk.passed else "FAIL"
    line = f"{verdict}: {s['passed']} passed, {s['failed']} failed"
    if s["failed"] != s["regressions"]:
        line += f" ({s['regressions']} regression(s), {s['failed'] - s['regressions']} only on pre-existing defects)"
    return line + f", {s['findings']} finding(s)"


def preexisting_lines(bulk: Any) -> list[str]:
    """The tree audit: each check that fails on the committed goldens themselves, with its count."""
    return [f"pre-existing in the committed goldens: {check} fails in {n} target(s)"
            for check, n in summary(bulk)["preexisting"].items()]


def emit_json(bulk: Any) -> None:
    import json

    doc = {"schema": JUDGE_SCHEMA, "passed": bulk.passed, "summary": summary(bulk),
           "results": [r.to_json(steps=False) for r in bulk.results],
           "findings": [f.to_json() for f in bulk.findings]}
    sys.stdout.write(json.dumps(doc, indent=2, allow_nan=False) + "\n")


def emit_markdown(bulk: Any) -> None:
    from reports.document import CaseEntry, Report
    from reports.markdown import result_markdown

    report = Report(tuple(CaseEntry(r) for r in bulk.results), findings=bulk.findings)
    sys.stdout.write(result_markdown(report) + f"\n**{summary_line(bulk)}**\n")


def _rows(bulk: Any) -> list[tuple[str, str, str, str, str]]:
    """(case, target, verdict, style, why) per judged target, failures first, then per finding."""
    rows = []
    for r in sorted(bulk.results, key=lambda r: (r.passed, not r.regression)):
        failing = [f"{'resume ' if m.phase == 2 and r.resume and m in r.resume.metrics else ''}{m.metric}"
                   for m in r.failures()]
        why = ("failing: " + ", ".join(failing)) if failing else (r.resume.explanation if r.resume is not None
                                                                   and not r.resume.passed else "")
        verdict, style = (("pass", "green") if r.passed else ("fail", "bold red") if r.regression
                          else ("fail (pre-existing)", "yellow"))
        rows.append((r.case or "—", f"{r.env}/{r.platform}", verdict, style, why))
    for f in bulk.findings:
        rows.append((f.case or f.path, "/".join(x for x in (f.env, f.platform) if x) or "—", f.kind, "yellow",
                     f.message))
    return rows


def emit_table(bulk: Any) -> None:
    """A table on a terminal (wrapped to its width); in a log or pipe (CI), one plain line per target —
    a boxed table of a whole tree there made lines of 1,300 characters."""
    from rich.markup import escape as markup_escape
    from rich.table import Table

    from ..core.sanitize import line as one_line

    def escape(text: object) -> str:  # names from files: no rich markup, no terminal escape, one line
        return markup_escape(one_line(text))

    out = console()
    if not writes_to_terminal():
        for case, target, verdict, _, why in _rows(bulk):
            print("\t".join(one_line(x) for x in (verdict.upper(), case, target, why)).rstrip())
    else:
        table = Table(title="golden judge", title_justify="left")
        for column in ("case", "target", "verdict", "why"):
            table.add_column(column, overflow="fold")
        for case, target, verdict, style, why in _rows(bulk):
            table.add_row(escape(case), escape(target), f"[{style}]{escape(verdict)}[/]", escape(why))
        out.print(table)
    for text in preexisting_lines(bulk):
        out.print("[yellow]" + escape(text) + "[/]")
    out.print(("[green]" if bulk.passed else "[bold red]") + escape(summary_line(bulk)) + "[/]")
