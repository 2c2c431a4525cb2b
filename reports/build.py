"""The two library calls behind ``golden report``: render results, or render golden changes."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from goldens.core.errors import GoldenError
from goldens.core.pairing import Finding
from goldens.core.result import ComparisonResult
from goldens.files.atomic import atomic_write_chunks
from goldens.store import GoldenStore, default_store_root
from reports.changes import GoldenChanges, compare_revisions
from reports.document import CaseEntry, Report
from reports.html import changes_html, result_html
from reports.inputs import golden_provenance, load_inputs, open_report_store
from reports.json_report import bulk_json_chunks, changes_json, result_json
from reports.junit import result_junit
from reports.markdown import changes_markdown, result_markdown
from reports.output import CHANGES_FILES, RESULT_FILES, append_step_summary, write_all
from reports.revisions import Revision, parse_change_spec, read_git_revisions


@dataclass(frozen=True)
class Written:
    markdown: str
    files: tuple[Path, ...]
    step_summary: Path | None
    passed: bool


def build_result_report(inputs: Sequence[str | Path], out: Path | None, formats: Sequence[str], *,
                        store: Path | None = None, findings: Sequence[Finding] = ()) -> Written:
    """Results from run folders / result files → the requested formats in ``out`` (default: beside the run).
    ``findings``: files a bulk judgement could not judge; every format carries them (and fails)."""
    given = store
    store = store or default_store_root()
    report, default_out = load_inputs(inputs, store if store.is_dir() else None)
    report = dataclasses.replace(report, store=None if given is None else str(given),  # for the approve commands
                                 findings=report.findings + tuple(findings))
    target = out or default_out
    if target is None:
        raise GoldenError(f"{len(inputs)} inputs: give --out DIR for the combined report")
    markdown = result_markdown(report)
    renderers = {"md": lambda: markdown, "html": lambda: result_html(report),
                 "junit": lambda: result_junit(report), "json": lambda: result_json(report)}
    files = write_all(target, {f: renderers[f] for f in formats}, RESULT_FILES)
    return Written(markdown, tuple(files), append_step_summary(markdown), report.passed)


def build_bulk_report(results: Sequence[ComparisonResult], out: Path, formats: Sequence[str], *,
                      store: Path | None = None, findings: Sequence[Finding] = ()) -> Written:
    """The reports of a whole tree judged in one process, from the results in memory (never written and
    read back): the goldens' provenance from one store (its history read once), the HTML light, the
    JSON streamed a result at a time with per-step data only where a metric failed."""
    root = store or default_store_root()
    provenance = open_report_store(root if root.is_dir() else None)
    report = Report(tuple(CaseEntry(r, reference_provenance=golden_provenance(provenance, r)) for r in results),
                    store=None if store is None else str(store), findings=tuple(findings))
    markdown = result_markdown(report)
    renderers = {"md": lambda: markdown, "html": lambda: result_html(report), "junit": lambda: result_junit(report)}
    files = write_all(out, {f: renderers[f] for f in formats if f in renderers}, RESULT_FILES)
    if "json" in formats:
        target = out / RESULT_FILES["json"]
        try:
            atomic_write_chunks(target, bulk_json_chunks(report))
        except OSError as exc:
            raise GoldenError(f"cannot write {target}: {exc.strerror or exc}") from None
        files.append(target)
    return Written(markdown, tuple(files), append_step_summary(markdown), report.passed)


def read_changes(spec_text: str, store: Path | None) -> GoldenChanges:
    """``BASE..HEAD`` over the git history of ``store``, or ``CASE@A..B`` from its history."""
    spec = parse_change_spec(spec_text)
    store = store or default_store_root()
    if spec.case is not None:  # CASE@A..B: two versions of one case in the store
        base, head = (_store_revision(store, spec.case, v) for v in (spec.base, spec.head))
    else:
        base, head = read_git_revisions(store, spec.base, spec.head)
    changes = compare_revisions(base.goldens, head.goldens, base_label=base.label, head_label=head.label)
    return dataclasses.replace(changes, notes=changes.notes + base.skipped + head.skipped)


def _store_revision(root: Path, case: str, ref: str) -> Revision:
    """One version of a case; a file that cannot be read there is skipped with a note."""
    store = GoldenStore(root)
    case = store.resolve(case)
    ref = f"v{ref}" if ref.isdigit() and store.backend_name == "ledger" else ref
    goldens, skipped = {}, []
    for key, golden in store.goldens(case, ref).items():
        if isinstance(golden, GoldenError):
            skipped.append(f"{key.filename()} at {case}@{ref}: unreadable (skipped)")
        else:
            goldens[key.filename()] = golden
    return Revision(f"{case}@{ref}", goldens, skipped=tuple(skipped))


def build_changes_report(spec_text: str, store: Path | None, out: Path | None, formats: Sequence[str]) -> Written:
    """The golden-change report; without ``out`` only the Markdown is produced (for stdout)."""
    changes = read_changes(spec_text, store)
    markdown = changes_markdown(changes)
    files: list[Path] = []
    if out is not None:
        renderers = {"md": lambda: markdown, "html": lambda: changes_html(changes),
                     "json": lambda: changes_json(changes)}
        files = write_all(out, {f: renderers[f] for f in formats}, CHANGES_FILES)
    return Written(markdown, tuple(files), append_step_summary(markdown), True)
