"""JUnit XML (parsed back with xml.etree) and the JSON report's round trip."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from goldens.core.errors import FormatError
from goldens.core.result import PhaseResult, Verdict
from reports.document import Report
from reports.json_report import result_json, results_from_json
from reports.junit import result_junit
from tests.builders import result


def test_one_testcase_per_case_metric_and_resume_check_with_the_explanation_as_failure_message():
    root = ET.fromstring(result_junit(Report.of(result(fail=True), result("b", resume=Verdict.FAIL))))
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures")) == ("6", "2")
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["bert_tp2_pp2.dev.cpu", "b.dev.cpu"]
    cases = suites[0].findall("testcase")
    assert [c.get("name") for c in cases] == ["phase 1: lm loss", "phase 1: num-zeros", "resume check"]
    failure = cases[0].find("failure")
    assert failure.get("message") == ("lm loss: step 3 actual 8.8 vs golden 8.0 (Δ +10%) exceeds rtol 0.05; "
                                      "1 failing step, 0 allowed")
    # the values as they are, the derived Δ without float noise (8.8 - 8.0 = 0.8000000000000007)
    assert "worst step 3: golden 8 → actual 8.8 (Δ 0.8, Δ% +10%)" in failure.text
    assert suites[0].find("system-out").text == ("to approve (after review): golden approve "
                                                "runs/bert_tp2_pp2-1/artifact.json "
                                                "--case bert_tp2_pp2 --env dev --platform cpu "
                                                "--reason '<why these values are right>'")
    assert cases[1].find("failure") is None and cases[2].find("failure") is None
    resume = suites[1].findall("testcase")[-1]
    assert resume.find("failure").get("message") == "phase 2 differs from phase 1 at step 3 (8.8 vs 8.0)"
    assert suites[1].get("failures") == "1"


def test_skipped_verdict_is_a_junit_skip():
    base = result()
    metric = base.phases[0].metrics[1]
    skipped = replace(metric, verdict=Verdict.SKIPPED,
                      explanation="iteration-time on another platform: reported, not judged")
    r = replace(base, phases=(PhaseResult(1, Verdict.PASS, (base.phases[0].metrics[0], skipped)),), resume=None)
    suite = ET.fromstring(result_junit(Report.of(r))).find("testsuite")
    skip = suite.findall("testcase")[1].find("skipped")
    assert skip.get("message") == "iteration-time on another platform: reported, not judged"
    assert suite.get("skipped") == "1" and suite.get("failures") == "0"


def test_hostile_names_and_control_characters_still_parse():
    hostile = "<x>&\"'\x01\x1b]"
    root = ET.fromstring(result_junit(Report.of(result(hostile, metrics=(hostile,), fail=True))))
    case = root.find("testsuite").find("testcase")
    assert case.get("name") == "phase 1: <x>&\"'\ufffd\ufffd]"


def test_json_report_round_trips_every_result_exactly():
    report = Report.of(result(fail=True), result("b"))
    doc = json.loads(result_json(report))
    assert (doc["schema"], doc["verdict"], doc["cases"], doc["failed"]) == ("golden.report/1", "fail", 2, 1)
    assert results_from_json(doc) == [e.result for e in report.entries]
    single = results_from_json(result().to_json())
    assert single == [result()]


def test_json_input_with_a_bad_key_names_it():
    doc = json.loads(result_json(Report.of(result())))
    doc["results"][0]["phases"][0]["metrics"][0]["verdict"] = "maybe"
    with pytest.raises(FormatError, match=r"r\.json: key 'results\[0\]\.phases\[0\]\.metrics\[0\]'"):
        results_from_json(doc, path="r.json")
    with pytest.raises(FormatError, match="not a comparison result"):
        results_from_json({"schema": "golden.artifact/1"}, path="r.json")
