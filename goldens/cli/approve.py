"""``golden pending · approve · review · reject · rollback · prune``: typed options, one library call.

The logic lives in ``goldens.approve``; the review screen in ``goldens.cli.review_screen``. Both
load numpy and rich, so they are imported inside the commands (the start-up rule in ``goldens.cli``).
"""
from __future__ import annotations

import json
import shlex
import sys
from typing import Annotated, Any

import typer

from .common import console, handles_errors, show_table
from .options import (
    AllowCiOpt,
    ApproverOpt,
    CasePatternOpt,
    DialectOpt,
    EnvOpt,
    GenerationOpt,
    JsonOpt,
    NewEnvOpt,
    NewPlatformOpt,
    PlatformOpt,
    ReasonOpt,
    StoreOpt,
    open_store,
    store_line,
)

MetricOpt = Annotated[list[str] | None, typer.Option(
    "--metric", metavar="NAME", help="Take only this metric from the run (repeatable); the others keep their values.")]
OnlyFailingOpt = Annotated[bool, typer.Option(
    "--only-failing", help="Take only the metrics whose staged verdict failed.")]
PendingFlag = Annotated[bool, typer.Option(
    "--pending", help="Act on the staged candidates (filtered by --case/--env/--platform, and by --metric: only runs "
                      "that hold it).")]
RunArg = Annotated[str | None, typer.Argument(
    metavar="RUN", help="A run: its artifact.json, its directory, or its id under runs/.")]


@handles_errors
def pending(store: StoreOpt = None, case: CasePatternOpt = None,
            as_json: JsonOpt = False) -> None:
    """List staged candidates (runs that failed or had no golden), oldest target first."""
    from .. import approve
    from .review_screen import pending_table

    found = approve.list_pending(open_store(store), case=case)
    if as_json:
        print(json.dumps([dict(c.to_json(), path=str(c.path)) for c in found], indent=2))
    elif not found:
        print("no pending candidates")
    else:
        show_table(console(), pending_table(found))


@handles_errors
def accept(run: RunArg = None, pending: PendingFlag = False, store: StoreOpt = None,
           case: CasePatternOpt = None, env: EnvOpt = None, platform: PlatformOpt = None,
           metric: MetricOpt = None, only_failing: OnlyFailingOpt = False, reason: ReasonOpt = None,
           approver: ApproverOpt = None, allow_ci: AllowCiOpt = False, dialect: DialectOpt = None,
           generation: GenerationOpt = None, new_env: NewEnvOpt = False, new_platform: NewPlatformOpt = False) -> None:
    """Make a run (or the staged candidates) the new golden: a new version with who, why, from which run.

    In bulk (--pending, narrowed by --case PATTERN, --env, --platform, --metric) every candidate is
    checked before the first write, and each approval gets its own provenance record. The store's
    backend and write dialect are told on stderr. A RUN approved for an --env / --platform its case
    has no golden for, close to a name the store knows (dve for dev), is refused: did you mean…?
    (--new-env / --new-platform: a new one on purpose)."""
    from .. import approve
    from ..workflow.select import select_candidates
    from .review_screen import accepted_line

    approve.require_reason(reason)
    approve.refuse_in_ci(None, allow_ci)
    golden_store = open_store(store, dialect, generation)
    candidates = select_candidates(golden_store, run, pending, case=case, env=env, platform=platform,
                                   metrics=metric or (), new_env=new_env, new_platform=new_platform)
    if not candidates:
        print("no pending candidates")
        return
    outcomes = approve.apply(approve.Operation.ACCEPT, golden_store, candidates, reason=reason,
                             approver=approver,
                             selection=approve.Selection(metrics=tuple(metric or ()), only_failing=only_failing),
                             allow_ci=allow_ci)
    for outcome in outcomes:
        print(accepted_line(outcome))
    print(store_line(golden_store), file=sys.stderr)


@handles_errors
def reject(run: RunArg = None, pending: PendingFlag = False, store: StoreOpt = None,
           case: CasePatternOpt = None, env: EnvOpt = None, platform: PlatformOpt = None,
           allow_ci: AllowCiOpt = False) -> None:
    """Discard staged candidates; the goldens stay as they are."""
    from .. import approve
    from ..workflow.select import select_candidates

    approve.refuse_in_ci(None, allow_ci)
    golden_store = open_store(store)
    candidates = select_candidates(golden_store, run, pending, case=case, env=env, platform=platform)
    for outcome in approve.apply(approve.Operation.REJECT, golden_store, candidates, allow_ci=allow_ci):
        print(f"rejected {outcome.candidate.target} (run {outcome.candidate.run_id})")
    if not candidates:
        print("no pending candidates")


