"""One self-contained HTML file: summary, provenance, per-metric tables and inline SVG plots.

jinja2 with autoescape on renders every input-derived string as text; the only markup marked
safe is the SVG that ``plots`` draws (it never contains input names). A Content-Security-Policy
meta tag forbids scripts and remote loads, so the page works offline and stays inert.
"""
from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from goldens.core.compare import flatten_mapping
from goldens.core.result import MetricVerdict
from reports import text as fmt
from reports.changes import BUCKETS, GoldenChanges, decade_bucket
from reports.document import (
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
)
from reports.plots import metric_svg

# A plot is a few kB and about a millisecond; a huge result keeps its failing metrics' plots (then
# the report-only ones out of tolerance) and the first others, so the page stays a few MB.
MAX_PLOTS = 300
# Above this many cases (a whole tree) the page is light: passing cases are a row of the summary
# table only (no section, no plots); failing ones, and passes hiding a report-only metric out of
# tolerance, keep their details. Each target's full result stays in its own results/ file.
LIGHT_ABOVE = 50
LIGHT_MAX_PLOTS = 100    # a light page plots failing metrics only, the first 100 of them
LIGHT_PLOT_BYTES = 1_000_000  # and stops once its plots hold 1 MB (a 4,000-step plot is ~40 kB)


def _environment() -> Environment:
    return Environment(loader=PackageLoader("reports", "templates"), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True)
class _MetricView:
    verdict: MetricVerdict
    anchor: str
    badge: str        # css class of the verdict badge
    label: str        # its text
    worst_step: str
    golden: str
    actual: str
    delta: str
    delta_pct: str
    mean_rel_diff: str
    svg: Markup | None
    no_plot_reason: str
    samples: tuple[tuple[str, ...], ...] = ()  # failing samples (Megatron PR #7321), as text
    samples_caption: str = ""


def _slug(index: int, *parts: object) -> str:
    """An id safe in any HTML attribute: a counter plus the name's harmless characters."""
    tail = re.sub(r"[^A-Za-z0-9_-]+", "-", "-".join(str(p) for p in parts)).strip("-")[:60]
    return f"m{index}-{tail}" if tail else f"m{index}"


class _Plotter:
    """Hands out plots until the budget is spent, failing metrics first (see ``_plan``)."""

    def __init__(self, wanted: set[int], limit: int = MAX_PLOTS, budget_bytes: int | None = None):
        self.wanted = wanted
        self.limit = limit
        self.left = budget_bytes  # None: no byte budget
        self.counter = 0

    def view(self, m: MetricVerdict) -> _MetricView:
        self.counter += 1
        anchor = _slug(self.counter, m.metric, f"p{m.phase}")
        svg, reason = None, ""
        if m.steps is None or len(m.steps) == 0:
            reason = "No per-step data in this result."
        elif id(m) not in self.wanted:
            reason = f"Plot left out: the report draws at most {self.limit} plots (failing metrics first)."
        elif self.left is not None and self.left <= 0:
            reason = "Plot left out: this page's plots already hold 1 MB (failing metrics first)."
        else:
            drawn = metric_svg(m, salt=anchor)
            svg = Markup(drawn) if drawn else None
            if self.left is not None:
                self.left -= len(drawn or "")
        golden, actual = fmt.golden_actual(m)
        outside = m.report_only_out_of_tolerance
        return _MetricView(
            verdict=m, anchor=anchor, badge="warn" if outside else m.verdict.value,
            label="out of tolerance" if outside else m.verdict.value,
            worst_step="—" if m.worst_step is None else str(m.worst_step),
            golden=golden, actual=actual,
            delta=fmt.delta(m), delta_pct=fmt.percent(m.delta_pct), mean_rel_diff=fmt.signed(m.mean_rel_diff),
            svg=svg, no_plot_reason=reason,
            samples=tuple(fmt.sample_rows(m)),
            samples_caption=fmt.samples_caption(m) if m.samples else "")


def _plan(entries: tuple[CaseEntry, ...], light: bool) -> set[int]:
    """Which verdicts get a plot: failing ones first, then report-only ones out of tolerance,
    then (unless the page is light) the rest, up to MAX_PLOTS."""
    verdicts = [m for e in entries
                for m in (*e.result.metric_verdicts(), *(e.result.resume.metrics if e.result.resume else ()))
                if m.steps is not None and len(m.steps)]
    ordered = sorted(verdicts, key=lambda m: 0 if not m.passed else 1 if m.report_only_out_of_tolerance else 2)
    if light:
        ordered = [m for m in ordered if not m.passed or m.report_only_out_of_tolerance]
    return {id(m) for m in ordered[:LIGHT_MAX_PLOTS if light else MAX_PLOTS]}


