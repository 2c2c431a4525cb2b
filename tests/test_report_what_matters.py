"""What a report must not hide or blur: report-only metrics out of tolerance, the exact approve
command of a failing case, and numbers without float noise (the rule in ``reports.text``)."""
from __future__ import annotations

import html
import json
import re
import shlex
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from goldens.cli import app
from goldens.core.compare import compare, side_from_goldens
from goldens.core.errors import FormatError
from goldens.core.policy import preset
from goldens.core.precision import derived_precision
from goldens.core.result import ComparisonResult, MetricVerdict, Verdict
from goldens.store import GoldenStore
from goldens.workflow.operands import diff
from reports import text as fmt
from reports.document import Report, approve_command, failing_summary, verdict_line
from reports.html import result_html
from reports.junit import result_junit
from reports.markdown import result_markdown
from reports.terminal import result_lines
from tests.builders import LOSS, ZEROS, golden_set, markdown_tables, parse_html, result, shifted, write_run

STEPS = np.arange(1, 101)
MEMORY_SPEED = {"lm loss": 11.0 - np.log1p(STEPS), "num-zeros": 5e8 + STEPS,
                "mem-allocated-bytes": np.full(100, 24808996864.0),
                "mem-max-allocated-bytes": np.full(100, 60720852992.0),
                "iteration-time": 1.15 + 0.001 * (STEPS % 7)}


def memory_speed_result(memory: float = 1.0, time: float = 1.0) -> ComparisonResult:
    """gpt3_7b_tp1_pp4_memory_speed-like: 5 metrics × 100 steps; the run's memory and step time
    scaled on every step, judged by Megatron's rules (memory and time are report-only there)."""
    run = dict(MEMORY_SPEED)
    for name in ("mem-allocated-bytes", "mem-max-allocated-bytes"):
        run[name] = MEMORY_SPEED[name] * memory
    run["iteration-time"] = MEMORY_SPEED["iteration-time"] * time
    reference = side_from_goldens({1: golden_set(MEMORY_SPEED)}, "golden_values_dev_dgx_h100.json")
    candidate = side_from_goldens({1: golden_set(run)}, "candidates/golden_values_dev_dgx_h100.json")
    return compare(reference, candidate, preset("megatron"), case="gpt3_7b", env="dev", platform="dgx_h100")


def page_text(markup: str) -> str:
    return " ".join(" ".join(parse_html(markup).text).split())


# ---------------------------------------------------------------- report-only out of tolerance

def test_a_pass_names_its_report_only_metrics_out_of_tolerance():
    result = memory_speed_result(memory=1.10, time=1.30)
    assert result.passed  # Megatron's default METRICS judge lm loss and num-zeros only
    within = {m.metric: (m.verdict.value, m.within_rule) for m in result.metric_verdicts()}
    assert within == {"lm loss": ("pass", True), "num-zeros": ("pass", True),
                      "mem-allocated-bytes": ("skipped", False), "mem-max-allocated-bytes": ("skipped", False),
                      "iteration-time": ("skipped", False)}
    assert verdict_line(result) == "PASS · 3 report-only out of tolerance"
    assert failing_summary(result) == "2 metric(s) passed · 3 report-only out of tolerance"

    markdown = result_markdown(Report.of(result))
    assert markdown.startswith("## ✅ Golden check passed: all 1 case(s) passed · "
                               "3 report-only out of tolerance in 1 case(s)\n")
    assert markdown_tables(markdown)[0][2][2] == "2 metric(s) passed · 3 report-only out of tolerance"
    assert ("**3 report-only metric(s) out of tolerance** (reported, not judged: they cannot fail this case): "
            "mem-allocated-bytes (+10%), mem-max-allocated-bytes (+10%), iteration-time (+30%)") in markdown
    rows = {row[0]: row[2] for row in markdown_tables(markdown)[1][2:]}
    assert rows["iteration-time"] == "⚠️ report only, out of tolerance" and rows["lm loss"] == "✅ pass"

    text = page_text(result_html(Report.of(result)))
    assert "PASS · 2 metric(s) passed · 3 report-only out of tolerance" in text
    assert text.count("out of tolerance report only: cannot fail the case") == 3
    assert result_lines(result)[-1].startswith("[green]PASS · 3 report-only out of tolerance[/]")
    assert 'failures="0"' in result_junit(Report.of(result))  # still a pass for CI