@handles_errors
def review(store: StoreOpt = None, case: CasePatternOpt = None, env: EnvOpt = None,
           platform: PlatformOpt = None, metric: MetricOpt = None, only_failing: OnlyFailingOpt = False,
           reason: ReasonOpt = None, approver: ApproverOpt = None, allow_ci: AllowCiOpt = False,
           dialect: DialectOpt = None, generation: GenerationOpt = None) -> None:
    """Review staged candidates one case at a time: a accept · r reject · s skip · A/R all remaining · q quit.

    Each screen fits the terminal: failing metrics first, one line each; passing rows that do not
    fit are counted, never the failing one scrolled off. f shows the failing rows only (f again:
    every row). Without a terminal it prints the equivalent approve/reject commands instead.
    """
    from .. import approve
    from .review_screen import review_commands, summary_lines

    golden_store = open_store(store, dialect, generation)
    candidates = approve.list_pending(golden_store, case=case, env=env, platform=platform)
    if not candidates:
        print("no pending candidates")
        return
    io = review_io()
    if io is None:
        store_option = "" if store is None else f" --store {shlex.quote(str(store))}"
        print("\n".join(review_commands(candidates, store_option)))
        return
    summary = approve.review(golden_store, candidates, io, reason=reason, approver=approver,
                             selection=approve.Selection(metrics=tuple(metric or ()), only_failing=only_failing),
                             allow_ci=allow_ci)
    for line in summary_lines(summary):
        print(line)
    if summary.refused:
        raise typer.Exit(2)


@handles_errors
def rollback(case: Annotated[str, typer.Argument(help="The case to roll back: its path, or a name only one case has.")],
             to: Annotated[str, typer.Option("--to", metavar="REF", help="The version whose content becomes current: "
                                                                         "vN (ledger store) or a commit (git store).")],
             store: StoreOpt = None, reason: ReasonOpt = None,
             approver: ApproverOpt = None, allow_ci: AllowCiOpt = False) -> None:
    """Write a new version whose files hold exactly the bytes they held at REF (history is never
    rewritten; files that already hold them are not touched)."""
    from .. import approve
    from ..store import GIT, parse_case_ref

    golden_store = open_store(store)
    case = golden_store.resolve(case)
    parse_case_ref(f"{case}@{to}")  # REF checked as any CASE@REF is (bounded, printable, no leading '-')
    version = approve.rollback(golden_store, case, to, reason=reason, approver=approver, allow_ci=allow_ci)
    where = ("the work tree (commit the goldens and their records)" if golden_store.backend_name == GIT
             else version.label)
    print(f"rolled back {case} to the content of {to} as {where}")


@handles_errors
def prune(store: StoreOpt = None,
          check: Annotated[bool, typer.Option("--check", help="Only list; exit 1 if anything is stale.")] = False,
          ) -> None:
    """List goldens no case defines, what else is odd about the tree (a name two cases share, a case
    without goldens, a legacy file name, an unreadable golden) and candidates no run backs; without
    --check, discard those candidates (in CI, as with --check, nothing is discarded). Exit 1 with
    --check when anything is listed."""
    from .. import approve

    golden_store = open_store(store)
    listing = check or approve.in_ci(None)
    report = approve.prune_check(golden_store) if listing else approve.prune(golden_store)
    if listing and not check:
        print("CI is set: nothing discarded (CI never writes to the golden store)", file=sys.stderr)
    for path in report.orphan_goldens:
        print(f"orphan golden (no case.yaml/model_config.yaml beside it): {path}")
    for finding in report.findings:
        print(f"{finding.kind}: {finding.path or finding.case}: {finding.message}")
    for path, why in report.stale_candidates:
        print(f"{'stale' if listing else 'discarded'} candidate {path}: {why}")
    if report.clean:
        print("nothing to prune")
    elif check:
        raise typer.Exit(1)


def review_io() -> Any:
    """The interactive key source, or None when stdin/stdout is not a terminal.

    Tests replace this function to script the keys.
    """
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return None
    from .review_screen import TerminalReviewIO

    return TerminalReviewIO(console())
