"""Many candidates in one process (``golden judge``): found, paired with their targets, each judged as
``judge.judge_run`` judges one run; the summary, rows and JSON of what that decided
(``BulkJudgement``), and its results, findings and reports written to a folder (``publish_bulk``; the
report builder loads pandas, so it is imported there only).
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports.output import RESULT_FILES

from .. import inputs
from ..core.errors import EXIT_DIFFERENCE, EXIT_PASS, GoldenError, NotATrainingGolden
from ..core.pairing import ARTIFACT, Finding, pair_candidates
from ..core.result import ComparisonResult
from ..files.atomic import atomic_write_text
from ..files.formats.artifact import read_artifact
from ..files.formats.run import megatron_run
from ..inputs import Loaded
from ..store import GoldenStore
from .judge import Judgement, judge_run


@dataclass(frozen=True)
class BulkJudgement:
    """What judging many candidates produced: one judgement per paired target, and the findings —
    what was not judged (unpaired, unreadable, a duplicate) or had no golden to be judged by."""

    judgements: tuple[Judgement, ...]
    findings: tuple[Finding, ...]

    @property
    def results(self) -> tuple[ComparisonResult, ...]:
        return tuple(j.result for j in self.judgements if j.result is not None)

    @property
    def passed(self) -> bool:
        return not self.findings and all(j.passed for j in self.judgements)

    @property
    def exit_code(self) -> int:
        return EXIT_PASS if self.passed else EXIT_DIFFERENCE

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(note for j in self.judgements for note in j.notes)

    def summary(self) -> dict[str, Any]:
        """Counts; ``preexisting``: how often each check failed on the committed goldens themselves (the
        tree's own defects, apart from regressions)."""
        results = self.results
        counts = Counter(check for r in results for check in r.preexisting)
        return {"targets": len(self.judgements), "passed": sum(r.passed for r in results),
                "failed": sum(not r.passed for r in results), "regressions": sum(r.regression for r in results),
                "findings": len(self.findings), "preexisting": dict(sorted(counts.items()))}

    def summary_line(self) -> str:
        """``PASS: 3 passed, 0 failed, 0 finding(s)``, with the failures only on pre-existing defects apart."""
        s = self.summary()
        line = f"{'PASS' if self.passed else 'FAIL'}: {s['passed']} passed, {s['failed']} failed"
        if s["failed"] != s["regressions"]:
            only_preexisting = s["failed"] - s["regressions"]
            line += f" ({s['regressions']} regression(s), {only_preexisting} only on pre-existing defects)"
        return line + f", {s['findings']} finding(s)"

    def preexisting_lines(self) -> list[str]:
        """The tree audit: each check that fails on the committed goldens themselves, with its count."""
        return [f"pre-existing in the committed goldens: {check} fails in {n} target(s)"
                for check, n in self.summary()["preexisting"].items()]

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(case, target, verdict, why) per judged target, failures first (regressions before failures only
        on pre-existing defects), then per finding (its kind as the verdict)."""
        rows = []
        for r in sorted(self.results, key=lambda r: (r.passed, not r.regression)):
            failing = [f"{'resume ' if m.phase == 2 and r.resume and m in r.resume.metrics else ''}{m.metric}"
                       for m in r.failures()]
            why = ("failing: " + ", ".join(failing)) if failing else (r.resume.explanation if r.resume is not None
                                                                       and not r.resume.passed else "")
            verdict = PASS_VERDICT if r.passed else FAIL_VERDICT if r.regression else PREEXISTING_VERDICT
            rows.append((r.case or "—", f"{r.env}/{r.platform}", verdict, why))
        for f in self.findings:
            rows.append((f.case or f.path, "/".join(x for x in (f.env, f.platform) if x) or "—", f.kind, f.message))
        return rows

    def to_json(self) -> dict[str, Any]:
        """The ``golden judge --format json`` document: verdict, summary, every result (without its steps)
        and every finding."""
        return {"schema": JUDGE_SCHEMA, "passed": self.passed, "summary": self.summary(),
                "results": [r.to_json(steps=False) for r in self.results],
                "findings": [f.to_json() for f in self.findings]}


JUDGE_SCHEMA = "golden.judge/1"
PASS_VERDICT, FAIL_VERDICT, PREEXISTING_VERDICT = "pass", "fail", "fail (pre-existing)"  # a target's, in rows()


def judge_bulk(paths: Sequence[str | Path], *, store_root: Path | None, policy: str | None = None,
               force: str | None = None, stage: bool = True, generation: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> BulkJudgement:
    """Every candidate under ``paths`` against the store, in one process: found (``inputs.find_candidates``),
    paired (``pairing.pair_candidates``), each judged as ``judge_run`` judges one run — staged when
    failing, by the one staging rule, when ``stage``. A file that cannot be judged is a finding; only a
    bad option, path or store stops the whole batch (GoldenError, exit 2). ``progress(done, total)`` is
    told after each target (the CLI's progress bar)."""
    store = GoldenStore(store_root, generation=generation)
    cases = store.cases()  # no store: the usage error, before anything else
    inputs.load_policies(policy)
    files, findings = inputs.find_candidates(paths)
    if not files and not findings:
        findings.append(Finding(", ".join(map(str, paths)), "empty", "no candidate files (golden_values_*.json, "
                                                                      "artifact.json) found"))
    listed: dict[str, set[tuple[str, str]]] = {}

    def goldens(case: str) -> set[tuple[str, str]]:
        if case not in listed:
            listed[case] = {(k.env, k.platform) for k in store.keys(case) if k.phase == 1}
        return listed[case]

    pairing = pair_candidates(files, cases, goldens)
    findings += pairing.findings
    judgements: list[Judgement] = []
    for done, target in enumerate(pairing.targets, start=1):
        try:
            run = _load_target(target)
            judgements.append(judge_run(store, run, case=target.case, env=target.env, platform=target.platform,
                                        policy=policy, force=force, stage=stage, tell_generation=not judgements))
        except GoldenError as exc:
            findings.append(Finding(target.path, "broken", str(exc), target.case, target.env, target.platform))
        if progress is not None:
            progress(done, len(pairing.targets))
    return BulkJudgement(tuple(judgements), tuple(findings))


def _load_target(target: Any) -> Loaded:
    """A paired candidate as a run of its target's case: a golden_values file (with its _2nd pair; an
    inference golden as it is) or an artifact."""
    path = Path(target.path)
    if target.kind == ARTIFACT:
        return inputs.load_artifact_side(read_artifact(path), str(path))
    try:
        artifact = megatron_run(path, case=target.case)
    except NotATrainingGolden:
        return inputs.load_inference_run(path, case=target.case)
    return inputs.load_artifact_side(artifact, str(path))


RESULTS_DIR = "results"
FINDINGS_FILE = "findings.json"
FINDINGS_SCHEMA = "golden.findings/1"


def publish_bulk(bulk: BulkJudgement, out: Path, *, store_root: Path | None) -> list[Path]:
    """Write what a bulk judgement decided into ``out``: ``results/*.json`` (one result per judged target,
    every step, readable by ``golden report``; the folder holds this judgement's results only),
    ``findings.json``, and the reports (Markdown, HTML, JUnit, JSON) of all results and findings —
    rendered from the results in memory, never read back from disk."""
    from reports.build import build_bulk_report  # pandas: only when reports are written

    results_dir = out / RESULTS_DIR
    if results_dir.is_dir():
        for stale in results_dir.glob("*.json"):
            stale.unlink()
    results_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for judgement in bulk.judgements:
        if judgement.result is None:
            continue
        r = judgement.result
        target = results_dir / f"{(r.case or 'case').replace('/', '--')}__{r.env}__{r.platform}.json"
        # compact: json's C encoder (an indented dump runs its pure-Python one, 10× slower on a tree)
        target.write_text(json.dumps(r.to_json(), allow_nan=False) + "\n", encoding="utf-8")
        written.append(target)
    findings = out / FINDINGS_FILE
    doc = {"schema": FINDINGS_SCHEMA, "findings": [f.to_json() for f in bulk.findings]}
    atomic_write_text(findings, json.dumps(doc, indent=2) + "\n")
    # every report is written, even when nothing could be judged: the findings are what it reports then
    reports = build_bulk_report(bulk.results, out, tuple(RESULT_FILES), store=store_root, findings=bulk.findings).files
    return [*written, findings, *reports]