def test_a_clean_pass_says_only_that():
    result = memory_speed_result()
    assert [m.within_rule for m in result.metric_verdicts()] == [True] * 5
    assert verdict_line(result) == "PASS" and failing_summary(result) == "5 metric(s) passed"
    assert "report-only" not in result_markdown(Report.of(result))


def test_within_rule_is_written_and_an_older_result_without_it_still_reads():
    result = memory_speed_result(memory=1.10)
    doc = result.to_json()
    assert [m["within_rule"] for m in doc["phases"][0]["metrics"]] == [True, True, False, False, True]
    assert ComparisonResult.from_json(json.loads(json.dumps(doc))) == result
    for m in doc["phases"][0]["metrics"]:
        del m["within_rule"]  # golden.result/1 as written before the field existed
    older = ComparisonResult.from_json(doc)
    assert [m.within_rule for m in older.metric_verdicts()] == [None] * 5
    assert failing_summary(older) == "5 metric(s) passed"  # nothing claimed that was not recorded
    doc["phases"][0]["metrics"][0]["within_rule"] = "yes"
    with pytest.raises(FormatError, match=r"'phases\[0\]\.metrics\[0\]\.within_rule': "
                                          r"expected true, false or null, got 'yes'"):
        ComparisonResult.from_json(doc)


# ---------------------------------------------------------------- the approve command

def test_each_failing_case_shows_the_approve_command_with_case_env_platform_and_store():
    failing, passing = result("bert_tp2_pp2", fail=True), result("b")
    report = Report.of(failing, passing, store="/ci/Megatron-LM/tests/functional_tests/test_cases")
    expected = ("golden approve runs/bert_tp2_pp2-1/artifact.json --case bert_tp2_pp2 --env dev --platform cpu "
                "--store /ci/Megatron-LM/tests/functional_tests/test_cases --reason '<why these values are right>'")
    assert approve_command(failing, report.store) == expected
    assert approve_command(passing, report.store) is None
    markdown = result_markdown(report)
    assert [html.unescape(c) for c in re.findall(r"<pre><code>(.*?)</code></pre>", markdown)] == [expected]
    page = result_html(report)
    assert [html.unescape(c) for c in re.findall(r'<pre class="command"><code>(.*?)</code></pre>', page)] == [expected]
    # without a store given, the command leaves it to the usual discovery rule
    assert "--store" not in approve_command(failing)


def test_the_command_quotes_what_a_shell_would_split_and_skips_what_it_cannot_name():
    spaced = replace(result(fail=True), candidate="CI artifacts/golden_values_dev_cpu.json")
    assert shlex.split(approve_command(spaced, "my store"))[2:3] == ["CI artifacts/golden_values_dev_cpu.json"]
    assert shlex.split(approve_command(spaced, "my store"))[-3] == "my store"
    assert approve_command(replace(result(fail=True), candidate="bert_tp2_pp2@v7")) is None  # a version: rollback
    assert approve_command(replace(result(fail=True), platform=None)) is None
    assert approve_command(replace(result(fail=True), candidate="a\nb")) is None


