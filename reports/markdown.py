"""Markdown for pull-request comments and GitHub step summaries.

Every name that comes from input goes through ``text.md`` (inert in GitHub Markdown); the
output stays under GitHub's comment limit by dropping whole rows and sections (``budget``).
"""
from __future__ import annotations

from reports import text as fmt
from reports.budget import GITHUB_COMMENT_LIMIT, Budget
from reports.changes import BUCKETS, GoldenChanges

_NOTE_ROOM = 400  # kept free for the closing notes after a budgeted table


def changes_markdown(changes: GoldenChanges, *, limit: int = GITHUB_COMMENT_LIMIT) -> str:
    """The golden-change table: per metric the spread and histogram, per file the signed diffs."""
    out = Budget(limit)
    rows, summary = changes.rows, changes.summary
    files = changes.changed_files
    out.add(f"## Golden changes: {fmt.md(changes.base_label)} → {fmt.md(changes.head_label)}\n\n")
    out.add(f"**{len(files)} changed** golden file(s) · {len(changes.unchanged)} unchanged · "
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
    by_file = {name: group for name, group in rows.groupby("file", sort=False)}
    table_rows = []
    largest = []
    for name, group in by_file.items():
        diffs = dict(zip(group["metric"], group["mean_rel_diff"]))
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
