"""Markdown for PR comments: table rows, notes, escaping, and the 65,536-character limit."""
from __future__ import annotations

import re
from dataclasses import replace

from goldens.core.result import FingerprintCheck, Verdict
from reports.budget import GITHUB_COMMENT_LIMIT
from reports.document import Report
from reports.markdown import METRIC_HEADERS, result_markdown
from tests.builders import markdown_tables, result


def test_failing_case_has_a_row_per_metric_with_rule_verdict_worst_step_values_and_diffs():
    text = result_markdown(Report.of(result(fail=True)))
    assert text.startswith("## ❌ Golden check failed: 1 of 1 case(s) failed\n")
    metric_table = next(t for t in markdown_tables(text) if t[0] == METRIC_HEADERS)
    assert metric_table[2] == ["lm loss", "approx |a-g| <= 0.05*|g| per step, <= 0 failing steps", "❌ fail",
                               "1 / 4 (allowed 0)", "3",
                               "8 → 8.8", "+10%", "+2.500e-02"]  # whole numbers as the terminal shows them
    assert metric_table[3][0] == "num-zeros" and metric_table[3][2] == "✅ pass"
    assert len(metric_table) == 4


def test_environment_note_resume_verdict_and_collapsible_details():
    text = result_markdown(Report.of(result(fail=True), result("same_env", exact=True, resume=Verdict.FAIL)))
    first, second = text.split("<details")[1:]
    assert "> Environment differs from the golden's (differs in: versions.torch, device)" in first
    assert "Environment differs" not in second and "exact comparison" in second
    assert "**Resume check:** ✅ pass: phase 2 equals phase 1 on all 4 overlapping steps" in first
    assert "**Resume check:** ❌ fail: phase 2 differs from phase 1 at step 3 (8.8 vs 8.0)" in second
    assert first.startswith(" open>")  # failing cases are expanded
    assert text.count("<details") == text.count("</details>") == 2
    summary = markdown_tables(text)[0]
    assert [row[1] for row in summary[2:]] == ["bert_tp2_pp2 (dev/cpu)", "same_env (dev/cpu)"]
    assert summary[3][3] == "❌ fail"  # the resume column


def test_passing_report_headline():
    text = result_markdown(Report.of(result(), result("b")))
    assert text.startswith("## ✅ Golden check passed: all 2 case(s) passed\n")


def test_hostile_names_stay_text_and_keep_the_table_shape():
    hostile = "<script>alert(1)</script>|x*y*`z`"
    text = result_markdown(Report.of(result(hostile, metrics=(hostile, "ok"), fail=True)))
    assert "<script>" not in text
    assert "<b>&lt;script&gt;alert(1)&lt;/script&gt;|x*y*`z` (dev/cpu)</b>" in text  # inside <summary>: HTML-escaped
    metric_table = next(t for t in markdown_tables(text) if t[0] == METRIC_HEADERS)
    assert metric_table[2][0] == hostile
    assert all(len(row) == len(METRIC_HEADERS) for row in metric_table)


def _check_well_formed(text: str) -> None:
    assert text.count("<details") == text.count("</details>")
    for t in markdown_tables(text):
        assert all(len(row) == len(t[0]) for row in t), t[0]


def test_300_cases_stay_under_the_comment_limit_with_every_failure_listed():
    results = [result(f"case_{i:03d}", fail=i % 30 == 7, metrics=("lm loss", "num-zeros", "iteration-time",
                                                                  "mem-allocated-bytes", "mem-max-allocated-bytes"))
               for i in range(300)]
    text = result_markdown(Report(tuple(Report.of(*results).entries)))
    assert len(text) <= GITHUB_COMMENT_LIMIT
    _check_well_formed(text)
    summary = markdown_tables(text)[0]
    listed = [row[1] for row in summary[2:]]
    failing = [f"case_{i:03d} (dev/cpu)" for i in range(300) if i % 30 == 7]
    assert listed[:10] == failing  # failures first
    assert len(listed) == 300  # 300 one-line rows fit; details are what gets summarised
    for name in failing:  # every failing case keeps its details
        assert f"<b>{name}</b>: fail" in text
    left_out = int(re.search(r"Details of (\d+) case\(s\) left out", text).group(1))
    shown = text.count("<details")
    assert shown + left_out == 300 and left_out > 0


def test_a_tiny_limit_still_yields_complete_tables_and_says_what_was_dropped():
    results = [result(f"case_{i:03d}", fail=i < 3) for i in range(50)]
    text = result_markdown(Report.of(*results), limit=3000)
    assert len(text) <= 3000
    _check_well_formed(text)
    assert "more case(s) not listed (0 of them failing)" in text
    left_out = int(re.search(r"Details of (\d+) case\(s\) left out", text).group(1))
    assert text.count("<details") + left_out == 50
    summary = markdown_tables(text)[0]
    assert [row[1] for row in summary[2:5]] == [f"case_{i:03d} (dev/cpu)" for i in range(3)]


def test_environment_note_never_claims_a_difference_nobody_saw():
    def note(fp):
        return result_markdown(Report.of(replace(result(), fingerprint=fp)))

    # Two bare Megatron golden files: no fingerprint on either side, nothing known to differ.
    bare = note(FingerprintCheck(None, None, False, "neither side has a recorded fingerprint"))
    assert "> Environment not recorded: neither side has a recorded fingerprint. Approximate" in bare
    assert "differs" not in bare
    # Equal fingerprints, approx asked for on the command line.
    forced = note(FingerprintCheck("abc", "abc", False, "forced --approx (fingerprints equal)", forced="approx"))
    assert "> Approximate tolerances applied: forced --approx (fingerprints equal)." in forced
    assert "differs" not in forced


def test_whole_number_metrics_read_as_in_the_terminal():
    # num-zeros and byte counts are whole numbers: "3687 → 3514", not "3687.0 → 3514.0";
    # a fraction keeps every digit.
    verdict = replace(result().phases[0].metrics[0], golden_value=3687.0, actual_value=1768285696.125)
    one = replace(result(), phases=(replace(result().phases[0], metrics=(verdict,)),))
    row = next(t for t in markdown_tables(result_markdown(Report.of(one))) if t[0] == METRIC_HEADERS)[2]
    assert row[5] == "3687 → 1768285696.125"
