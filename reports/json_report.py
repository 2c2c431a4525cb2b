"""The JSON report: every result at full precision, readable back by ``golden report``.

Schema ``golden.report/1``: ``{"schema", "verdict", "cases", "failed", "results": [<golden.result/1>...]}``.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from goldens.core.errors import FormatError
from goldens.core.pairing import Finding
from goldens.core.result import RESULT_SCHEMA, ComparisonResult
from reports.changes import GoldenChanges
from reports.document import REPORT_SCHEMA, Report

CHANGES_SCHEMA = "golden.changes/1"


def result_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2, allow_nan=False) + "\n"


def bulk_json_chunks(report: Report) -> Iterator[str]:
    """The JSON report of a whole tree, streamed: one ``golden.report/1`` document whose summary and
    findings come first and whose results follow one per line — compact, without per-step data (each
    target's full result, every step, is its own file in ``results/``) — so it is written a result at
    a time, stays small enough to archive, and ``golden report`` reads it back."""
    head = {"schema": REPORT_SCHEMA, "verdict": "pass" if report.passed else "fail", "cases": len(report.entries),
            "failed": len(report.failed), "findings": [f.to_json() for f in report.findings]}
    yield json.dumps(head, allow_nan=False)[:-1] + ', "results": ['
    for i, entry in enumerate(report.entries):
        yield ("\n" if i == 0 else ",\n") + json.dumps(entry.result.to_json(steps=False), allow_nan=False)
    yield "\n]}\n"


def results_from_json(doc: Any, *, path: object = None) -> list[ComparisonResult]:
    """A single ``golden.result/1`` document or a ``golden.report/1`` holding several."""
    if isinstance(doc, dict) and doc.get("schema") == REPORT_SCHEMA:
        results = doc.get("results")
        if not isinstance(results, list):
            raise FormatError("'results' must be a list", path=path, key="results")
        return [_one(r, path, f"results[{i}]") for i, r in enumerate(results)]
    if isinstance(doc, dict) and doc.get("schema") == RESULT_SCHEMA:
        return [_one(doc, path, None)]
    schema = doc.get("schema") if isinstance(doc, dict) else None
    raise FormatError(f"not a comparison result (schema {schema!r}; expected {RESULT_SCHEMA!r} or {REPORT_SCHEMA!r})",
                      path=path, key="schema")


def findings_from_json(doc: Any, *, path: object = None) -> list[Finding]:
    """The findings a ``golden.report/1`` document carries (none in a single result)."""
    if not (isinstance(doc, dict) and doc.get("schema") == REPORT_SCHEMA):
        return []
    found = doc.get("findings", [])
    if not isinstance(found, list) or not all(isinstance(f, dict) and isinstance(f.get("path"), str)
                                              and isinstance(f.get("kind"), str) and isinstance(f.get("message"), str)
                                              for f in found):
        raise FormatError("'findings' must be a list of {path, kind, message, ...}", path=path, key="findings")
    text = lambda f, k: f.get(k) if isinstance(f.get(k), str) else None
    return [Finding(f["path"], f["kind"], f["message"], text(f, "case"), text(f, "env"), text(f, "platform"))
            for f in found]


def _one(doc: Any, path: object, where: str | None) -> ComparisonResult:
    try:
        return ComparisonResult.from_json(doc)
    except FormatError as exc:
        key = ".".join(k for k in (where, exc.key) if k) or None
        raise FormatError(exc.reason, path=path, key=key) from None


def changes_json(changes: GoldenChanges) -> str:
    """The change report as data: rows and per-metric summary at full precision."""
    doc = {"schema": CHANGES_SCHEMA, "base": changes.base_label, "head": changes.head_label,
           "rows": changes.rows.to_dict("records"), "summary": changes.summary.to_dict("records"),
           "added": list(changes.added), "removed": list(changes.removed),
           "unchanged": list(changes.unchanged), "grid_only": list(changes.grid_only), "notes": list(changes.notes)}
    return json.dumps(doc, indent=2, allow_nan=False, default=_plain) + "\n"


def _plain(value: Any) -> Any:
    """numpy scalars from pandas records → Python numbers."""
    return value.item()
