"""What a report is about: one or more comparison results, plus the provenance found beside them.

Renderers take a ``Report`` and return text; nothing here reads files (``reports.inputs`` does).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from goldens.result import ComparisonResult, MetricVerdict, Verdict

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
    entries: tuple[CaseEntry, ...]

    @classmethod
    def of(cls, *results: ComparisonResult) -> "Report":
        return cls(tuple(CaseEntry(r) for r in results))

    @property
    def passed(self) -> bool:
        return all(e.result.passed for e in self.entries)

    @property
    def failed(self) -> tuple[CaseEntry, ...]:
        return tuple(e for e in self.entries if not e.result.passed)

    def by_importance(self) -> tuple[CaseEntry, ...]:
        """Failing cases first, each group in input order."""
        return self.failed + tuple(e for e in self.entries if e.result.passed)

    def to_json(self, *, steps: bool = True) -> dict[str, Any]:
        return {"schema": REPORT_SCHEMA, "verdict": "pass" if self.passed else "fail",
                "cases": len(self.entries), "failed": len(self.failed),
                "results": [e.result.to_json(steps=steps) for e in self.entries]}


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


def headline(report: Report, *, icon: bool = True) -> str:
    total, failed = len(report.entries), len(report.failed)
    if not total:
        return "No comparison results"
    mark = (ICONS[Verdict.FAIL if failed else Verdict.PASS] + " ") if icon else ""
    if failed:
        return f"{mark}Golden check failed: {failed} of {total} case(s) failed"
    return f"{mark}Golden check passed: all {total} case(s) passed"


def failing_summary(result: ComparisonResult) -> str:
    """e.g. '1 of 5 metric(s) failed; resume check failed'."""
    metrics = result.metric_verdicts()
    bad = [m for m in metrics if not m.passed]
    parts = [f"{len(bad)} of {len(metrics)} metric(s) failed" if bad else f"{len(metrics)} metric(s) passed"]
    if result.resume is not None and result.resume.verdict == Verdict.FAIL:
        parts.append("resume check failed")
    return "; ".join(parts)


def verdict_label(m: MetricVerdict) -> str:
    return f"{ICONS.get(m.verdict, '')} {m.verdict.value}".strip()


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
