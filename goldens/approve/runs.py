"""Which run an approval acts on: an artifact path, a run folder, a run id under ``runs/``, or a
golden_values file as Megatron's CI writes it — and the candidate(s) for it (the staged one, with
its base version, or one made now)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..case import check_name
from ..errors import GoldenError
from ..model import Artifact
from .candidate import Candidate, list_pending, now_iso
from .guardrails import ApprovalRefused

if TYPE_CHECKING:
    from ..store import GoldenStore


def resolve_run(run: str | Path, runs_dir: str | Path = "runs") -> Path:
    """A run given as artifact.json, its directory, a Megatron golden_values file, or a run id under
    ``runs_dir``."""
    path = Path(run)
    for candidate in (path, path / "artifact.json", Path(runs_dir) / str(run) / "artifact.json"):
        if candidate.is_file():
            return candidate.resolve()
    raise GoldenError(f"no run {str(run)!r}: expected an artifact.json, a run directory, a golden_values file "
                      f"or a run id under {runs_dir}/")


def run_target(artifact: Artifact) -> tuple[str | None, str | None]:
    """The env and platform a run declares it ran as (provenance ``env`` / ``platform``)."""
    prov = artifact.provenance or {}
    env, platform = prov.get("env"), prov.get("platform")
    return (env if isinstance(env, str) else None, platform if isinstance(platform, str) else None)


def candidates_for_run(store: "GoldenStore", run: str | Path, *, case: str | None = None,
                       env: str | None = None, platform: str | None = None,
                       runs_dir: str | Path = "runs") -> list[Candidate]:
    """The candidate(s) for one run: its staged candidate if there is one (with the staged
    base version), else one made now for the target given or declared by the run."""
    from ..formats import read_run

    path = resolve_run(run, runs_dir)
    artifact = read_run(path, env=env, platform=platform)
    if case is not None and check_name(case) != artifact.case:
        raise ApprovalRefused(f"run {artifact.run_id!r} is of case {artifact.case!r}, not {case!r}")
    staged = [c for c in list_pending(store, case=artifact.case, env=env, platform=platform)
              if c.run_id == artifact.run_id and Path(c.artifact) == path]
    if staged:
        return staged
    declared_env, declared_platform = run_target(artifact)
    env, platform = env or declared_env, platform or declared_platform
    missing = [f"--{what}" for what, value in (("env", env), ("platform", platform)) if value is None]
    if missing:
        raise ApprovalRefused(f"run {artifact.run_id!r} does not say which golden it targets: "
                              f"give {' and '.join(missing)}")
    return [Candidate(case=check_name(artifact.case), env=check_name(env, "env"),
                      platform=check_name(platform, "platform"), run_id=artifact.run_id,
                      artifact=str(path), base_version=None, fingerprint=artifact.fingerprint,
                      created=now_iso())]
