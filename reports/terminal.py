"""The terminal view of a comparison result (rich): what ``golden diff`` and ``golden check`` print.

A renderer like the others in this package: ``result_table`` is the table of metrics,
``result_lines`` the rich-markup lines printed under it (why, regime, resume check, drift, notes,
the verdict). The CLI prints both on its console, whose width rules for terminals and logs live
in ``goldens.cli.common``.
"""
from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from goldens.core.result import ComparisonResult, MetricVerdict, Verdict
from reports import text as fmt
from reports.document import approve_command, drift_lines, failing_summary, verdict_line


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.3g} %"


STYLE = {Verdict.PASS: "green", Verdict.FAIL: "bold red", Verdict.MISSING: "red", Verdict.NEW: "cyan",
         Verdict.SKIPPED: "dim"}


def _rows(result: ComparisonResult) -> list[tuple[MetricVerdict, str]]:
    rows = [(m, "") for m in result.metric_verdicts()]
    if result.resume is not None:
        rows += [(m, "resume ") for m in result.resume.metrics]
    return rows


def result_table(result: ComparisonResult) -> Table:
    """One row per metric verdict (the resume check's rows last)."""
    style = STYLE
    where = "/".join(x for x in (result.env, result.platform) if x)
    title = f"{result.case or ''} {where}".strip() or "golden diff"
    table = Table(title=escape(title), title_justify="left")
    for column in ("phase", "metric", "verdict", "failing", "worst step", "golden", "actual", "Δ%", "mean rel Δ"):
        if column in ("metric", "verdict"):
            table.add_column(column, justify="left", overflow="fold")
        else:  # numbers: never split over lines; in a terminal too narrow for them, cut visibly (…)
            table.add_column(column, justify="right", no_wrap=True, overflow="ellipsis")
    for m, prefix in _rows(result):
        verdict = ("[yellow]report only, out of tolerance[/]" if m.report_only_out_of_tolerance
                   else f"[{style[m.verdict]}]{m.verdict.value}{'' if m.passed else ' ✗'}[/]")
        failing = f"{m.failing_steps}/{m.allowed_failing_steps}/{m.total_steps}" if m.total_steps else "—"
        table.add_row(f"{prefix}{m.phase}", escape(m.metric), verdict, failing,
                      "—" if m.worst_step is None else str(m.worst_step), *fmt.golden_actual(m), _pct(m.delta_pct),
                      _pct(None if m.mean_rel_diff is None else 100.0 * m.mean_rel_diff))
    return table


def result_lines(result: ComparisonResult, store: str | None = None) -> list[str]:
    """What is printed under the table, as rich markup (user data escaped); ``store`` as the user
    gave it, for the approve command of a failing case."""
    style = STYLE
    out = ["[dim]failing = failing/allowed/judged steps; Δ% at the worst step (summary: of the reduced values)[/]",
           "why:"]
    for m, prefix in _rows(result):
        out.append(f"  {prefix}{m.phase} {escape(m.metric)}: [{style[m.verdict]}]{escape(m.explanation)}[/]"
                   f"\n      [dim]rule: {escape(m.rule.text)}[/]")
        if m.samples:
            out.append(f"      {escape(fmt.samples_caption(m))}:")
            out += ["        " + escape(", ".join(f"{h} {v}" for h, v in zip(fmt.SAMPLE_HEADERS, row, strict=True)))
                    for row in fmt.sample_rows(m)]
    fp = result.fingerprint
    out.append(f"regime: {'exact' if fp.exact_applied else 'approx'} — {escape(fp.reason)}")
    out += [f"case rules: {escape(choice)}" for choice in result.choices]
    if result.resume is not None:
        r = result.resume
        out.append(f"resume check: [{style[r.verdict]}]{r.verdict.value}[/] — {escape(r.explanation)}")
    drift = result.drift
    lines = [f"metric added: {name}" for name in drift.metrics_added]
    lines += [f"metric removed: {name}" for name in drift.metrics_removed]
    lines += [f"grid of {g.metric!r} (phase {g.phase}): {dict(g.reference)} → {dict(g.candidate)}"
              for g in drift.grid_changes]
    lines += [f"argument {a.name} {a.change}: {a.reference!r} → {a.candidate!r}" for a in drift.arg_changes]
    out += [f"drift: {escape(line)}" for line in lines]
    out += [f"[yellow]note:[/] {escape(note)}" for note in (*drift.notes, *result.warnings)]
    command = approve_command(result, store)
    if command:
        out.append(f"to approve (after review; the reason is yours to write): {escape(command)}")
    color = "green" if result.passed else "bold red"
    out.append(f"[{color}]{escape(verdict_line(result))}[/] {escape(result.candidate)} vs "
               f"{escape(result.reference)} (policy {escape(result.policy)})")
    return out


def pass_line(result: ComparisonResult) -> str:
    """A pass in one line (rich markup): verdict, target, what passed, what was compared under which
    policy — e.g. 'PASS tiny dev/cpu · 2 metric(s) passed; resume check passed · RUN vs GOLDEN (policy
    default) · details: -v'."""
    where = " ".join(x for x in (result.case, "/".join(x for x in (result.env, result.platform) if x)) if x)
    notes = len(drift_lines(result)) + len(result.warnings)
    said = f" · {notes} note(s)" if notes else ""
    return (f"[green]{result.verdict.value.upper()}[/] {escape(where)} · {escape(failing_summary(result))}{said} · "
            f"{escape(result.candidate)} vs {escape(result.reference)} (policy {escape(result.policy)}) "
            f"[dim]· details: -v[/]")
