"""``golden diff``: compare a run with its golden, or any two of golden files, artifacts, versions.

Typed options plus one library call (``goldens.compare.compare``); loading lives in
``goldens.diff_inputs`` and only typer is imported at module level (``golden --help`` stays fast).
Exit 0 pass, 1 a regression/difference, 2 usage or input error.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .cli_common import console, fail, handles_errors, show_table

FORMATS = ("table", "json", "csv", "md")

TargetsArg = Annotated[Optional[list[str]], typer.Argument(
    metavar="[ARTIFACT|RUN_DIR] | REFERENCE CANDIDATE",
    help="One run (artifact.json, its folder, or its id under runs/) to compare with the store's golden; "
         "or two operands — golden files, artifacts or versions (CASE@v3 CASE@v7) — reference first. "
         "None: the newest run under runs/.", show_default=False)]
CaseOpt = Annotated[Optional[str], typer.Option("--case", metavar="NAME", help="Case (default: the run's).")]
EnvOpt = Annotated[Optional[str], typer.Option("--env", metavar="NAME", help="Golden env: dev, lts, … (default: the run's, or the only one).")]
PlatformOpt = Annotated[Optional[str], typer.Option("--platform", metavar="NAME", help="Golden platform: dgx_h100, cpu, … (default: the run's, or the only one).")]
StoreOpt = Annotated[Optional[Path], typer.Option("--store", metavar="PATH", envvar="GOLDEN_STORE",
                                                  help="Golden store [default: ./cases].", show_default=False)]
FormatOpt = Annotated[str, typer.Option("--format", "-f", metavar="|".join(FORMATS),
                                        help="table (rich, for terminals), json (the result, for reports), "
                                             "csv (one row per step), md (markdown).")]
PolicyOpt = Annotated[Optional[str], typer.Option("--policy", metavar="megatron|default|FILE",
                                                  help="Policy preset or YAML policy file; the case's case.yaml "
                                                       "metrics: overlay the preset, the file overlays both.")]
ExactOpt = Annotated[Optional[bool], typer.Option("--exact/--approx",
                                                  help="Force the exact regime (as if fingerprints matched) or the "
                                                       "approximate one [default: exact only when fingerprints are equal].",
                                                  show_default=False)]


def register(app: typer.Typer) -> None:
    app.command("diff")(diff)


@handles_errors
def diff(targets: TargetsArg = None, case: CaseOpt = None, env: EnvOpt = None, platform: PlatformOpt = None,
         store: StoreOpt = None, fmt: FormatOpt = "table", policy: PolicyOpt = None,
         exact: ExactOpt = None) -> None:
    """Compare a run with its golden (or REFERENCE with CANDIDATE) under tolerance policies."""
    if fmt not in FORMATS:
        raise fail(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    targets = list(targets or [])
    if len(targets) > 2:
        raise fail(f"give at most two operands (REFERENCE CANDIDATE), got {len(targets)}")
    from . import diff_inputs as di
    from .case import check_name
    from .compare import compare
    from .errors import FormatError

    for name, what in ((case, "case"), (env, "env"), (platform, "platform")):
        if name is not None:
            check_name(name, what)
    di.load_policies(policy)  # a bad --policy is reported before any file is read
    runs_dir = Path(di.RUNS_DIR)
    if len(targets) == 2:
        reference = di.load_operand(targets[0], store_root=store, env=env, platform=platform, runs_dir=runs_dir)
        candidate = di.load_operand(targets[1], store_root=store, env=env, platform=platform, runs_dir=runs_dir)
    else:
        if targets:
            candidate = di.load_operand(targets[0], store_root=store, env=env, platform=platform, runs_dir=runs_dir)
        else:
            candidate = di.load_file(di.newest_run(runs_dir, case))
        if candidate.artifact is None:
            raise FormatError("one operand must be a run (artifact.json or its folder); "
                              "to compare two golden files give both", path=targets[0])
        the_case = check_name(case or candidate.case)
        golden_store = di.open_store(store)
        target_env, target_platform = env or candidate.env, platform or candidate.platform
        if not di.has_golden(golden_store, the_case, target_env, target_platform):
            stage_for_review(golden_store, candidate, target_env, target_platform, None)
            print(f"no golden: case {the_case!r} has none for {target_env or '*'}/{target_platform or '*'} yet",
                  file=sys.stderr)
            raise typer.Exit(1)
        reference = di.load_store_golden(golden_store, the_case, target_env, target_platform)
    notes = tuple(f"candidate: {n}" for n in candidate.notes) + tuple(f"reference: {n}" for n in reference.notes)
    the_case = case or reference.case or candidate.case
    case_policy, case_source = di.case_metrics(store, the_case)
    if case_policy is not None and len(targets) == 2 and case is None \
            and all(_loose_file_outside(text, loaded, case_source) for text, loaded in zip(targets, (reference, candidate))):
        # Two golden files from elsewhere (a Megatron checkout) that merely share a case name
        # with the store: that case's tolerances were set for its own goldens, not these.
        notes += (f"policy: {case_source} not applied (the golden files are outside its case folder; "
                  f"--case {the_case} applies it)",)
        case_policy, case_source = None, None
    policies = di.load_policies(policy, case_policy=case_policy, case_source=case_source)
    force = None if exact is None else ("exact" if exact else "approx")
    # The resume check asks whether a run's resumed phase reproduces its own phase 1 bit for bit.
    # A golden's _2nd file need not (Megatron records it from another job), and the versions'
    # difference is what a golden-vs-golden diff is about.
    run_candidate = candidate.artifact is not None
    if not run_candidate and 2 in candidate.side.phases:
        notes += ("resume check not run: the candidate is a golden, not a run",)
    result = compare(reference.side, candidate.side, policies, force=force, case=the_case,
                     env=env or reference.env or candidate.env,
                     platform=platform or reference.platform or candidate.platform, notes=notes,
                     check_resume=run_candidate)
    emit(result, fmt)
    if len(targets) < 2 and not result.passed:
        stage_for_review(golden_store, candidate, reference.env, reference.platform, result)
    raise typer.Exit(result.exit_code)


def _loose_file_outside(text: str, loaded: Any, case_yaml: str | None) -> bool:
    """An operand that is a plain golden file lying outside the folder of ``case_yaml``."""
    from . import diff_inputs as di

    if loaded.artifact is not None or case_yaml is None or di._is_version_ref(text):
        return False
    return not Path(text).resolve().is_relative_to(Path(case_yaml).resolve().parent)


def stage_for_review(store: Any, run: Any, env: str | None, platform: str | None, result: Any) -> None:
    """A failing run (or one without a golden) becomes the pending candidate for review —
    outside CI only (``approve.stage_candidate`` writes nothing in CI). Never changes the exit code."""
    from .approve import stage_candidate
    from .errors import GoldenError

    if env is None or platform is None or run.artifact is None:
        return
    try:
        staged = stage_candidate(store, run.artifact, env, platform, result)
    except GoldenError as exc:
        print(f"note: not staged for review: {exc}", file=sys.stderr)
        return
    if staged is not None:
        print(f"staged {staged.target} ({staged.run_id}) for review: golden review / golden approve",
              file=sys.stderr)


def emit(result: Any, fmt: str) -> None:
    if fmt == "json":
        import json

        sys.stdout.write(json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n")
    elif fmt == "csv":
        result.frame().to_csv(sys.stdout, index=False)
    elif fmt == "md":
        from reports.document import Report
        from reports.markdown import result_markdown

        sys.stdout.write(result_markdown(Report.of(result)) + "\n")
    else:
        print_table(result)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.3g} %"


def print_table(result: Any) -> None:
    """The rich terminal view: one row per metric, then why, regime, resume check, drift, notes."""
    from rich.markup import escape
    from rich.table import Table

    from .result import Verdict, full_precision

    out = console()
    style = {Verdict.PASS: "green", Verdict.FAIL: "bold red", Verdict.MISSING: "red",
             Verdict.NEW: "cyan", Verdict.SKIPPED: "dim"}
    where = "/".join(x for x in (result.env, result.platform) if x)
    title = f"{result.case or ''} {where}".strip() or "golden diff"
    table = Table(title=escape(title), title_justify="left")
    for column in ("phase", "metric", "verdict", "failing", "worst step", "golden", "actual", "Δ%", "mean rel Δ"):
        if column in ("metric", "verdict"):
            table.add_column(column, justify="left", overflow="fold")
        else:  # numbers: never split over lines; in a terminal too narrow for them, cut visibly (…)
            table.add_column(column, justify="right", no_wrap=True, overflow="ellipsis")
    rows = [(m, "") for m in result.metric_verdicts()]
    if result.resume is not None:
        rows += [(m, "resume ") for m in result.resume.metrics]
    why = []
    for m, prefix in rows:
        verdict = f"[{style[m.verdict]}]{m.verdict.value}{'' if m.passed else ' ✗'}[/]"
        failing = f"{m.failing_steps}/{m.allowed_failing_steps}/{m.total_steps}" if m.total_steps else "—"
        table.add_row(f"{prefix}{m.phase}", escape(m.metric), verdict, failing,
                      "—" if m.worst_step is None else str(m.worst_step), full_precision(m.golden_value),
                      full_precision(m.actual_value), _pct(m.delta_pct),
                      _pct(None if m.mean_rel_diff is None else 100.0 * m.mean_rel_diff))
        why.append(f"  {prefix}{m.phase} {escape(m.metric)}: [{style[m.verdict]}]{escape(m.explanation)}[/]"
                   f"\n      [dim]rule: {escape(m.rule.text)}[/]")
    show_table(out, table)
    out.print("[dim]failing = failing/allowed/judged steps; Δ% at the worst step (summary: of the reduced values)[/]")
    out.print("why:")
    for line in why:
        out.print(line)
    fp = result.fingerprint
    out.print(f"regime: {'exact' if fp.exact_applied else 'approx'} — {escape(fp.reason)}")
    if result.resume is not None:
        r = result.resume
        out.print(f"resume check: [{style[r.verdict]}]{r.verdict.value}[/] — {escape(r.explanation)}")
    drift = result.drift
    lines = [f"metric added: {name}" for name in drift.metrics_added]
    lines += [f"metric removed: {name}" for name in drift.metrics_removed]
    lines += [f"grid of {g.metric!r} (phase {g.phase}): {dict(g.reference)} → {dict(g.candidate)}"
              for g in drift.grid_changes]
    lines += [f"argument {a.name} {a.change}: {a.reference!r} → {a.candidate!r}" for a in drift.arg_changes]
    for line in lines:
        out.print(f"drift: {escape(line)}")
    for note in (*drift.notes, *result.warnings):
        out.print(f"[yellow]note:[/] {escape(note)}")
    color = "green" if result.passed else "bold red"
    out.print(f"[{color}]{result.verdict.value.upper()}[/] {escape(result.candidate)} vs "
              f"{escape(result.reference)} (policy {escape(result.policy)})")
