"""The HTML report: one self-contained file, one plot per metric, provenance, hostile names as text."""
from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from goldens.core.result import Rule
from reports import html as html_report
from reports import plots
from reports.changes import compare_revisions
from reports.document import CaseEntry, Report
from reports.html import changes_html, result_html
from reports.plots import tolerance_band
from tests.builders import BASE, HEAD, HOSTILE, loss_verdict, parse_html, parsed_goldens, result, steps_table


def test_one_plot_per_metric_and_per_resume_metric():
    report = Report.of(result(fail=True, metrics=("lm loss", "num-zeros", "iteration-time")), result("b", resume=None))
    page = parse_html(result_html(report))
    # case 1: 3 metrics + 1 resume metric; case 2: 2 metrics, no resume check
    assert len(page.figures) == 6
    assert all(f["svg"] == 1 for f in page.figures)


def test_hostile_names_render_as_text_never_as_markup():
    report = Report.of(result(HOSTILE, metrics=(HOSTILE, 'x" onmouseover="alert(2)'), fail=True))
    html = result_html(report)
    page = parse_html(html)
    assert "script" not in page.tags
    assert not any(name.startswith("on") for name, _ in page.attributes)
    assert HOSTILE in "".join(page.text)  # shown to the reader as the literal name
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert re.search(r"<script", html, re.I) is None


def test_self_contained_no_external_loads_and_scripts_forbidden_by_policy():
    html = result_html(Report.of(result(fail=True)))
    page = parse_html(html)
    assert "link" not in page.tags and "img" not in page.tags and "iframe" not in page.tags
    loads = [v for name, v in page.attributes if name in ("src", "href") and v and not v.startswith("#")]
    assert loads == []
    assert "default-src 'none'" in html


def test_provenance_of_both_sides_and_environment_note():
    entry = CaseEntry(result(fail=True), candidate_provenance={"host": "ci-7", "versions": {"torch": "2.13.0"}},
                      reference_provenance={"host": "dgx-1", "versions": {"torch": "2.12.0"}})
    text = " ".join(" ".join(parse_html(result_html(Report((entry,)))).text).split())
    assert "cases/bert_tp2_pp2/golden_values_dev_cpu.json runs/bert_tp2_pp2-1/artifact.json" in text
    assert "fingerprint abc def" in text
    assert "host dgx-1 ci-7" in text and "versions.torch 2.12.0 2.13.0" in text
    assert "Environment differs from the golden's (differs in: versions.torch, device)" in text


def test_metric_table_shows_values_at_full_precision_and_derived_numbers_without_noise():
    text = " ".join(" ".join(parse_html(result_html(Report.of(result(fail=True)))).text).split())
    # failing steps / judged (allowed), worst step, golden → actual, Δ (8.8 − 8.0 is 0.8000000000000007
    # in float64: noise, shown as 0.8) and Δ%, mean relative difference
    assert "1 / 4 allowed 0 3 8 → 8.8 0.8 +10% +2.500e-02" in text
    precise = replace(loss_verdict(fail=True), golden_value=6.52431, actual_value=7.046254800000001,
                      delta=7.046254800000001 - 6.52431)
    one = replace(result(fail=True), phases=(replace(result().phases[0], metrics=(precise,)),))
    text = " ".join(" ".join(parse_html(result_html(Report.of(one))).text).split())
    assert "6.52431 → 7.046254800000001 0.5219448 +10%" in text


def test_plot_budget_keeps_failing_metrics_first(monkeypatch):
    monkeypatch.setattr(html_report, "MAX_PLOTS", 2)
    report = Report.of(result("a", resume=None), result("b", fail=True, resume=None))
    page = parse_html(result_html(report))
    drawn = [f["svg"] for f in page.figures]
    assert drawn == [1, 1, 0, 0]  # case b (failing) comes first and gets the two plots
    assert "draws at most 2 plots" in " ".join(page.text)


def test_tolerance_band_follows_the_policy_threshold():
    golden = np.array([10.0, 2.0, 0.0])
    band = tolerance_band(Rule("approx", {"rtol": 0.2, "atol": 1.0, "integer": True, "direction": "both"}, ""), golden)
    assert band.below.tolist() == [2.0, 1.0, 1.0]  # floor(max(1, 0.2·|g|))
    band = tolerance_band(Rule("summary", {"rtol": 0.1, "atol": 0.0, "direction": "increase_is_bad"}, ""), golden)
    assert band.above.tolist() == [1.0, 0.2, 0.0] and np.isinf(band.below).all()
    assert tolerance_band(Rule("exact", {}, ""), golden).above.tolist() == [0.0, 0.0, 0.0]
    assert tolerance_band(Rule("custom", {}, ""), golden) is None


def test_changes_html_escapes_and_holds_every_row():
    base, head = parsed_goldens(BASE), parsed_goldens(HEAD)
    base[f"x/{HOSTILE}.json"] = base["caseA/golden_values_dev_cpu.json"]
    head[f"x/{HOSTILE}.json"] = head["caseA/golden_values_dev_cpu.json"]
    html = changes_html(compare_revisions(base, head, base_label=HOSTILE, head_label="v2"))
    page = parse_html(html)
    assert "script" not in page.tags
    text = " ".join(" ".join(page.text).split())
    assert f"Golden changes: {HOSTILE} → v2" in text
    assert "caseA/golden_values_dev_cpu.json 3 -5.000e-02 +5.000e-02 +2.000e-01" in text
    assert f"x/{HOSTILE}.json 3 -5.000e-02" in text


def test_tolerance_band_spans_a_sparser_golden_grid(monkeypatch):
    # A dgx_a100 golden (every 5th step) against a run of every step: the steps between the
    # golden's are "extra" (golden NaN). The band must join the golden's steps, not break at
    # every NaN into single points that draw nothing.
    drawn = []
    monkeypatch.setattr(plots, "_band", lambda axes, x, lower, upper: drawn.append((x, lower, upper)) or "")
    golden = [10.0, np.nan, np.nan, np.nan, 8.0]
    actual = [10.0, 9.5, 9.0, 8.5, 8.0]
    verdict = replace(loss_verdict(), steps=steps_table(golden, actual, ["pass", "extra", "extra", "extra", "pass"]))
    assert plots.metric_svg(verdict, salt="t") is not None
    (x, lower, upper), (_, res_lower, res_upper) = drawn  # values panel, residual panel
    assert x.tolist() == [1.0, 5.0]
    assert lower.tolist() == [9.5, 7.6] and upper.tolist() == [10.5, 8.4]  # ±5 % of 10 and of 8
    assert res_lower.tolist() == [-0.5, -0.4] and res_upper.tolist() == [0.5, 0.4]