def test_the_command_a_report_shows_approves_the_run(store, runs, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    run = write_run(runs, "tiny", "r-7", {"lm loss": shifted(LOSS, 1.1), "num-zeros": ZEROS})
    judged = diff([str(run)], store_root=store.root, case=None, env=None, platform=None, policy=None, force=None)
    assert not judged.passed
    result_file = runs / "result.json"
    result_file.write_text(json.dumps(judged.result.to_json()))
    out = runs / "report"
    shown = CliRunner().invoke(app, ["report", str(result_file), "--store", str(store.root), "--out", str(out)],
                               env={"GITHUB_STEP_SUMMARY": ""})
    assert shown.exit_code == 1, shown.output
    [command] = re.findall(r"<pre><code>(.*?)</code></pre>", (out / "report.md").read_text())
    # golden diff shows the same command, on one line however long (a log has no right edge)
    shown_by_diff = CliRunner().invoke(app, ["diff", str(run), "--store", str(store.root)], env={"COLUMNS": "60"})
    assert shown_by_diff.exit_code == 1
    shown = f"to approve (after review; the reason is yours to write): {html.unescape(command)}\n"
    assert shown in shown_by_diff.stdout
    argv = shlex.split(html.unescape(command))
    assert argv[:2] == ["golden", "approve"] and argv[-2:] == ["--reason", "<why these values are right>"]
    argv[-1] = "loss +10 % after the fused-kernel change"
    approved = CliRunner().invoke(app, [*argv[1:], "--approver", "ada"])
    assert approved.exit_code == 0, approved.output
    assert approved.stdout.strip() == "approved tiny dev/cpu as v2 from run r-7"
    again = diff([str(run)], store_root=store.root, case=None, env=None, platform=None, policy=None, force=None)
    assert again.passed
    assert len(GoldenStore(store.root).history("tiny")) == 2


# ---------------------------------------------------------------- numbers

@pytest.mark.parametrize("value, scale, shown", [
    (0.1 + 0.2, None, "0.3"),                            # 0.30000000000000004
    (2454016819.200001, None, "2454016819.2"),
    (0.24371999999999994, None, "0.24372"),
    (1.1498849999999998, None, "1.149885"),              # a median of 1.14988 and 1.14989
    (7.046254800000001 - 6.52431, 7.046254800000001, "0.5219448"),  # a Δ keeps its operands' noise
    (27289896550.4 - 24808996864.0, 27289896550.4, "2480899686.4"),
    (5.551115123125783e-17, 0.3, "5.55e-17"),            # operands one bit apart: never shown as 0
    (0.0, 5.0, "0"), (-0.0, None, "0"), (12.0, None, "12"), (1e-5, None, "1e-05"),
    (float("inf"), None, "inf"), (float("nan"), None, "nan"), (None, None, "—"),
])
def test_a_derived_number_is_its_shortest_faithful_form(value, scale, shown):
    assert derived_precision(value, scale) == shown


def test_metric_values_keep_full_precision_and_derived_ones_lose_only_noise():
    step_value = MetricVerdict(metric="mem", phase=1, verdict=Verdict.FAIL, passed=False,
                               rule=result().phases[0].metrics[0].rule, explanation="",
                               golden_value=52931256320.0, actual_value=58224381952.00001,
                               delta=58224381952.00001 - 52931256320.0)
    assert fmt.golden_actual(step_value) == ("52931256320", "58224381952.00001")  # what the file holds
    assert fmt.delta(step_value) == "5293125632"
    median = replace(step_value, rule=replace(step_value.rule, mode="summary", params={"reduce": "median"}),
                     golden_value=1.1498849999999998, actual_value=1.4948505)
    assert fmt.golden_actual(median) == ("1.149885", "1.4948505")  # computed: its noise dropped
    peak = replace(median, rule=replace(median.rule, params={"reduce": "max"}), actual_value=58224381952.00001)
    assert fmt.golden_actual(peak)[1] == "58224381952.00001"  # a max is one step's value


def test_the_numbers_a_report_computes_show_no_float_noise():
    # The table cells the renderers format; the "why" text is the comparison mode's own sentence.
    result = memory_speed_result(memory=1.10, time=1.30)
    rows = markdown_tables(result_markdown(Report.of(result)))[1][2:]
    cells = [cell for row in rows for cell in row[3:]]
    cells += [page_text(cell) for cell in re.findall(r'<td class="num">(.*?)</td>', result_html(Report.of(result)))]
    numbers = " ".join(cells)
    assert numbers.count("1.153 → 1.4989") == 2  # the window's medians (1.1529999999999998 in float64)
    assert "66792938291.200005 6072085299.2" in numbers  # the run's value as it is; Δ (HTML only) without noise
    assert re.findall(r"\d\.\d*(?:0000000|9999999)\d+", numbers) == []
