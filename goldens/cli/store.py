"""``golden validate · show · history · fsck · adopt``: the golden files and their history.

Each command is typed options plus one library call (goldens.validate, goldens.store); numpy and
friends are imported inside the bodies so ``golden --help`` stays light. Output is plain text
(values printed with ``repr``: full precision, never rounded, never truncated by a terminal width)
or ``--json``.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ..errors import EXIT_DIFFERENCE, EXIT_INPUT, EXIT_PASS
from .common import echo_json, fail, handles_errors
from .options import AllowCiOpt, ApproverOpt, JsonOpt, StoreOpt, open_store

if TYPE_CHECKING:
    from ..model import GoldenKey, GoldenSet
    from ..store import LedgerEntry, Problem


# ---------------------------------------------------------------- validate

@handles_errors
def validate(
    paths: Annotated[Optional[list[Path]], typer.Argument(
        metavar="[PATHS]...", help="Golden files, case files (case.yaml, model_config.yaml) or folders to "
                                   "search for them [default: the store].")] = None,
    as_json: JsonOpt = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 on warnings too.")] = False,
    store: StoreOpt = None,
) -> None:
    """Classify golden files ok / warning / error, each with a reason (usable as a pre-commit hook).

    Without PATHS it validates the store (--store, else the usual store) and also checks its
    history read-only: ledger chain, blobs, plain files against the ledger. Exit 0 when nothing worse
    than a warning is found (1 with --strict), 1 when any file has an error, 2 for a usage error
    such as a path that does not exist.
    """
    from ..validate import ERROR, OK, WARNING, Finding, FileReport, ValidationSummary, validate_paths

    targets = list(paths or [])
    golden_store = open_store(store) if store is not None or not targets else None
    if not targets:
        targets = [golden_store.root]
    summary = validate_paths(targets)
    if golden_store is not None and golden_store.root.is_dir():
        problems = golden_store.fsck(repair=False)
        extra = [FileReport(p.path or p.case, "store", (Finding(p.severity, f"{p.case}: {p.message}"),))
                 for p in problems]
        summary = ValidationSummary(summary.reports + tuple(extra))
    if as_json:
        echo_json(summary.to_json())
    else:
        for report in summary.reports:
            typer.echo(f"{report.status.upper():8} {report.path}")
            for finding in report.findings:
                typer.echo(f"         {finding.severity}: {finding.message}")
        typer.echo(f"{len(summary.reports)} files: {summary.count(OK)} ok, {summary.count(WARNING)} warning, "
                   f"{summary.count(ERROR)} error")
    worst = summary.worst
    failed = worst == ERROR or (strict and worst == WARNING)
    raise typer.Exit(EXIT_DIFFERENCE if failed else EXIT_PASS)


# ---------------------------------------------------------------- show

def _selected(goldens: "dict[GoldenKey, GoldenSet]", env: str | None, platform: str | None,
              phase: int | None) -> "dict[GoldenKey, GoldenSet]":
    return {k: g for k, g in goldens.items()
            if (env is None or k.env == env) and (platform is None or k.platform == platform)
            and (phase is None or k.phase == phase)}


def _table(golden: "GoldenSet", names: list[str]) -> list[str]:
    """Rows of step | metric… with every value as ``repr`` (shortest text that reads back exactly)."""
    import numpy as np

    series = [golden.metrics[n] for n in names]
    steps = np.unique(np.concatenate([s.steps for s in series])) if series else np.empty(0, np.int64)
    columns = [["step", *map(str, steps.tolist())]]
    for s in series:
        by_step = dict(zip(s.steps.tolist(), s.values.tolist()))
        columns.append([s.name, *(repr(by_step[t]) if t in by_step else "" for t in steps.tolist())])
    widths = [max(map(len, col)) for col in columns]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in zip(*columns)]


def _fingerprints(entries: "list[LedgerEntry]", upto: int) -> dict[str, str | None]:
    """filename → fingerprint of the last version ≤ ``upto`` that wrote it."""
    out: dict[str, str | None] = {}
    for entry in entries[:upto]:
        for filename, record in entry.files.items():
            out[filename] = entry.fingerprint if record.hash is not None else None
    return out


@handles_errors
def show(
    ref: Annotated[str, typer.Argument(metavar="CASE[@vN]", help="A case, optionally at a ledger version.")],
    env: Annotated[Optional[str], typer.Option("--env", metavar="NAME", help="Only this env (dev, lts, …).")] = None,
    platform: Annotated[Optional[str], typer.Option("--platform", metavar="NAME", help="Only this platform.")] = None,
    metric: Annotated[Optional[list[str]], typer.Option("--metric", metavar="NAME",
                                                        help="Only this metric (repeatable).")] = None,
    phase: Annotated[Optional[int], typer.Option("--phase", min=1, max=2, help="Only this phase (2 = _2nd).")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a case's golden series at full precision (current files, or CASE@vN from the history)."""
    from ..formats import metric_to_json
    from ..store import parse_case_ref

    case, version = parse_case_ref(ref)
    golden_store = open_store(store)
    entries = golden_store.history(case)
    if version is None:
        goldens = {k: golden_store.read(k) for k in golden_store.keys(case)}
        origin = (f"current files (ledger head v{entries[-1].version})" if entries
                  else "current files (no history yet)")
    else:
        goldens = golden_store.read_version(case, version)
        entry = entries[version - 1]
        origin = f"v{version}: {entry.action} by {entry.approver} at {entry.time}"
    chosen = _selected(goldens, env, platform, phase)
    if not chosen:
        have = ", ".join(k.filename() for k in goldens) or "none"
        raise fail(f"{ref}: no golden matches the filters (has: {have})", EXIT_INPUT)
    if metric:
        unknown = [m for m in metric if not any(m in g.metrics or m in g.scalars for g in chosen.values())]
        if unknown:
            raise fail(f"{ref}: no metric {unknown[0]!r} in the selected goldens", EXIT_INPUT)
    fingerprints = _fingerprints(entries, version or len(entries))
    shown = []
    for key, golden in chosen.items():
        names = [n for n in golden.metrics if not metric or n in metric]
        scalars = {n: v for n, v in golden.scalars.items() if not metric or n in metric}
        shown.append((key, golden, names, scalars))
    if as_json:
        echo_json({"case": case, "version": version, "origin": origin, "goldens": [
            {"file": key.filename(), "env": key.env, "platform": key.platform, "phase": key.phase,
             "fingerprint": fingerprints.get(key.filename()),
             "metrics": {n: metric_to_json(golden.metrics[n]) for n in names},
             "scalars": {n: (v if v == v and abs(v) != float("inf") else repr(v)) for n, v in scalars.items()}}
            for key, golden, names, scalars in shown]})
        return
    typer.echo(f"{case} — {origin}")
    for key, golden, names, scalars in shown:
        typer.echo("")
        typer.echo(f"{key.filename()}  (env {key.env}, platform {key.platform}, phase {key.phase}; "
                   f"fingerprint {fingerprints.get(key.filename()) or '-'})")
        for name in names:
            s = golden.metrics[name]
            typer.echo(f"  {name}: {len(s)} steps, start_step {s.start_step}, end_step {s.end_step}, "
                       f"step_interval {s.step_interval}")
        for line in _table(golden, names) if names else ():
            typer.echo(f"  {line}")
        for name, value in scalars.items():
            typer.echo(f"  {name} = {value!r}")


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


