"""Which run an approval acts on: an artifact path, a run folder, a run id under ``runs/``, or a
golden_values file as Megatron's CI writes it — and the candidate(s) for it (the staged one, with
its base version, or one made now)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import GoldenError, StoreError
from ..core.model import Artifact
from ..files.case import check_name
from ..files.formats.run import MEGATRON_RUN_SOURCE, read_run
from .candidate import Candidate, list_pending, now_iso, run_target
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


def case_of_run(store: GoldenStore, artifact: Artifact, given: str | None = None) -> str:
    """The store case a run is for, as a path. ``given`` (``--case``) wins — a run artifact must
    agree with it; a Megatron golden file has no case of its own, so it takes any. Else the run's own
    case resolved in the store; for a Megatron golden file first the longest tail of its folder's path
    that names a case here (``…/moe/x/golden_values_….json`` → ``moe/x``), so a tree downloaded beside
    the store finds its cases even where a name repeats."""
    megatron = (artifact.provenance or {}).get("source") == MEGATRON_RUN_SOURCE
    if given is not None:
        case = store.resolve(given)
        if not megatron and _resolved(store, artifact.case) != case:
            raise ApprovalRefused(f"run {artifact.run_id!r} is of case {artifact.case!r}, not {given!r}")
        return case
    if megatron and artifact.source:
        found = store.case_for_folder(Path(artifact.source).parent)
        if found is not None:
            return found
    return store.resolve(artifact.case)


def _resolved(store: GoldenStore, case: str) -> str:
    try:
        return store.resolve(case)
    except StoreError:
        return case


def candidates_for_run(store: GoldenStore, run: str | Path, *, case: str | None = None,
                       env: str | None = None, platform: str | None = None,
                       runs_dir: str | Path = "runs") -> list[Candidate]:
    """The candidate(s) for one run: its staged candidate if there is one (with the staged
    base version), else one made now for the target given or declared by the run."""
    path = resolve_run(run, runs_dir)
    artifact = read_run(path, env=env, platform=platform)
    the_case = case_of_run(store, artifact, case)
    staged = [c for c in list_pending(store, case=the_case, env=env, platform=platform)
              if c.case == the_case and c.run_id == artifact.run_id and Path(c.artifact) == path]
    if staged:
        return staged
    declared_env, declared_platform = run_target(artifact)
    env, platform = env or declared_env, platform or declared_platform
    if env is None or platform is None:
        missing = [f"--{what}" for what, value in (("env", env), ("platform", platform)) if value is None]
        raise ApprovalRefused(f"run {artifact.run_id!r} does not say which golden it targets: "
                              f"give {' and '.join(missing)}")
    return [Candidate(case=the_case, env=check_name(env, "env"),
                      platform=check_name(platform, "platform"), run_id=artifact.run_id,
                      artifact=str(path), base_version=None, fingerprint=artifact.fingerprint,
                      created=now_iso())]
