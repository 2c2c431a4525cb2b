"""Every renderer on a result the real engine computed (not only hand-built ones)."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np

from goldens.core.compare import compare, side_from_goldens
from goldens.core.model import GoldenSet
from goldens.core.policy import preset
from goldens.core.result import ComparisonResult
from reports.document import Report
from reports.html import result_html
from reports.json_report import result_json, results_from_json
from reports.junit import result_junit
from reports.markdown import result_markdown
from tests.builders import golden_set, markdown_tables, parse_html

STEPS = np.arange(1, 41)


def _golden(loss_bump_at: int | None = None) -> dict[int, GoldenSet]:
    loss = 10.0 - 0.05 * STEPS
    if loss_bump_at is not None:
        loss = loss.copy()
        loss[loss_bump_at == STEPS] *= 1.2  # 20 % off at one step: outside lm loss's 5 %
    return {1: golden_set({"lm loss": loss, "num-zeros": 1000.0 + STEPS,
                           "iteration-time": np.r_[5.0, np.full(39, 0.5)]})}  # steps 1..40


def engine_result() -> ComparisonResult:
    reference = side_from_goldens(_golden(), "cases/tiny/golden_values_dev_cpu.json", fingerprint="f1", platform="cpu")
    candidate = side_from_goldens(_golden(loss_bump_at=30), "runs/tiny-1", fingerprint="f2", platform="cpu")
    return compare(reference, candidate, preset("default"), case="tiny", env="dev", platform="cpu")


def test_all_formats_render_an_engine_result():
    result = engine_result()
    assert not result.passed
    failing = [m for m in result.metric_verdicts() if not m.passed]
    assert [m.metric for m in failing] == ["lm loss"] and failing[0].worst_step == 30
    report = Report.of(result)

    markdown = result_markdown(report)
    metric_rows = {row[0]: row for t in markdown_tables(markdown) if t[0][0] == "metric" for row in t[2:]}
    assert set(metric_rows) == {"lm loss", "num-zeros", "iteration-time"}
    assert metric_rows["lm loss"][2] == "❌ fail" and metric_rows["lm loss"][4] == "30"
    assert metric_rows["lm loss"][3] == "1 / 40 (allowed 0)"
    assert metric_rows["lm loss"][6] == "+20%"

    page = parse_html(result_html(report))
    with_steps = [m for m in result.metric_verdicts() if m.steps is not None and len(m.steps)]
    assert len(page.figures) == len(result.metric_verdicts())
    assert sum(f["svg"] for f in page.figures) == len(with_steps) == 3

    suite = ET.fromstring(result_junit(report)).find("testsuite")
    failures = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failures] == ["phase 1: lm loss"]
    assert failures[0].find("failure").get("message") == failing[0].explanation

    assert results_from_json(json.loads(result_json(report))) == [result]
