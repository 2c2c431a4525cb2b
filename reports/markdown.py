"""Markdown for pull-request comments and GitHub step summaries.

Every name that comes from input goes through ``text.md`` (inert in GitHub Markdown); the
output stays under GitHub's comment limit by dropping whole rows and sections (``budget``).
"""
from __future__ import annotations

import html

from goldens.core.result import ComparisonResult, MetricVerdict
from reports import text as fmt
from reports.budget import GITHUB_COMMENT_LIMIT, Budget, table
from reports.changes import BUCKETS, GoldenChanges
from reports.document import (
    ICONS,
    CaseEntry,
    Report,
    approve_command,
    drift_lines,
    environment_note,
    failing_line,
    failing_summary,
    finding_where,
    headline,
    out_of_tolerance,
    verdict_label,
)

_NOTE_ROOM = 400  # kept free for the closing notes after a budgeted table
METRIC_HEADERS = ["metric", "rule", "verdict", "failing steps", "worst step", "golden → actual", "Δ%", "mean rel. diff"]
METRIC_ALIGN = ["l", "l", "l", "r", "r", "r", "r", "r"]


# ---------------------------------------------------------------- comparison results

def result_markdown(report: Report, *, limit: int = GITHUB_COMMENT_LIMIT) -> str:
    """Headline, a one-row-per-case summary, then each case's details (failing first) while they fit."""
    out = Budget(limit)
    out.add(f"## {headline(report)}\n\n")
    failing_text = failing_line(report)
    if failing_text:
        out.add(f"**{fmt.md(failing_text)}**\n\n")
    if report.findings:
        _findings_section(out, report)
    ordered = report.by_importance()
    summary_rows = [[ICONS[e.result.verdict], fmt.md(e.title), fmt.md(failing_summary(e.result)),
                     _resume_cell(e.result), "exact" if e.result.exact_applied else "approx"]
                    for e in ordered]
    details_room = min(out.left // 2, 2000)  # room for at least the first failing case's details
    failing_cases = len(report.failed)

    def not_listed(n: int) -> str:
        failing_among = max(0, failing_cases - (len(ordered) - n))
        return f"\n_{n} more case(s) not listed ({failing_among} of them failing)._\n"

    omitted_cases = out.add_table(["", "case", "metrics", "resume check", "regime"], summary_rows,
                                  reserve=details_room, omitted_note=not_listed)
    out.add("\n")
    listed = ordered[:len(ordered) - omitted_cases]
    shown = 0
    for position, entry in enumerate(listed):
        reserve = _NOTE_ROOM if position < len(ordered) - 1 else 0
        if out.add_if_room(_case_block(entry, report.store), reserve=reserve) or (
                not entry.result.passed and out.add_if_room(_case_block(entry, report.store, failures_only=True),
                                                            reserve=reserve)):
            shown += 1
    left_out = len(ordered) - shown
    if left_out:
        out.add(f"_Details of {left_out} case(s) left out to stay within GitHub's comment limit; "
                "the HTML, JUnit and JSON reports hold them all._\n")
    return out.text()


FINDING_HEADERS = ["kind", "target", "file", "why"]


def _findings_section(out: Budget, report: Report) -> None:
    """What was not judged, before the cases: each finding fails the check as a failing case does."""
    found = report.findings
    out.add(f"### Findings: {len(found)} (candidate files not judged)\n\n")
    rows = [[fmt.md(f.kind), fmt.md(finding_where(f)), fmt.md(f.path), fmt.md(f.message)] for f in found]
    out.add_table(FINDING_HEADERS, rows, reserve=min(out.left // 2, 4000),
                  omitted_note=lambda n: f"\n_{n} more finding(s) not listed; findings.json, the HTML, JUnit "
                                         "and JSON reports hold them all._\n")
    out.add("\n")


def _resume_cell(result: ComparisonResult) -> str:
    if result.resume is None:
        return "—"
    return f"{ICONS[result.resume.verdict]} {result.resume.verdict.value}"


def _metric_row(m: MetricVerdict) -> list[str]:
    change = " → ".join(fmt.golden_actual(m))
    # how many steps broke the rule against how many it allows: the verdict's reason at a glance
    failing = f"{m.failing_steps} / {m.total_steps} (allowed {m.allowed_failing_steps})" if m.total_steps else "—"
    return [fmt.md(m.metric), fmt.md(m.rule.text), verdict_label(m), failing,
            "—" if m.worst_step is None else str(m.worst_step), change,
            fmt.percent(m.delta_pct), fmt.signed(m.mean_rel_diff)]


def _samples_block(m: MetricVerdict) -> str:
    """The failing samples of one metric (Megatron PR #7321): error, tolerance and step of each."""
    rows = [list(row) for row in fmt.sample_rows(m)]
    return (f"_{fmt.md(fmt.samples_caption(m))}_\n\n"
            + table(list(fmt.SAMPLE_HEADERS), rows, ["r"] * len(fmt.SAMPLE_HEADERS)) + "\n")


def _case_block(entry: CaseEntry, store: str | None = None, *, failures_only: bool = False) -> str:
    """One case in a collapsible section (open when it failed): the approve command of a
    failing case, and the report-only metrics a pass would otherwise hide, come first."""
    r = entry.result
    is_open = " open" if not r.passed else ""
    parts = [f"<details{is_open}><summary>{ICONS[r.verdict]} <b>{fmt.md_html(entry.title)}</b>: {r.verdict.value}"
             f" ({fmt.md_html(failing_summary(r))})</summary>\n\n"]
    outside = out_of_tolerance(r)
    if outside:
        listed = ", ".join(f"{fmt.md(m.metric)} ({fmt.percent(m.delta_pct)})" for m in outside)
        parts.append(f"**{len(outside)} report-only metric(s) out of tolerance** (reported, not judged: "
                     f"they cannot fail this case): {listed}\n\n")
    command = approve_command(r, store)
    if command:
        # <pre> rather than a fence: its text is HTML-escaped like every other input-derived string
        parts.append("**To approve** these values as the new golden (after review; the reason is yours to "
                     f"write):\n\n<pre><code>{html.escape(command)}</code></pre>\n\n")
    note = environment_note(r)
    if note:
        parts.append(f"> {fmt.md(note)}\n\n")
    else:
        parts.append("Same environment fingerprint as the golden: exact comparison.\n\n")
    if r.choices:
        parts.append("**Case rules:**\n" + "".join(f"- {fmt.md(c)}\n" for c in r.choices) + "\n")
    for phase in r.phases:
        metrics = [m for m in phase.metrics if not (failures_only and m.passed)]
        if not metrics:
            continue
        title = "Phase 1 (from scratch)" if phase.phase == 1 else f"Phase {phase.phase} (resumed)"
        parts.append(f"**{title}** against {fmt.md(phase.reference or r.reference)}\n\n")
        parts.append(table(METRIC_HEADERS, [_metric_row(m) for m in metrics], METRIC_ALIGN) + "\n")
        parts += [_samples_block(m) for m in metrics if m.samples]
    if failures_only:
        parts.append("_Passing metrics of this case left out to fit the comment._\n\n")
    if r.resume is not None:
        parts.append(f"**Resume check:** {ICONS[r.resume.verdict]} {r.resume.verdict.value}: "
                     f"{fmt.md(r.resume.explanation)}\n\n")
        failing = [m for m in r.resume.metrics if not m.passed]
        if failing:
            parts.append(table(METRIC_HEADERS, [_metric_row(m) for m in failing], METRIC_ALIGN) + "\n")
    drift = [fmt.md(line) for line in drift_lines(r)]
    if drift:
        parts.append("**Structural drift:**\n" + "".join(f"- {line}\n" for line in drift) + "\n")
    if r.warnings:
        parts.append("**Warnings:**\n" + "".join(f"- {fmt.md(w)}\n" for w in r.warnings) + "\n")
    parts.append("</details>\n\n")
    return "".join(parts)


# ---------------------------------------------------------------- golden changes


def changes_markdown(changes: GoldenChanges, *, limit: int = GITHUB_COMMENT_LIMIT) -> str:
    """The golden-change table: per metric the spread and histogram, per file the signed diffs."""
    out = Budget(limit)
    summary = changes.summary
    files = changes.changed_files
    out.add(f"## Golden changes: {fmt.md(changes.base_label)} → {fmt.md(changes.head_label)}\n\n")
    edge = len(changes.grid_only)
    edge_text = f" ({edge} only at the step grid's edge: no shared value moved)" if edge else ""
    out.add(f"**{len(files)} changed** golden file(s){edge_text} · {len(changes.unchanged)} unchanged · "
            f"{len(changes.added)} added · {len(changes.removed)} removed · "
            f"{len(summary)} metric(s) compared\n\n")
    out.add("Relative difference per (file, metric): the mean of (new − old) / |old| over the steps both "
            "revisions hold; positive means the new golden is larger. Histogram: how many files' "
            "|mean relative difference| falls in each decade.\n\n")
    if summary.empty:
        out.add("No metric changed.\n")
    else:
        out.add("### Per metric\n\n")
        headers = ["metric", "files", "median \\|d\\|", "max \\|d\\|", *(fmt.md(b) for b in BUCKETS)]
        summary_rows = [[fmt.md(r["metric"]), str(r["files"]), fmt.magnitude(r["median_abs"]),
                         fmt.magnitude(r["max_abs"]), *(str(r[b]) for b in BUCKETS)]
                        for r in summary.to_dict("records")]
        out.add_table(headers, summary_rows, align=["l"] + ["r"] * (len(headers) - 1), reserve=_NOTE_ROOM,
                      omitted_note=lambda n: f"\n_{n} more metric(s) not shown._\n")
        out.add("\n")
        _per_file_table(out, changes)
    _lists(out, changes)
    return out.text()


def _per_file_table(out: Budget, changes: GoldenChanges) -> None:
    rows = changes.rows
    metrics = list(changes.summary["metric"])
    table_rows = []
    largest = []
    for name, group in rows.groupby("file", sort=False):
        diffs = dict(zip(group["metric"], group["mean_rel_diff"], strict=True))
        table_rows.append([fmt.md(name), str(int(group["n_steps"].max())),
                           *(fmt.signed(diffs[m]) if m in diffs else "—" for m in metrics)])
        largest.append(float(group["mean_rel_diff"].abs().max()))
    priority = sorted(range(len(table_rows)), key=lambda i: -largest[i])  # biggest movers first
    out.add(f"<details><summary>Per file: signed mean relative difference ({len(table_rows)} file(s))</summary>\n\n")
    headers = ["file", "steps", *(fmt.md(m) for m in metrics)]
    out.add_table(headers, [table_rows[i] for i in priority], align=["l"] + ["r"] * (len(headers) - 1),
                  reserve=_NOTE_ROOM, display_order=lambda kept: sorted(kept, key=lambda k: priority[k]),
                  omitted_note=lambda n: f"\n_{n} file(s) with the smallest changes not shown; "
                                         f"the HTML and JSON reports hold them all._\n")
    out.add("\n</details>\n\n")


def _lists(out: Budget, changes: GoldenChanges) -> None:
    for title, items in (("Added", changes.added), ("Removed", changes.removed), ("Notes", changes.notes)):
        if not items:
            continue
        block = f"**{title}:**\n" + "".join(f"- {fmt.md(item)}\n" for item in items) + "\n"
        if not out.add(block):
            out.add(f"**{title}:** {len(items)} (list too long for a comment)\n\n")
