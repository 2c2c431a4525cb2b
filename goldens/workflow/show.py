"""``golden show CASE[@REF]``: one case's goldens as the command shows them — filtered, with where they
come from (the current files or a version, and who wrote it) and the fingerprint of each file's run.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..core.errors import GoldenError, StoreError
from ..core.model import GoldenKey, GoldenSet
from ..files.formats.golden import metric_to_json
from ..store import GoldenStore, Version, parse_case_ref
from ..store.git_history import GitHistory


@dataclass(frozen=True)
class ShownGolden:
    """One golden file of a case view: the metrics and scalars selected, and the fingerprint of the run
    that wrote it (None: not recorded)."""

    key: GoldenKey
    golden: GoldenSet
    names: tuple[str, ...]
    scalars: dict[str, float]
    fingerprint: str | None

    def to_json(self) -> dict[str, Any]:
        """Full precision; a scalar that is NaN or infinite as its ``repr`` (strict JSON has no literal)."""
        return {"file": self.key.filename(), "env": self.key.env, "platform": self.key.platform,
                "phase": self.key.phase, "fingerprint": self.fingerprint,
                "metrics": {n: metric_to_json(self.golden.metrics[n]) for n in self.names},
                "scalars": {n: (v if v == v and abs(v) != float("inf") else repr(v)) for n, v in self.scalars.items()}}


@dataclass(frozen=True)
class CaseView:
    """A case's goldens (current files, or at ``version``), filtered: where they come from (``origin``),
    the readable ones, and the unreadable ones with their errors."""

    case: str
    version: str | None
    origin: str
    goldens: tuple[ShownGolden, ...]
    unreadable: dict[GoldenKey, GoldenError]

    def to_json(self) -> dict[str, Any]:
        return {"case": self.case, "version": self.version, "origin": self.origin,
                "goldens": [g.to_json() for g in self.goldens],
                "unreadable": [{"file": k.filename(), "error": str(e)} for k, e in self.unreadable.items()]}


def show_case(store: GoldenStore, ref: str, *, env: str | None = None, platform: str | None = None,
              metrics: Sequence[str] = (), phase: int | None = None) -> CaseView:
    """``golden show CASE[@REF]``: the case's goldens that match the filters (each of ``env``, ``platform``,
    ``phase``, ``metrics`` when given). No golden matching, or a metric none of the readable goldens has,
    is an input error (``StoreError``)."""
    case, version = parse_case_ref(ref)
    case = store.resolve(case)
    found = store.goldens(case, version)
    origin = _origin(store, case, version)
    chosen = {k: g for k, g in found.items()
              if (env is None or k.env == env) and (platform is None or k.platform == platform)
              and (phase is None or k.phase == phase)}
    if not chosen:
        have = ", ".join(k.filename() for k in found) or "none"
        raise StoreError(f"{ref}: no golden matches the filters (has: {have})")
    readable = {k: g for k, g in chosen.items() if not isinstance(g, GoldenError)}
    broken = {k: g for k, g in chosen.items() if isinstance(g, GoldenError)}
    unknown = [m for m in metrics if not any(m in g.metrics or m in g.scalars for g in readable.values())]
    if unknown:
        raise StoreError(f"{ref}: no metric {unknown[0]!r} in the selected goldens")
    shown = tuple(ShownGolden(key, golden, tuple(n for n in golden.metrics if not metrics or n in metrics),
                              {n: v for n, v in golden.scalars.items() if not metrics or n in metrics},
                              _fingerprint(store, key, version))
                  for key, golden in readable.items())
    return CaseView(case, version, origin, shown, broken)


def _fingerprint(store: GoldenStore, key: GoldenKey, version: str | None) -> str | None:
    """The fingerprint of the run that wrote the file: the current one, or as of ``version``."""
    if version is None:
        return store.fingerprint_of(key)
    writer = store.writer_of(key, upto=version)
    return writer.fingerprint if writer is not None else None


def _origin(store: GoldenStore, case: str, version: str | None) -> str:
    """Where the shown goldens come from: the current files (and the latest version), or the version
    asked for and who wrote it (a git revision also as the commit it names)."""
    versions = store.history(case)
    if version is None:
        return (f"current files (latest version {versions[-1].label})" if versions
                else "current files (no history yet)")
    found = [v for v in versions if v.ref == version or (v.commit and v.commit.startswith(version))]
    backend = store.backend
    if not found and isinstance(backend, GitHistory):
        commit = backend.resolve(version)
        found = [v for v in versions if v.commit == commit]
        return f"{version} ({commit[:12]})" + (f": {_who(found[-1])}" if found else "")
    return f"{version}: {_who(found[-1])}" if found else version


def _who(version: Version) -> str:
    if not version.attributed:
        return f"unattributed (committed by {version.author} at {version.time})"
    return f"{version.action} by {version.approver} at {version.time}"