def _detailed(entry: CaseEntry, light: bool) -> bool:
    return not light or not entry.result.passed or bool(out_of_tolerance(entry.result))


def _provenance_rows(entry: CaseEntry) -> list[tuple[str, str, str]]:
    """Flattened provenance of both sides, one row per key either side recorded."""
    reference = flatten_mapping(entry.reference_provenance)
    candidate = flatten_mapping(entry.candidate_provenance)
    keys = list(dict.fromkeys([*reference, *candidate]))
    return [(k, str(reference.get(k, "—")), str(candidate.get(k, "—"))) for k in keys if k != "fingerprint"]


def _case_view(index: int, entry: CaseEntry, plotter: _Plotter, store: str | None,
               light: bool = False) -> dict[str, Any]:
    """One case's section; ``light``: its table lists only what failed or is out of tolerance."""
    r = entry.result
    shown = lambda ms: [m for m in ms if not light or not m.passed or m.report_only_out_of_tolerance]
    phases = [{"title": "Phase 1 (from scratch)" if p.phase == 1 else f"Phase {p.phase} (resumed)",
               "reference": p.reference or r.reference, "hidden": len(p.metrics) - len(shown(p.metrics)),
               "metrics": [plotter.view(m) for m in shown(p.metrics)]} for p in r.phases]
    return {
        "result": r, "title": entry.title, "anchor": _slug(index, "case", r.case or ""),
        "summary": failing_summary(r), "approve": approve_command(r, store),
        "out_of_tolerance": [(m.metric, fmt.percent(m.delta_pct)) for m in out_of_tolerance(r)],
        "environment_note": environment_note(r), "provenance_rows": _provenance_rows(entry),
        "phases": phases,
        "resume_metrics": [plotter.view(m) for m in r.resume.metrics] if r.resume else [],
        "drift": drift_lines(r),
    }


def _common() -> dict[str, Any]:
    try:
        toolkit = version("golden-toolkit")
    except PackageNotFoundError:
        toolkit = "unknown"
    return {"generated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "version": toolkit}


def result_html(report: Report) -> str:
    """The page: findings, the summary table (failing cases first), then each case's details — only
    the failing ones' when the report holds a whole tree (``LIGHT_ABOVE``)."""
    ordered = report.by_importance()
    light = len(ordered) > LIGHT_ABOVE
    plotter = _Plotter(_plan(ordered, light), LIGHT_MAX_PLOTS if light else MAX_PLOTS,
                       LIGHT_PLOT_BYTES if light else None)
    rows, cases = [], []
    for i, entry in enumerate(ordered):
        anchor = None
        if _detailed(entry, light):
            cases.append(_case_view(i, entry, plotter, report.store, light))
            anchor = cases[-1]["anchor"]
        rows.append({"result": entry.result, "title": entry.title, "summary": failing_summary(entry.result),
                     "anchor": anchor})
    return _environment().get_template("result.html.j2").render(
        title=headline(report, icon=False), headline=headline(report, icon=False), report=report, cases=cases,
        rows=rows, undetailed=len(rows) - len(cases), light_above=LIGHT_ABOVE, light=light,
        failing=failing_line(report), sample_headers=fmt.SAMPLE_HEADERS,
        findings=[(f, finding_where(f)) for f in report.findings], **_common())


def changes_html(changes: GoldenChanges) -> str:
    metrics = list(changes.summary["metric"])
    summary = changes.summary.to_dict("records")
    widest = max((max(r[b] for b in BUCKETS) for r in summary), default=1) or 1
    by_file = []
    for name, group in changes.rows.groupby("file", sort=False):
        diffs = dict(zip(group["metric"], group["mean_rel_diff"], strict=True))
        by_file.append({"file": name, "steps": int(group["n_steps"].max()),
                        "cells": [(fmt.signed(diffs[m]), _bucket_class(diffs[m])) if m in diffs else ("—", "")
                                  for m in metrics]})
    return _environment().get_template("changes.html.j2").render(
        title=f"Golden changes {changes.base_label} → {changes.head_label}", changes=changes, metrics=metrics,
        summary=summary, buckets=BUCKETS, widest=widest, by_file=by_file, fmt=fmt, **_common())


def _bucket_class(value: float) -> str:
    return f"b{int(decade_bucket([abs(value)])[0])}"

