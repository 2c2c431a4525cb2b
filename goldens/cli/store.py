"""``golden validate · show · history · fsck · adopt · migrate``: the golden files and their history.

Each command is typed options plus one library call (goldens.workflow, goldens.store, goldens.megatron.lint);
those load numpy, so they are imported inside the commands (the start-up rule in ``goldens.cli``). Output is plain text
(values printed with ``repr``: full precision, never rounded, never truncated by a terminal width)
or ``--json``.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..core.errors import EXIT_DIFFERENCE, EXIT_PASS
from ..core.megatron import generation as known_generation
from .common import echo_json, fail, handles_errors, say
from .options import AllowCiOpt, ApproverOpt, DialectOpt, GenerationOpt, JsonOpt, StoreOpt, open_store, store_line

if TYPE_CHECKING:
    from ..core.model import GoldenSet
    from ..store import Problem, Version


# ---------------------------------------------------------------- validate

@handles_errors
def validate(
    paths: Annotated[list[Path] | None, typer.Argument(
        metavar="[PATHS]...", help="Golden files, case files (case.yaml, model_config.yaml) or folders to "
                                   "search for them [default: the store].")] = None,
    as_json: JsonOpt = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 on warnings too.")] = False,
    store: StoreOpt = None,
    changed: Annotated[bool, typer.Option(
        "--changed", help="Lint as Megatron's CI lints a change (tools/check_golden_values.py): the golden files "
                          "given, else those that differ from --base; no NaN or infinity in a changed Megatron "
                          "golden and, from PR #7217 on, \"value_precision\": \"full\" on every changed block of a "
                          "deterministic case.")] = False,
    base: Annotated[str | None, typer.Option(
        "--base", metavar="REF", show_default=False,
        help="With --changed: the git revision a change is measured from [default: HEAD; with FILES, the files "
             "count as changed as a whole].")] = None,
    allow_legacy_precision: Annotated[bool, typer.Option(
        "--allow-legacy-precision", help="With --changed: a changed deterministic block without the "
                                         "full-precision marker is a warning, not an error (local override).")] = False,
    generation: GenerationOpt = None,
    audit: Annotated[bool, typer.Option(
        "--audit", help="Also judge every golden of the store against itself as Megatron's CI would (the megatron "
                        "preset) and list, once per check with counts, the checks the committed goldens "
                        "themselves fail (a resume pair that differs, an inference file Megatron cannot "
                        "index): pre-existing defects of the tree, warnings here.")] = False,
) -> None:
    """Classify golden files ok / warning / error, each with a reason (usable as a pre-commit hook).

    Without PATHS it validates the store (--store, else the usual store): every file, what is odd
    about the tree (a name two cases share, an orphan folder, a case without goldens, a legacy file
    name), and its history read-only (ledger chain and blobs, or git approval records). With
    --changed it lints a change as Megatron's CI does, by the tree's generation of its conventions.
    Exit 0 when nothing worse than a warning is found (1 with --strict), 1 when any file has an
    error, 2 for a usage error such as a path that does not exist.
    """
    from ..files.validate import ERROR, OK, WARNING
    from ..workflow.validate import validate_tree

    if changed:
        _lint_changed(paths or [], base, generation, allow_legacy_precision, as_json, strict)
    if base is not None or allow_legacy_precision:
        raise fail("--base and --allow-legacy-precision go with --changed")
    golden_store = open_store(store, generation=generation) if store is not None or not paths else None
    found = validate_tree(paths or [], golden_store, audit=audit, generation=generation)
    summary, audited = found.summary, found.audited
    if golden_store is not None and golden_store.root.is_dir() and not as_json:
        typer.echo(store_line(golden_store), err=True)
    if as_json:
        echo_json(summary.to_json())
    else:
        for report in summary.reports:
            say(f"{report.status.upper():8} {report.path}")
            for finding in report.findings:
                say(f"         {finding.severity}: {finding.message}")
        for check, targets in audited.items():
            say(f"tree audit: {check} fails on the committed goldens themselves in {len(targets)} target(s)")
        if audit and not audited:
            say("tree audit: no check fails on the committed goldens themselves")
        say(f"{len(summary.reports)} files: {summary.count(OK)} ok, {summary.count(WARNING)} warning, "
                   f"{summary.count(ERROR)} error")
    worst = summary.worst
    failed = worst == ERROR or (strict and worst == WARNING)
    raise typer.Exit(EXIT_DIFFERENCE if failed else EXIT_PASS)


def _lint_changed(paths: list[Path], base: str | None, generation: str | None, allow_legacy_precision: bool,
                  as_json: bool, strict: bool) -> None:
    """``validate --changed``: the changed golden files, linted by their tree's generation; exits."""
    from ..files.validate import ERROR, OK, WARNING, ValidationSummary
    from ..megatron.lint import describe_rules, lint_changed

    if generation is not None:
        known_generation(generation)
    reports, detections = lint_changed(paths, base=base, generation=generation,
                                       allow_legacy_precision=allow_legacy_precision)
    summary = ValidationSummary(tuple(reports))
    if as_json:
        echo_json({**summary.to_json(), "generations": [
            {"generation": d.generation.name, "why": d.why, "warning": d.warning} for d in detections]})
    else:
        for detection in detections:
            typer.echo(describe_rules(detection))
            if detection.warning:
                typer.echo(f"warning: {detection.warning}")
        for report in summary.reports:
            typer.echo(f"{report.status.upper():8} {report.path}")
            for finding in report.findings:
                typer.echo(f"         {finding.severity}: {finding.message}")
        typer.echo(f"{len(summary.reports)} changed golden files: {summary.count(OK)} ok, "
                   f"{summary.count(WARNING)} warning, {summary.count(ERROR)} error")
    worst = summary.worst
    raise typer.Exit(EXIT_DIFFERENCE if worst == ERROR or (strict and worst == WARNING) else EXIT_PASS)


