"""What a report is about: one or more comparison results, plus the provenance found beside them.

Renderers take a ``Report`` and return text; nothing here reads files (``reports.inputs`` does).
"""
from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from goldens.core.pairing import Finding
from goldens.core.result import ComparisonResult, MetricVerdict, Verdict

REPORT_SCHEMA = "golden.report/1"

ICONS = {Verdict.PASS: "✅", Verdict.FAIL: "❌", Verdict.MISSING: "⚠️", Verdict.NEW: "🆕", Verdict.SKIPPED: "⏭️"}


@dataclass(frozen=True)
class CaseEntry:
    """One comparison result and, when known, the provenance of both sides (artifact, ledger)."""

    result: ComparisonResult
    candidate_provenance: Mapping[str, Any] = field(default_factory=dict)
    reference_provenance: Mapping[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        r = self.result
        where = "/".join(x for x in (r.env, r.platform) if x)
        return f"{r.case or r.candidate}" + (f" ({where})" if where else "")


@dataclass(frozen=True)
class Report:
    """The cases to report on. ``store``: the golden store as the user gave it (option or
    environment), written into each failing case's approve command; None when it was not given
    (the command then finds the store by the usual rule). ``findings``: candidate files that were
    not judged (broken, unpaired, without a golden): each one fails the report, as it fails the exit."""

    entries: tuple[CaseEntry, ...]
    store: str | None = None
    findings: tuple[Finding, ...] = ()

    @classmethod
    def of(cls, *results: ComparisonResult, store: str | None = None) -> Report:
        return cls(tuple(CaseEntry(r) for r in results), store)

    @property
    def passed(self) -> bool:
        return not self.findings and all(e.result.passed for e in self.entries)

    @property
    def failed(self) -> tuple[CaseEntry, ...]:
        return tuple(e for e in self.entries if not e.result.passed)

    def by_importance(self) -> tuple[CaseEntry, ...]:
        """Most severe first (``severity``), each group in input order: a reviewer reads the first
        lm loss regression before a missing ``_2nd`` file, and that before a report-only note."""
        return tuple(sorted(self.entries, key=lambda e: severity(e.result)))

    def to_json(self, *, steps: bool = True) -> dict[str, Any]:
        return {"schema": REPORT_SCHEMA, "verdict": "pass" if self.passed else "fail",
                "cases": len(self.entries), "failed": len(self.failed),
                "findings": [f.to_json() for f in self.findings],
                "results": [e.result.to_json(steps=steps) for e in self.entries]}


def severity(result: ComparisonResult) -> int:
    """0 a regression of a golden check (a metric off its golden), 1 a regression of the resume check
    only (a missing or differing resumed phase), 2 a failure the committed goldens share
    (pre-existing), 3 a pass hiding report-only metrics out of tolerance, 4 a clean pass."""
    if not result.passed:
        if not result.regression:
            return 2
        own = set(result.failing_checks()) - set(result.preexisting)
        return 0 if any(check.startswith("phase ") for check in own) else 1
    return 3 if out_of_tolerance(result) else 4


def failing_metrics(report: Report) -> list[tuple[str, int]]:
    """Each failing check (a metric, or the resume check) with how many cases it fails in, most first."""
    counts = Counter(check.split(": ", 1)[-1] for e in report.failed for check in dict.fromkeys(
        e.result.failing_checks()))
    return counts.most_common()


def failing_line(report: Report, *, cases: int = 3) -> str | None:
    """What fails, named: 'Failing: lm loss in 12 case(s), resume check in 5 — first: gpt/a (dev/h100), …'."""
    counts = failing_metrics(report)
    if not counts:
        return None
    first = [e.title for e in report.by_importance()[:cases] if not e.result.passed]
    more = len(report.failed) - len(first)
    return ("Failing: " + ", ".join(f"{name} in {n} case(s)" for name, n in counts) + " — first: "
            + ", ".join(first) + (f" and {more} more" if more > 0 else ""))


def environment_note(result: ComparisonResult) -> str | None:
    """Say why approximate rules were applied: the environments differ, one is not recorded
    (two bare Megatron files), or the user asked for it. Never claim a difference nobody saw."""
    fp = result.fingerprint
    if fp.exact_applied:
        return None
    if fp.forced == "approx":
        return f"Approximate tolerances applied: {fp.reason}."
    if fp.reference is None or fp.candidate is None:
        return (f"Environment not recorded: {fp.reason}. Approximate tolerances applied; an exact "
                "comparison needs both fingerprints recorded and equal.")
    fields = f" (differs in: {', '.join(fp.differing_fields)})" if fp.differing_fields else ""
    return (f"Environment differs from the golden's{fields}: {fp.reason}. Approximate tolerances applied; "
            "an exact comparison needs a matching fingerprint.")


def out_of_tolerance(result: ComparisonResult) -> tuple[MetricVerdict, ...]:
    """Report-only metrics outside their rule: they cannot fail the case, and must not hide in a pass."""
    return tuple(m for m in result.metric_verdicts() if m.report_only_out_of_tolerance)


def _out_of_tolerance_text(count: int) -> str:
    return f"{count} report-only out of tolerance"


def headline(report: Report, *, icon: bool = True) -> str:
    """One line that agrees with the exit code: "passed" only when no case failed and nothing was
    left unjudged."""
    total, failed, found = len(report.entries), len(report.failed), len(report.findings)
    if not total and not found:
        return "No comparison results"
    mark = (ICONS[Verdict.PASS if report.passed else Verdict.FAIL] + " ") if icon else ""
    if report.passed:
        line = f"{mark}Golden check passed: all {total} case(s) passed"
    else:
        only_preexisting = sum(not e.result.regression for e in report.failed)
        judged = (f"{failed} of {total} case(s) failed" if failed else
                  f"all {total} judged case(s) passed" if total else "nothing judged")
        if only_preexisting:
            judged += (f" ({failed - only_preexisting} regression(s), {only_preexisting} only on pre-existing defects "
                       f"of the committed goldens)")
        line = f"{mark}Golden check failed: {judged}" + (f" · {findings_text(found)}" if found else "")
    outside = [len(out_of_tolerance(e.result)) for e in report.entries]
    if any(outside):
        line += (f" · {_out_of_tolerance_text(sum(outside))} in {sum(1 for n in outside if n)} case(s)")
    return line


def findings_text(count: int) -> str:
    return f"{count} finding(s) (candidate files not judged)"


def finding_where(finding: Finding) -> str:
    """A finding's target as a reader looks for it: case (env/platform), else its file."""
    target = "/".join(x for x in (finding.env, finding.platform) if x)
    return f"{finding.case} ({target})" if finding.case and target else finding.case or finding.path


def verdict_line(result: ComparisonResult) -> str:
    """The case's verdict with what a pass may hide, e.g. 'PASS · 3 report-only out of tolerance'."""
    outside = len(out_of_tolerance(result))
    return result.verdict.value.upper() + (f" · {_out_of_tolerance_text(outside)}" if outside else "")


def failing_summary(result: ComparisonResult) -> str:
    """The metrics column of a case: e.g. '1 of 5 metric(s) failed; resume check failed', or
    '2 metric(s) passed · 3 report-only out of tolerance' (a report-only metric outside its rule
    is never counted as passed)."""
    metrics = result.metric_verdicts()
    bad = [m for m in metrics if not m.passed]
    outside = len(out_of_tolerance(result))
    first = (f"{len(bad)} of {len(metrics)} metric(s) failed: {', '.join(dict.fromkeys(m.metric for m in bad))}"
             if bad else f"{len(metrics) - outside} metric(s) passed")
    parts = [first + (f" · {_out_of_tolerance_text(outside)}" if outside else "")]
    if result.resume is not None and result.resume.verdict == Verdict.FAIL:
        parts.append("resume check failed")
    if result.preexisting:
        parts.append("pre-existing (fails on the committed goldens too): " + ", ".join(result.preexisting))
    return "; ".join(parts)


def verdict_label(m: MetricVerdict) -> str:
    if m.report_only_out_of_tolerance:
        return f"{ICONS[Verdict.MISSING]} report only, out of tolerance"
    return f"{ICONS.get(m.verdict, '')} {m.verdict.value}".strip()


APPROVE_REASON = "<why these values are right>"


def approve_command(result: ComparisonResult, store: str | None = None) -> str | None:
    """The command that makes a failing case's candidate the new golden, ready to paste but for the
    reason: ``golden approve CANDIDATE --case C --env E --platform P [--store S] --reason …``.

    None when the case passed, or when the result does not name all of case, env and platform,
    or its candidate is a store version (``CASE@vN``, ``CASE@HEAD``, ``CASE@<commit>``: approve
    takes a run or a file, never a version — going back to one is ``golden rollback``), or a part
    is not printable (it could not be pasted as one line)."""
    if result.passed or not (result.case and result.env and result.platform):
        return None
    if _is_version_ref(result.candidate):
        return None
    parts = ["golden", "approve", result.candidate, "--case", result.case, "--env", result.env,
             "--platform", result.platform, *(("--store", store) if store else ()), "--reason", APPROVE_REASON]
    if not all(part.isprintable() for part in parts):
        return None
    return shlex.join(parts)


def _is_version_ref(operand: str) -> bool:
    """``CASE@REF`` as ``golden diff`` reads it (goldens.inputs.is_version_ref): an '@' in an
    operand that is no file here."""
    return "@" in operand and not Path(operand).exists()


def drift_lines(result: ComparisonResult) -> list[str]:
    """The structural-drift section as plain sentences (renderers escape them)."""
    d = result.drift
    lines = []
    if d.metrics_added:
        lines.append("metrics added: " + ", ".join(d.metrics_added))
    if d.metrics_removed:
        lines.append("metrics removed: " + ", ".join(d.metrics_removed))
    lines += [f"step grid of {g.metric} (phase {g.phase}): {dict(g.reference)} → {dict(g.candidate)}"
              for g in d.grid_changes]
    lines += [f"argument {a.name} {a.change}: {a.reference!r} → {a.candidate!r}" for a in d.arg_changes]
    return lines + list(d.notes)
