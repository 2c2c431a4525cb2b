"""The pending candidate: the contract between a check and a review (schema ``golden.pending/1``).

``golden diff`` / ``golden check`` only *stage* a candidate — one small JSON file per case, env
and platform under ``<store>/.pending/`` (git-ignored) — and a person later accepts or rejects
it. The file holds case, env, platform, run id, the absolute path of the run's ``artifact.json``,
``base_version`` (the case's ledger version it was compared against: approving is refused once a
later version touched the same golden files), the run's fingerprint, the overall verdict and one
line per metric. It lives in the store, so ``golden pending`` finds every candidate in one place.

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
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic import atomic_write_text
from ..case import check_name
from ..errors import FormatError, GoldenError, StoreError
from ..model import Artifact
from ..store import STORE_ENV
from ..store.safety import PENDING_DIR, pending_problems, plain_name
from .guardrails import in_ci

if TYPE_CHECKING:
    from ..result import ComparisonResult, MetricVerdict
    from ..store import GoldenStore

PENDING_SCHEMA = "golden.pending/1"


@dataclass(frozen=True, kw_only=True)
class CandidateMetric:
    """One metric verdict as staged: enough to list, select (--only-failing) and review."""

    phase: int
    metric: str
    verdict: str          # pass | fail | missing | new | skipped (goldens.result.Verdict)
    passed: bool
    explanation: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"phase": self.phase, "metric": self.metric, "verdict": self.verdict,
                "passed": self.passed, "explanation": self.explanation}


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """A run proposed as the new golden of (case, env, platform).

    ``base_version`` is the store's ledger version of the case when the candidate was made;
    approving it is refused once the case has moved on (someone approved in between).
    ``None`` means "made now" (a run approved directly, with no staged comparison).
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
                "fingerprint": self.fingerprint, "created": self.created, "verdict": self.verdict,
                "metrics": [m.to_json() for m in self.metrics]}

    @classmethod
    def from_json(cls, doc: Any, *, path: Path | None = None) -> "Candidate":
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
            return cls(case=check_name(doc["case"]), env=check_name(doc["env"], "env"),
                       platform=check_name(doc["platform"], "platform"), run_id=doc["run_id"],
                       artifact=doc["artifact"], base_version=base, fingerprint=doc.get("fingerprint"),
                       created=str(doc.get("created", "")), verdict=str(doc.get("verdict", "new")),
                       metrics=metrics, path=path)
        except KeyError as exc:
            raise FormatError(f"missing field {exc.args[0]!r}", path=path) from None
        except (TypeError, ValueError, StoreError) as exc:
            raise FormatError(str(exc), path=path) from None


def pending_root(store: "GoldenStore") -> Path:
    return Path(store.root) / PENDING_DIR


def checked_pending_root(store: "GoldenStore") -> Path:
    """``<store>/.pending``, refused (before anything is read or written) unless it and everything
    in it are real folders and regular files."""
    problems = pending_problems(Path(store.root))
    if problems:
        path, why = problems[0]
        raise StoreError(f"refusing to use {path}: it {why}; nothing read or written, run golden fsck")
    return pending_root(store)


def candidate_path(store: "GoldenStore", case: str, env: str, platform: str) -> Path:
    """``<store>/.pending/<case>/<env>_<platform>.json`` (env never holds '_', so it parses back)."""
    name = f"{check_name(env, 'env')}_{check_name(platform, 'platform')}.json"
    return pending_root(store) / check_name(case) / plain_name(name, "candidate file name")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def current_version(store: "GoldenStore", case: str) -> int:
    entry = store.current_entry(case)
    return 0 if entry is None else int(entry.version)


def _summarise(result: "ComparisonResult | None") -> tuple[str, tuple[CandidateMetric, ...]]:
    if result is None:
        return "new", ()
    verdicts: list[MetricVerdict] = list(result.metric_verdicts())
    metrics = tuple(CandidateMetric(phase=m.phase, metric=m.metric, verdict=str(m.verdict.value),
                                    passed=bool(m.passed), explanation=m.explanation) for m in verdicts)
    return str(result.verdict.value), metrics


def stage_candidate(store: "GoldenStore", artifact: Artifact | str | Path, env: str, platform: str,
                    result: "ComparisonResult | None" = None, *, ci: bool | None = None) -> Candidate | None:
    """Stage a run as the pending candidate for (case, env, platform); the newest run replaces
    an older candidate of the same target. ``result=None`` means the case has no golden yet.

    Called by ``golden diff`` / ``golden check`` when a run fails or has no golden. In CI
    (``CI`` set, or ``ci=True``) nothing is written and ``None`` is returned: CI never writes.
    """
    if in_ci(ci):
        return None
    if not isinstance(artifact, Artifact):
        from ..formats import read_run
        artifact = read_run(artifact, env=env, platform=platform)
    if not artifact.source:
        raise GoldenError(f"run {artifact.run_id!r}: the artifact has no file to point the candidate at")
    verdict, metrics = _summarise(result)
    candidate = Candidate(case=check_name(artifact.case), env=check_name(env, "env"),
                          platform=check_name(platform, "platform"), run_id=artifact.run_id,
                          artifact=str(Path(artifact.source).resolve()),
                          base_version=current_version(store, artifact.case),
                          fingerprint=artifact.fingerprint, created=now_iso(), verdict=verdict,
                          metrics=metrics)
    path = candidate_path(store, candidate.case, env, platform)
    checked_pending_root(store)
    atomic_write_text(path, json.dumps(candidate.to_json(), indent=2) + "\n")
    return replace(candidate, path=path)


def read_candidate(path: Path) -> Candidate:
    from ..formats import read_json

    return Candidate.from_json(read_json(path), path=path)


def candidate_run(candidate: Candidate) -> Artifact:
    """The run a candidate points at, read only when it is a regular file or a run folder (a pipe
    or a device there is refused, never read)."""
    from ..formats import read_run

    path = Path(candidate.artifact)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None  # gone: read_run says so precisely
    if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise FormatError("not a regular file or a run folder", path=path)
    return read_run(path, env=candidate.env, platform=candidate.platform)


def list_pending(store: "GoldenStore", *, case: str | None = None, env: str | None = None,
                 platform: str | None = None) -> list[Candidate]:
    """Staged candidates, sorted by case, env, platform; filters match exactly."""
    root = pending_root(store)
    for value, what in ((case, "case"), (env, "env"), (platform, "platform")):
        if value is not None:
            check_name(value, what)
    if not Path(store.root).is_dir():  # a mistyped --store is not "no pending candidates"
        raise StoreError(f"no golden store at {store.root} (set --store or ${STORE_ENV})")
    checked_pending_root(store)
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.glob("*/*.json")):
        try:
            candidate = read_candidate(path)
        except FormatError:
            if not path.exists():
                continue  # accepted or rejected by another process meanwhile
            raise
        if ((case is None or candidate.case == case) and (env is None or candidate.env == env)
                and (platform is None or candidate.platform == platform)):
            found.append(candidate)
    return found