# ---------------------------------------------------------------- show

def _table(golden: GoldenSet, names: Sequence[str]) -> list[str]:
    """Rows of step | metric… with every value as ``repr`` (shortest text that reads back exactly)."""
    import numpy as np

    series = [golden.metrics[n] for n in names]
    steps = np.unique(np.concatenate([s.steps for s in series])) if series else np.empty(0, np.int64)
    columns = [["step", *map(str, steps.tolist())]]
    for s in series:
        by_step = dict(zip(s.steps.tolist(), s.values.tolist(), strict=True))
        columns.append([s.name, *(repr(by_step[t]) if t in by_step else "" for t in steps.tolist())])
    widths = [max(map(len, col)) for col in columns]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in zip(*columns, strict=True)]


@handles_errors
def show(
    ref: Annotated[str, typer.Argument(metavar="CASE[@REF]", help="A case (its path, or a name only one case has), "
                                                                  "optionally at a version: @vN (ledger) or "
                                                                  "@<commit> (git).")],
    env: Annotated[str | None, typer.Option("--env", metavar="NAME", help="Only this env (dev, lts, …).")] = None,
    platform: Annotated[str | None, typer.Option("--platform", metavar="NAME", help="Only this platform.")] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", metavar="NAME",
                                                        help="Only this metric (repeatable).")] = None,
    phase: Annotated[int | None, typer.Option("--phase", min=1, max=2, help="Only this phase (2 = _2nd).")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a case's golden series at full precision (current files, or CASE@REF from the history).

    A file that cannot be read (an empty or {} golden) is named with the reason; the others are shown."""
    from ..workflow.show import show_case

    view = show_case(open_store(store), ref, env=env, platform=platform, metrics=metric or (), phase=phase)
    if as_json:
        echo_json(view.to_json())
        return
    say(f"{view.case} — {view.origin}")
    for key, error in view.unreadable.items():
        say(f"{key.filename()}: unreadable: {getattr(error, 'reason', error)}")
    for shown in view.goldens:
        key = shown.key
        say("")
        say(f"{key.filename()}  (env {key.env}, platform {key.platform}, phase {key.phase}; "
            f"fingerprint {shown.fingerprint or '-'})")
        for name in shown.names:
            s = shown.golden.metrics[name]
            say(f"  {name}: {len(s)} steps, start_step {s.start_step}, end_step {s.end_step}, "
                f"step_interval {s.step_interval}")
        for line in _table(shown.golden, shown.names) if shown.names else ():
            say(f"  {line}")
        for name, value in shown.scalars.items():
            say(f"  {name} = {value!r}")


# ---------------------------------------------------------------- history

def _change_text(change: Any) -> str:
    parts = []
    if change.steps_added:
        parts.append(f"+{change.steps_added} steps")
    if change.steps_removed:
        parts.append(f"-{change.steps_removed} steps")
    parts.append(f"{change.changed_steps} changed")
    if change.max_abs_rel_diff is not None:
        parts.append(f"max |rel| {change.max_abs_rel_diff:.3g}, mean rel {change.mean_rel_diff:+.3g}")
    return ", ".join(parts)


def _version_line(version: Version) -> str:
    where = ""
    if version.commit:
        where = f"  (commit by {version.author}: {version.subject})"
    elif version.ref == "worktree":
        where = "  (not committed yet: commit it with your change)"
    if not version.attributed:
        return f"{version.label}  {version.time}  unattributed: changed outside the golden tool{where}"
    run = f"  run {version.source_run_id}" if version.source_run_id else ""
    fp = f"  fingerprint {version.fingerprint[:16]}" if version.fingerprint else ""
    return f"{version.label}  {version.time}  {version.action}  by {version.approver}{run}{fp}{where}"


@handles_errors
def history(
    case: Annotated[str, typer.Argument(metavar="CASE", help="The case: its path, or a name only one case has.")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The case's versions: who, when, why, from which run, and what changed (for a selective
    approval, per file: which metrics it took from the run, which it kept). In a git work tree the
    versions are the commits that changed the case's goldens; one no approval record describes was
    changed by another tool and is shown as unattributed."""
    from ..approve import recorded_selection
    from ..store import LEDGER
    from .review_screen import took_and_kept

    golden_store = open_store(store)
    case = golden_store.resolve(case)
    versions = golden_store.history(case)
    if as_json:
        echo_json({"case": case, "backend": golden_store.backend_name, "versions": [v.to_json() for v in versions]})
        return
    if not versions:
        hint = (f"`golden adopt {case}` records them as v1" if golden_store.backend_name == LEDGER
                else "no commit has changed them in this repository")
        say(f"{case}: no history yet (plain files only; {hint})")
        return
    for version in versions:
        say(_version_line(version))
        if version.reason:
            say(f"    reason: {version.reason}")
        for note in version.notes:
            say(f"    note: {note}")
        selection = recorded_selection(version.provenance)
        for filename, record in version.files.items():
            before = record.previous_hash[:12] if record.previous_hash else "(new)"
            after = record.hash[:12] if record.hash else "(removed)"
            took = f"  {took_and_kept(*selection[filename])}" if filename in selection else ""
            say(f"    {filename}  {before} → {after}{took}")
            for name, change in (record.summary or {}).items():
                say(f"        {name}: {_change_text(change)}")


# ---------------------------------------------------------------- fsck / adopt / migrate

def _problem_line(problem: Problem) -> str:
    state = "repaired" if problem.repaired else problem.severity
    return f"{state:8} {problem.case}: {problem.message}"


@handles_errors
def fsck(
    cases: Annotated[list[str] | None, typer.Argument(metavar="[CASES]...", help="Only these cases.")] = None,
    store: StoreOpt = None,
    no_repair: Annotated[bool, typer.Option("--no-repair", help="Only report; change nothing.")] = False,
    dialect: DialectOpt = None,
    as_json: JsonOpt = False,
    generation: GenerationOpt = None,
) -> None:
    """Integrity check of the history; first it says which backend (git or ledger) and write dialect
    the store uses, and why.

    Ledger: lines and hash chain, blobs, plain files against the head. Git: an interrupted write,
    temp files, approval records against their goldens (a golden another tool changed is a note:
    its history shows it unattributed). Repairs (unless --no-repair, or in CI) what a crash leaves.
    Never deletes what it cannot prove an interrupted write left: that goes to .golden/quarantine/
    with a report, and fsck exits 1. Exit 1 when an error remains.
    """
    from ..store.safety import in_ci

    golden_store = open_store(store, dialect, generation)
    if in_ci() and not no_repair:
        say("CI is set: reporting only, nothing repaired (CI never writes to the golden store)", err=True)
    problems = golden_store.fsck(repair=not no_repair, cases=cases or None)
    remaining = [p for p in problems if not p.repaired and p.severity == "error"]
    if as_json:
        echo_json({"store": golden_store.describe(), "problems": [p.to_json() for p in problems],
                   "errors": len(remaining)})
    else:
        say(store_line(golden_store))
        for problem in problems:
            say(_problem_line(problem))
        checked = len(cases) if cases else len(golden_store.cases())
        notes = sum(p.severity == "note" for p in problems)
        say(f"fsck: {checked} cases, {len(problems) - notes} problems "
                   f"({sum(p.repaired for p in problems)} repaired, {len(remaining)} errors left)"
                   + (f", {notes} notes" if notes else ""))
    raise typer.Exit(EXIT_DIFFERENCE if remaining else EXIT_PASS)


@handles_errors
def adopt(
    cases: Annotated[list[str] | None, typer.Argument(metavar="[CASES]...",
                                                         help="Cases whose golden files to record.")] = None,
    every: Annotated[bool, typer.Option("--all", help="Every case of the store; cases without golden files "
                                                      "or with nothing new to record are skipped and listed.")] = False,
    store: StoreOpt = None,
    approver: ApproverOpt = None,
    reason: Annotated[str, typer.Option("--reason", metavar="TEXT")] = "imported existing golden files",
    allow_ci: AllowCiOpt = False,
) -> None:
    """Record the golden files as they are (exact bytes, files untouched): in a ledger store v1
    "imported" for a Megatron folder without history, or a new version for files changed outside the
    store; in a git store an approval record for each golden no record describes.

    All or nothing: every case is checked first, and nothing is written when one cannot be adopted."""
    if bool(cases) == every:
        raise fail("give CASES or --all")
    golden_store = open_store(store)
    report = golden_store.adopt_all(None if every else cases, approver=approver, reason=reason,
                                    skip_empty=every, allow_ci=allow_ci)
    for case, version in report.adopted:
        say(f"{case}: recorded {version.label} ({len(version.files)} files)")
    for case, why in report.skipped:
        say(f"{case}: skipped: {why}")
    say(f"adopted {len(report.adopted)} cases, skipped {len(report.skipped)}")


@handles_errors
def migrate(store: StoreOpt = None, allow_ci: AllowCiOpt = False) -> None:
    """Move a ledger history inside a git work tree into git: each golden's approval record is written
    beside it from the ledger entry that wrote its bytes, then the ledger and its blobs are removed.
    Commit the result; older versions keep their provenance through the ledger as committed."""
    from ..store.migrate import migrate_to_git

    golden_store = open_store(store)
    for done in migrate_to_git(golden_store, allow_ci=allow_ci):
        recorded = ", ".join(f"{name} (from ledger v{number})" for name, number in done.recorded) or "none"
        say(f"{done.case}: records for {recorded}; removed {len(done.removed)} ledger files")
        for name in done.unattributed:
            say(f"{done.case}: {name} matches no ledger entry: no record (unattributed)")
    say(store_line(open_store(store)))
