"""Find what to report on: run folders and result files → a ``Report`` and where it goes by default.

A run folder (``runs/<id>/``) holds ``result.json`` (what ``golden check``/``golden diff``
computed) and ``artifact.json`` (whose provenance describes the candidate side). A result
file is a ``golden.result/1`` or ``golden.report/1`` document. The golden side's provenance
comes from the store's ledger entry that last wrote the case's golden file, when the store
has one. The report goes beside its one input (``runs/<id>/report/``); several inputs need
an explicit ``--out``.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from goldens.core.errors import FormatError, GoldenError, StoreError
from goldens.core.model import GoldenKey
from goldens.core.pairing import Finding
from goldens.core.result import ComparisonResult
from goldens.files.formats.jsontext import read_json
from goldens.store import GoldenStore
from reports.document import CaseEntry, Report
from reports.json_report import findings_from_json, results_from_json

RESULT_FILE = "result.json"
ARTIFACT_FILE = "artifact.json"
REPORT_DIR = "report"


def _artifact_provenance(run_dir: Path) -> dict[str, Any]:
    """The candidate's provenance from the run's artifact (empty when there is none)."""
    path = run_dir / ARTIFACT_FILE
    if not path.is_file():
        return {}
    doc = read_json(path)
    provenance = doc.get("provenance") if isinstance(doc, dict) else None
    return dict(provenance) if isinstance(provenance, dict) else {}


def golden_provenance(store: GoldenStore | None, result: ComparisonResult) -> dict[str, Any]:
    """Who approved the golden, when, why and from which run: the version that wrote it. ``store``:
    one ``GoldenStore`` for every result of a report (its history is read once), or None.

    Informational only: a store without this case or without history gives nothing, and an
    unreadable history is named instead of failing the whole report.
    """
    if store is None or not (result.case and result.env and result.platform):
        return {}
    try:
        version = store.writer_of(GoldenKey(store.resolve(result.case), result.env, result.platform))
    except StoreError as exc:
        return {"history": f"unavailable ({exc})"} if "unknown case" not in str(exc) else {}
    if version is None:
        return {}
    return {"version": version.label, "approved": version.time, "approver": version.approver,
            "reason": version.reason, "source run": version.source_run_id or "—", **(version.provenance or {})}


def open_report_store(root: Path | None) -> GoldenStore | None:
    """The store whose history gives the goldens' provenance (None: no store, or one that cannot be
    opened — provenance is informational)."""
    if root is None:
        return None
    try:
        return GoldenStore(root)
    except StoreError:
        return None


def load_inputs(paths: Sequence[str | Path], store_root: Path | None = None) -> tuple[Report, Path | None]:
    """Every result in ``paths``, plus the default output folder (None when there are several)."""
    store = open_report_store(store_root)
    entries: list[CaseEntry] = []
    findings: list[Finding] = []
    beside: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            result_path = path / RESULT_FILE
            if not result_path.is_file():
                raise FormatError(f"no {RESULT_FILE} in this run folder (run `golden check` or `golden diff` first)",
                                  path=path)
            provenance = _artifact_provenance(path)
            beside.append(path / REPORT_DIR)
        elif path.is_file():
            result_path, provenance = path, {}
            beside.append(path.parent / REPORT_DIR)
        else:
            raise GoldenError(f"{path}: no such run folder or result file")
        doc = read_json(result_path)
        entries.extend(CaseEntry(r, candidate_provenance=provenance,
                                 reference_provenance=golden_provenance(store, r))
                       for r in results_from_json(doc, path=result_path))
        findings += findings_from_json(doc, path=result_path)
    default_out = beside[0] if len(beside) == 1 else None
    return Report(tuple(entries), findings=tuple(findings)), default_out
