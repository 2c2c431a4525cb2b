"""The pending candidate: the contract between a check and a review (schema ``golden.pending/1``).

``golden diff`` / ``golden check`` only *stage* a candidate — one small JSON file per case, env
and platform under ``<store>/.pending/<case path>/`` (git-ignored) — and a person later accepts or
rejects it. The file holds case (its path), env, platform, run id, the absolute path of the run's
``artifact.json``, what it was compared against — ``base_version`` (a ledger store: the case's
version; approving is refused once a later version touched the same golden files) and
``base_files`` (every store: the sha256 of the target's golden files; a git store refuses the
approval once they changed) — the run's fingerprint, the overall verdict and one line per metric.
It lives in the store, so ``golden pending`` finds every candidate in one place.

A pending record is read as untrusted input: its names are checked before they make a path,
``.pending`` and everything in it must be real folders and regular files (never followed: a
symlink or a wrong file type is refused in one line, and fsck reports it), and the run it points
at is read only when it is a regular file or a run folder.
"""
from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import FormatError, GoldenError, StoreError
from ..core.model import Artifact, GoldenKey
from ..files.atomic import atomic_write_text
from ..files.case import check_case_path, check_name
from ..files.formats.jsontext import read_json
from ..files.formats.run import read_run
from ..store import LEDGER, STORE_ENV
from ..store.safety import PENDING_DIR, in_ci, pending_problems, plain_name
from ..store.tree import case_matches, check_case_pattern

if TYPE_CHECKING:
    from ..core.result import ComparisonResult, MetricVerdict
    from ..store import GoldenStore

PENDING_SCHEMA = "golden.pending/1"


@dataclass(frozen=True, kw_only=True)
class CandidateMetric:
    """One metric verdict as staged: enough to list, select (--only-failing) and review."""

    phase: int
    metric: str
    verdict: str          # pass | fail | missing | new | skipped (goldens.core.result.Verdict)
    passed: bool
    explanation: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"phase": self.phase, "metric": self.metric, "verdict": self.verdict,
                "passed": self.passed, "explanation": self.explanation}


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """A run proposed as the new golden of (case, env, platform).

    ``base_version`` is the store's ledger version of the case when the candidate was made, and
    ``base_files`` the sha256 of the target's golden files then (None: absent); approving it is
    refused once the target has moved on (someone approved in between). ``None`` means "made now"
    (a run approved directly, with no staged comparison).
    """

    case: str
    env: str
    platform: str
    run_id: str
    artifact: str                     # absolute path of the run's artifact.json
    base_version: int | None
    fingerprint: str | None = None
    created: str = ""
    verdict: str = "new"              # pass | fail | new (no golden to compare with)
    metrics: tuple[CandidateMetric, ...] = ()
    base_files: dict[str, str | None] | None = None
    path: Path | None = field(default=None, compare=False)  # where it is staged, if it is

    @property
    def target(self) -> str:
        return f"{self.case} {self.env}/{self.platform}"

    def failing(self) -> dict[int, set[str]]:
        """Metric names per phase whose staged verdict did not pass (approvable ones only)."""
        out: dict[int, set[str]] = {}
        for m in self.metrics:
            if not m.passed and m.verdict != "missing":
                out.setdefault(m.phase, set()).add(m.metric)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"schema": PENDING_SCHEMA, "case": self.case, "env": self.env, "platform": self.platform,
                "run_id": self.run_id, "artifact": self.artifact, "base_version": self.base_version,
                "base_files": self.base_files, "fingerprint": self.fingerprint, "created": self.created,
                "verdict": self.verdict,
                "metrics": [m.to_json() for m in self.metrics]}

    @classmethod
    def from_json(cls, doc: Any, *, path: Path | None = None) -> Candidate:
        if not isinstance(doc, dict) or doc.get("schema") != PENDING_SCHEMA:
            raise FormatError(f"not a pending candidate (expected schema {PENDING_SCHEMA!r})", path=path)
        try:
            metrics = tuple(CandidateMetric(phase=int(m["phase"]), metric=str(m["metric"]),
                                            verdict=str(m["verdict"]), passed=bool(m["passed"]),
                                            explanation=str(m.get("explanation", "")))
                            for m in doc.get("metrics") or ())
            for name in ("case", "env", "platform", "run_id", "artifact"):
                if not isinstance(doc[name], str) or not doc[name]:
                    raise ValueError(f"{name} must be a non-empty string")
            base = doc["base_version"]
            if base is not None and (isinstance(base, bool) or not isinstance(base, int)):
                raise ValueError(f"base_version must be an integer, got {base!r}")
            base_files = doc.get("base_files")
            if base_files is not None and not (isinstance(base_files, dict) and all(
                    isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in base_files.items())):
                raise ValueError("base_files must map file names to hashes")
            return cls(case=check_case_path(doc["case"]), env=check_name(doc["env"], "env"),
                       platform=check_name(doc["platform"], "platform"), run_id=doc["run_id"],
                       artifact=doc["artifact"], base_version=base, fingerprint=doc.get("fingerprint"),
                       created=str(doc.get("created", "")), verdict=str(doc.get("verdict", "new")),
                       metrics=metrics, base_files=base_files, path=path)
        except KeyError as exc:
            raise FormatError(f"missing field {exc.args[0]!r}", path=path) from None
        except (TypeError, ValueError, StoreError) as exc:
            raise FormatError(str(exc), path=path) from None


