"""JUnit XML: one testcase per case × metric and one per resume check, for CI test tabs.

Built with ``xml.etree`` (it escapes markup); characters XML 1.0 cannot hold at all (most
control characters) are replaced, so a hostile metric name still yields a parseable file.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from goldens.core.result import ComparisonResult, MetricVerdict, Verdict
from reports import text as fmt
from reports.document import Report, approve_command, finding_where

_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(text: object) -> str:
    return _NOT_XML.sub("\ufffd", str(text))


def _classname(result: ComparisonResult) -> str:
    return ".".join(_clean(x) for x in (result.case or result.candidate, result.env, result.platform) if x)


def _details(m: MetricVerdict) -> str:
    lines = [m.explanation, f"rule: {m.rule.text}"]
    golden, actual = fmt.golden_actual(m)
    if m.worst_step is not None or m.rule.mode == "summary":
        where = f"worst step {m.worst_step}" if m.worst_step is not None else "reduced window"
        lines.append(f"{where}: golden {golden} → actual {actual} (Δ {fmt.delta(m)}, Δ% {fmt.percent(m.delta_pct)})")
    if m.mean_rel_diff is not None:
        lines.append(f"mean relative difference {fmt.signed(m.mean_rel_diff)}")
    lines.append(f"failing steps {m.failing_steps} of {m.total_steps} (allowed {m.allowed_failing_steps})")
    return _clean("\n".join(lines))


def _metric_case(suite: ET.Element, classname: str, m: MetricVerdict, prefix: str = "") -> bool:
    """Add one testcase; True when it failed."""
    case = ET.SubElement(suite, "testcase", classname=classname,
                         name=_clean(f"{prefix}phase {m.phase}: {m.metric}"))
    if not m.passed:
        ET.SubElement(case, "failure", message=_clean(m.explanation), type=m.verdict.value).text = _details(m)
        return True
    if m.verdict == Verdict.SKIPPED:
        ET.SubElement(case, "skipped", message=_clean(m.explanation))
    else:
        ET.SubElement(case, "system-out").text = _details(m)
    return False


def _findings_suite(suites: ET.Element, report: Report) -> int:
    """One testcase with an ``<error>`` per file that was not judged (broken, unpaired, no golden):
    CI test tabs count them as errors, so a red job never shows a green test tab."""
    if not report.findings:
        return 0
    suite = ET.SubElement(suites, "testsuite", name="findings", tests=str(len(report.findings)), failures="0",
                          errors=str(len(report.findings)), skipped="0")
    for f in report.findings:
        case = ET.SubElement(suite, "testcase", classname="findings", name=_clean(f"{f.kind}: {finding_where(f)}"))
        ET.SubElement(case, "error", message=_clean(f.message), type=_clean(f.kind)).text = _clean(
            f"{f.path}: {f.message}")
    return len(report.findings)


def result_junit(report: Report) -> str:
    suites = ET.Element("testsuites", name="golden")
    total_tests = total_failures = total_skipped = 0
    for entry in report.entries:
        r = entry.result
        classname = _classname(r)
        suite = ET.SubElement(suites, "testsuite", name=classname)
        tests = failures = skipped = 0
        for m in r.metric_verdicts():
            tests += 1
            failures += _metric_case(suite, classname, m)
            skipped += m.verdict == Verdict.SKIPPED and m.passed
        if r.resume is not None:
            tests += 1
            case = ET.SubElement(suite, "testcase", classname=classname, name="resume check")
            details = "\n".join([r.resume.explanation, *(m.explanation for m in r.resume.metrics if not m.passed)])
            if r.resume.verdict == Verdict.FAIL:
                failures += 1
                ET.SubElement(case, "failure", message=_clean(r.resume.explanation), type="fail").text = _clean(details)
            elif r.resume.verdict == Verdict.SKIPPED:
                skipped += 1
                ET.SubElement(case, "skipped", message=_clean(r.resume.explanation))
        command = approve_command(r, report.store)
        if command:
            ET.SubElement(suite, "system-out").text = _clean(f"to approve (after review): {command}")
        suite.set("tests", str(tests))
        suite.set("failures", str(failures))
        suite.set("errors", "0")
        suite.set("skipped", str(skipped))
        total_tests += tests
        total_failures += failures
        total_skipped += skipped
    errors = _findings_suite(suites, report)
    suites.set("tests", str(total_tests + errors))
    suites.set("failures", str(total_failures))
    suites.set("errors", str(errors))
    suites.set("skipped", str(total_skipped))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
