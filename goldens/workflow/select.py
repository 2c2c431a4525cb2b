"""What ``golden approve`` / ``golden reject`` act on: a run's candidates or the pending ones,
narrowed by filters; a new target's env / platform close to a known name refused as a typo.
"""
from __future__ import annotations

from collections.abc import Sequence

from ..approve import Candidate, candidates_for_run, list_pending
from ..core.errors import GoldenError
from ..store import GoldenStore
from ..store.target_names import refuse_typos
from ..store.tree import is_pattern


def select_candidates(store: GoldenStore, run: str | None, pending: bool, *, case: str | None = None,
                      env: str | None = None, platform: str | None = None, metrics: Sequence[str] = (),
                      new_env: bool = False, new_platform: bool = False) -> list[Candidate]:
    """The candidates ``golden approve`` / ``reject`` act on: a RUN's (for one case: ``case`` may not be a
    pattern there), or the staged ones (``pending``) narrowed by case pattern, env, platform and the
    metrics they hold. A RUN approved for a target its case has no golden for writes a new golden file:
    an ``env`` / ``platform`` given there that is a close match of a name the store knows is refused as a
    typo, unless ``new_env`` / ``new_platform`` say it is new on purpose."""
    if run is not None and pending:
        raise GoldenError("give a RUN or --pending, not both")
    if run is None:
        if not pending:
            raise GoldenError("say what to act on: a RUN, or --pending (with --case/--env/--platform to narrow it)")
        return list_pending(store, case=case, env=env, platform=platform, metrics=tuple(metrics))
    if case is not None and is_pattern(case):
        raise GoldenError(f"--case {case!r} is a pattern: with a RUN, name the one case it is for")
    found = candidates_for_run(store, run, case=case, env=env, platform=platform)
    for c in found:
        if not any((k.env, k.platform) == (c.env, c.platform) for k in store.keys(c.case)):
            refuse_typos(store, env=env, platform=platform, new_env=new_env, new_platform=new_platform)
    return found