def pending_root(store: GoldenStore) -> Path:
    return Path(store.root) / PENDING_DIR


def checked_pending_root(store: GoldenStore) -> Path:
    """``<store>/.pending``, refused (before anything is read or written) unless it and everything
    in it are real folders and regular files."""
    problems = pending_problems(Path(store.root))
    if problems:
        path, why = problems[0]
        raise StoreError(f"refusing to use {path}: it {why}; nothing read or written, run golden fsck")
    return pending_root(store)


def candidate_path(store: GoldenStore, case: str, env: str, platform: str) -> Path:
    """``<store>/.pending/<case path>/<env>_<platform>.json`` (env never holds '_', so it parses back)."""
    name = f"{check_name(env, 'env')}_{check_name(platform, 'platform')}.json"
    return pending_root(store) / check_case_path(case) / plain_name(name, "candidate file name")


def remove_empty_folders(path: Path) -> None:
    """After a candidate file is gone: its case path's folders under ``.pending`` that are now empty."""
    folder = path.parent
    while folder.name != PENDING_DIR and folder != folder.parent:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def now_iso() -> str:
    """Microseconds: a git store orders a candidate against the approvals around it by time."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def current_version(store: GoldenStore, case: str) -> int:
    """The case's ledger version (0 without history, and always in a git store, whose versions are
    commits: there ``base_files`` says what a candidate was compared against)."""
    if store.backend_name != LEDGER:
        return 0
    entry = store.current_entry(case)
    return 0 if entry is None else int(entry.number)


def target_keys(case: str, env: str, platform: str) -> list[GoldenKey]:
    """The goldens of one target: phase 1 and the ``_2nd`` file."""
    return [GoldenKey(case, env, platform, phase) for phase in (1, 2)]


def target_files(case: str, env: str, platform: str) -> list[str]:
    """The golden files of one target: phase 1 and the ``_2nd`` file."""
    return [key.filename() for key in target_keys(case, env, platform)]


def _summarise(result: ComparisonResult | None) -> tuple[str, tuple[CandidateMetric, ...]]:
    if result is None:
        return "new", ()
    verdicts: list[MetricVerdict] = list(result.metric_verdicts())
    metrics = tuple(CandidateMetric(phase=m.phase, metric=m.metric, verdict=str(m.verdict.value),
                                    passed=bool(m.passed), explanation=m.explanation) for m in verdicts)
    return str(result.verdict.value), metrics


def stage_candidate(store: GoldenStore, artifact: Artifact | str | Path, env: str, platform: str,
                    result: ComparisonResult | None = None, *, case: str | None = None,
                    ci: bool | None = None) -> Candidate | None:
    """Stage a run as the pending candidate for (case, env, platform); the newest run replaces
    an older candidate of the same target. ``result=None`` means the case has no golden yet.
    ``case`` (default: the run's) is resolved in the store to the case's path.

    Called by ``golden diff`` / ``golden check`` when a run fails or has no golden. In CI
    (``CI`` set, or ``ci=True``) nothing is written and ``None`` is returned: CI never writes.
    """
    if in_ci(ci):
        return None
    if not isinstance(artifact, Artifact):
        artifact = read_run(artifact, env=env, platform=platform)
    if not artifact.source:
        raise GoldenError(f"run {artifact.run_id!r}: the artifact has no file to point the candidate at")
    verdict, metrics = _summarise(result)
    the_case = store.resolve(case or artifact.case)
    env, platform = check_name(env, "env"), check_name(platform, "platform")
    candidate = Candidate(case=the_case, env=env, platform=platform, run_id=artifact.run_id,
                          artifact=str(Path(artifact.source).resolve()),
                          base_version=current_version(store, the_case),
                          base_files=store.file_hashes(the_case, target_files(the_case, env, platform)),
                          fingerprint=artifact.fingerprint, created=now_iso(), verdict=verdict,
                          metrics=metrics)
    path = candidate_path(store, candidate.case, env, platform)
    checked_pending_root(store)
    ignore = pending_root(store) / ".gitignore"
    if not ignore.exists():
        atomic_write_text(ignore, "*\n")  # candidates are never committed, in any repository
    atomic_write_text(path, json.dumps(candidate.to_json(), indent=2) + "\n")
    return replace(candidate, path=path)


def read_candidate(path: Path) -> Candidate:
    return Candidate.from_json(read_json(path), path=path)


def run_target(artifact: Artifact) -> tuple[str | None, str | None]:
    """The env and platform a run declares it ran as (provenance ``env`` / ``platform``): what a
    candidate made from the run targets, and what an approval checks the candidate against."""
    prov = artifact.provenance or {}
    env, platform = prov.get("env"), prov.get("platform")
    return (env if isinstance(env, str) else None, platform if isinstance(platform, str) else None)


def candidate_run(candidate: Candidate) -> Artifact:
    """The run a candidate points at, read only when it is a regular file or a run folder (a pipe
    or a device there is refused, never read)."""
    path = Path(candidate.artifact)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None  # gone: read_run says so precisely
    if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise FormatError("not a regular file or a run folder", path=path)
    return read_run(path, env=candidate.env, platform=candidate.platform)


def list_pending(store: GoldenStore, *, case: str | None = None, env: str | None = None,
                 platform: str | None = None, metrics: tuple[str, ...] = ()) -> list[Candidate]:
    """Staged candidates, sorted by case, env, platform. ``case`` is a case path, a bare name or a
    glob (``gpt/*``); env and platform match exactly; with ``metrics``, only candidates whose run
    holds one of them (what a bulk approval of those metrics can take)."""
    root = pending_root(store)
    if case is not None:
        check_case_pattern(case)
    for value, what in ((env, "env"), (platform, "platform")):
        if value is not None:
            check_name(value, what)
    if not Path(store.root).is_dir():  # a mistyped --store is not "no pending candidates"
        raise StoreError(f"no golden store at {store.root} (set --store or ${STORE_ENV})")
    checked_pending_root(store)
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.rglob("*.json")):
        try:
            candidate = read_candidate(path)
        except FormatError:
            if not path.exists():
                continue  # accepted or rejected by another process meanwhile
            raise
        if ((case is None or case_matches(case, candidate.case)) and (env is None or candidate.env == env)
                and (platform is None or candidate.platform == platform)
                and (not metrics or _holds_any(candidate, metrics))):
            found.append(candidate)
    return found


def _holds_any(candidate: Candidate, metrics: tuple[str, ...]) -> bool:
    """Whether the candidate's run has one of ``metrics`` (its staged verdicts say; else its run)."""
    if candidate.metrics:
        return any(m.metric in metrics for m in candidate.metrics)
    try:
        run = read_run(candidate.artifact, env=candidate.env, platform=candidate.platform)
    except GoldenError:
        return True  # let the approval say why the run cannot be read
    return any(name in metrics for phase in run.phases.values() for name in phase.metrics)

