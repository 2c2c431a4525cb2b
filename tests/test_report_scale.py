"""Reports of a whole tree: the JSON streamed (summary and findings first, one result per line,
no per-step data: each target's is in results/), the HTML light (passing cases a summary row only, failing
ones first with their plots), both readable back by ``golden report``."""
from __future__ import annotations

import json

from goldens.core.pairing import Finding
from reports import html as html_report
from reports.build import build_bulk_report
from reports.inputs import load_inputs
from tests.builders import parse_html, result

MANY = html_report.LIGHT_ABOVE + 10


def tree_results():
    """A tree's results: one failing case among many passing ones, the failing one last."""
    return [result(f"gpt/case_{i:03d}", resume=None) for i in range(MANY - 1)] + [result("moe/bad", fail=True,
                                                                                        resume=None)]


def test_the_json_report_streams_a_result_per_line_without_per_step_data(tmp_path):
    finding = Finding("cand/x/golden_values_dev_cpu.json", "broken", "truncated JSON", "x", "dev", "cpu")
    build_bulk_report(tree_results(), tmp_path, ("json",), findings=(finding,))
    text = (tmp_path / "report.json").read_text()
    lines = text.splitlines()
    head = json.loads(lines[0].removesuffix(', "results": [') + "}")
    assert head["verdict"] == "fail" and head["cases"] == MANY and head["findings"][0]["kind"] == "broken"
    assert len(lines) == 1 + MANY + 1  # summary, one line per result, the closing
    doc = json.loads(text)
    assert all(m["steps"] is None for r in doc["results"] for p in r["phases"] for m in p["metrics"])
    bad = next(r for r in doc["results"] if r["case"] == "moe/bad")["phases"][0]["metrics"][0]
    assert (bad["passed"], bad["worst_step"], bad["failing_steps"]) == (False, 3, 1)  # the why, without the steps
    report, _ = load_inputs([tmp_path / "report.json"])
    assert len(report.entries) == MANY and not report.passed and report.findings == (finding,)


def test_the_html_of_a_tree_is_light_failing_first(tmp_path):
    build_bulk_report(tree_results(), tmp_path, ("html",))
    html = (tmp_path / "report.html").read_text()
    page = parse_html(html)
    assert [f["svg"] for f in page.figures] == [1]  # the failing case alone, its failing metric plotted
    assert html.count('<section class="case"') == 1
    assert html.index("moe/bad") < html.index("gpt/case_000")  # failing first in the summary
    assert f"{MANY - 1} passing case(s) are listed without details" in html
    assert "1 passing metric(s) of this phase not shown" in html  # num-zeros of the failing case


def test_a_small_report_keeps_every_case_in_full(tmp_path):
    few = [result("a", resume=None), result("b", fail=True, resume=None)]
    build_bulk_report(few, tmp_path, ("html", "json"))
    html = (tmp_path / "report.html").read_text()
    assert html.count('<section class="case"') == 2 and "listed without details" not in html


# ---------------------------------------------------------------- failures first

def test_failures_lead_by_severity_and_the_headline_names_them():
    """A lm loss regression leads, then a missing/differing resumed phase, then a failure the committed
    goldens share, then passes — whatever the input order; the headline names the failing checks."""
    from dataclasses import replace

    from goldens.core.result import Verdict
    from reports.document import Report, failing_line
    from reports.markdown import result_markdown

    passing = result("gpt/pass", resume=None)
    resume_only = result("gpt/resume_only", resume=Verdict.FAIL)
    shared = replace(result("gpt/shared", fail=True, resume=None), preexisting=("phase 1: lm loss",))
    loss = result("gpt/loss", fail=True, resume=None)
    report = Report.of(passing, resume_only, shared, loss)
    assert [e.result.case for e in report.by_importance()] == ["gpt/loss", "gpt/resume_only", "gpt/shared", "gpt/pass"]
    assert failing_line(report) == ("Failing: lm loss in 2 case(s), resume check in 1 case(s) — first: "
                                    "gpt/loss (dev/cpu), gpt/resume_only (dev/cpu), gpt/shared (dev/cpu)")
    md = result_markdown(report)
    assert md.index("<b>gpt/loss") < md.index("<b>gpt/resume_only") < md.index("<b>gpt/shared")
    assert "1 of 2 metric(s) failed: lm loss" in md
    assert "(2 regression(s), 1 only on pre-existing defects of the committed goldens)" in md.splitlines()[0]


def test_a_light_page_stops_plotting_when_its_plot_budget_is_spent(tmp_path, monkeypatch):
    monkeypatch.setattr(html_report, "LIGHT_PLOT_BYTES", 1)
    results = [result(f"gpt/case_{i:03d}", resume=None) for i in range(MANY - 2)] + [
        result("moe/bad", fail=True, resume=None), result("moe/worse", fail=True, resume=None)]
    build_bulk_report(results, tmp_path, ("html",))
    page = parse_html((tmp_path / "report.html").read_text())
    assert [f["svg"] for f in page.figures] == [1]  # the first failing metric's plot spends the budget