@handles_errors
def history(
    case: Annotated[str, typer.Argument(metavar="CASE")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The case's ledger: every version with who, when, why, from which run, and what changed
    (for a selective approval, per file: which metrics it took from the run, which it kept)."""
    from ..approve import recorded_selection
    from .review_screen import took_and_kept

    entries = open_store(store).history(case)
    if as_json:
        echo_json({"case": case, "entries": [e.to_json() for e in entries]})
        return
    if not entries:
        typer.echo(f"{case}: no history yet (plain files only; `golden adopt {case}` records them as v1)")
        return
    for entry in entries:
        run = f"  run {entry.source_run_id}" if entry.source_run_id else ""
        fp = f"  fingerprint {entry.fingerprint[:16]}" if entry.fingerprint else ""
        typer.echo(f"v{entry.version}  {entry.time}  {entry.action}  by {entry.approver}{run}{fp}")
        typer.echo(f"    reason: {entry.reason}")
        selection = recorded_selection(entry.provenance)
        for filename, record in entry.files.items():
            before = record.previous_hash[:12] if record.previous_hash else "(new)"
            after = record.hash[:12] if record.hash else "(removed)"
            took = f"  {took_and_kept(*selection[filename])}" if filename in selection else ""
            typer.echo(f"    {filename}  {before} → {after}{took}")
            for name, change in (record.summary or {}).items():
                typer.echo(f"        {name}: {_change_text(change)}")


# ---------------------------------------------------------------- fsck / adopt

def _problem_line(problem: "Problem") -> str:
    state = "repaired" if problem.repaired else problem.severity
    return f"{state:8} {problem.case}: {problem.message}"


@handles_errors
def fsck(
    cases: Annotated[Optional[list[str]], typer.Argument(metavar="[CASES]...", help="Only these cases.")] = None,
    store: StoreOpt = None,
    no_repair: Annotated[bool, typer.Option("--no-repair", help="Only report; change nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Integrity check of the history: ledger lines and hash chain, blobs, plain files against the head.

    Repairs (unless --no-repair, or in CI) what a crash leaves: a torn ledger line, an interrupted
    write, its temp files and blobs. Never deletes what it cannot prove an interrupted write left:
    that goes to .golden/quarantine/ with a report, and fsck exits 1. Exit 1 when an error remains.
    """
    from ..store.safety import in_ci

    golden_store = open_store(store)
    if in_ci() and not no_repair:
        typer.echo("CI is set: reporting only, nothing repaired (CI never writes to the golden store)", err=True)
    problems = golden_store.fsck(repair=not no_repair, cases=cases or None)
    remaining = [p for p in problems if not p.repaired and p.severity == "error"]
    if as_json:
        echo_json({"problems": [p.to_json() for p in problems], "errors": len(remaining)})
    else:
        for problem in problems:
            typer.echo(_problem_line(problem))
        checked = len(cases) if cases else len(golden_store.cases())
        typer.echo(f"fsck: {checked} cases, {len(problems)} problems "
                   f"({sum(p.repaired for p in problems)} repaired, {len(remaining)} errors left)")
    raise typer.Exit(EXIT_DIFFERENCE if remaining else EXIT_PASS)


@handles_errors
def adopt(
    cases: Annotated[list[str], typer.Argument(metavar="CASES...", help="Cases whose golden files to record.")],
    store: StoreOpt = None,
    approver: ApproverOpt = None,
    reason: Annotated[str, typer.Option("--reason", metavar="TEXT")] = "imported existing golden files",
    allow_ci: AllowCiOpt = False,
) -> None:
    """Record the golden files as they are (exact bytes, files untouched): v1 "imported" for a
    Megatron folder without history, or a new version for files changed outside the store."""
    golden_store = open_store(store)
    for case in cases:
        entry = golden_store.adopt(case, approver=approver, reason=reason, allow_ci=allow_ci)
        typer.echo(f"{case}: recorded v{entry.version} ({len(entry.files)} files)")
