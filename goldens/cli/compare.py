"""``golden diff``: compare a run with its golden, or any two of golden files, artifacts, versions.

Parse, call ``goldens.workflow.operands.diff``, render, exit: 0 pass, 1 a regression/difference (or no
golden yet), 2 usage or input error. The workflow and the renderers are imported inside the
functions (the start-up rule in ``goldens.cli``).
"""
from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from ..core.megatron import generation as known_generation
from . import common
from .common import console, handles_errors, show_table
from .options import (
    CaseOpt,
    EnvOpt,
    ExactOpt,
    GenerationOpt,
    NewEnvOpt,
    NewPlatformOpt,
    PlatformOpt,
    PolicyOpt,
    ResultFormatOpt,
    StoreOpt,
    VerboseOpt,
    check_result_format,
)

TargetsArg = Annotated[list[str] | None, typer.Argument(
    metavar="[ARTIFACT|RUN_DIR] | REFERENCE CANDIDATE",
    help="One run (artifact.json, its folder, or its id under runs/) to compare with the store's golden; "
         "or two operands — golden files, artifacts or versions (CASE@v3 CASE@v7) — reference first. "
         "None: the newest run under runs/.", show_default=False)]


@handles_errors
def diff(targets: TargetsArg = None, case: CaseOpt = None, env: EnvOpt = None, platform: PlatformOpt = None,
         store: StoreOpt = None, fmt: ResultFormatOpt = "table", policy: PolicyOpt = None,
         exact: ExactOpt = None, generation: GenerationOpt = None, new_env: NewEnvOpt = False,
         new_platform: NewPlatformOpt = False, verbose: VerboseOpt = False) -> None:
    """Compare a run with its golden (or REFERENCE with CANDIDATE) under tolerance policies.

    A run that fails (or has no golden yet) is staged for `golden review`, outside CI. An --env or
    --platform the store has no golden for, close to one it knows (dve for dev), is refused: did you
    mean…? (--new-env / --new-platform: a new one on purpose)."""
    from ..workflow.judge import force_regime
    from ..workflow.operands import diff

    check_result_format(fmt)
    if generation is not None:
        known_generation(generation)
    judgement = diff(list(targets or []), store_root=store, case=case, env=env, platform=platform,
                     policy=policy, force=force_regime(exact), generation=generation,
                     new_env=new_env, new_platform=new_platform)
    if judgement.result is not None:
        emit(judgement.result, fmt, store=None if store is None else str(store), verbose=verbose)
    tell(judgement.notes)
    raise typer.Exit(judgement.exit_code)


def tell(notes: tuple[str, ...]) -> None:
    """What the workflow has to say beside the result (staged, not staged, no golden): stderr."""
    for note in notes:
        print(note, file=sys.stderr)


def emit(result: Any, fmt: str, *, store: str | None = None, verbose: bool = True) -> None:
    """The result on stdout in the chosen format; ``store`` as given, for a failing case's approve command.
    A pass on a terminal is one line unless ``verbose`` (nothing in it needs reading); a failure, and
    any output to a log or a pipe, keeps every detail."""
    if fmt == "json":
        from ..files.result_json import result_json_chunks

        for chunk in result_json_chunks(result):  # written as made: a million-step result is never one string
            sys.stdout.write(chunk)
        sys.stdout.write("\n")
    elif fmt == "csv":
        result.frame().to_csv(sys.stdout, index=False)
    elif fmt == "md":
        from reports.document import Report
        from reports.markdown import result_markdown

        sys.stdout.write(result_markdown(Report.of(result, store=store)) + "\n")
    else:
        from reports.terminal import pass_line, result_lines, result_table

        out = console()
        if result.passed and not verbose and common.writes_to_terminal():
            out.print(pass_line(result), soft_wrap=True)
            return
        show_table(out, result_table(result))
        for line in result_lines(result, store):
            out.print(line, soft_wrap=True)  # never broken: an approve command must paste as one line
