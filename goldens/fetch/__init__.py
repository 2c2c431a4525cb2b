"""``golden fetch``: candidate golden values from a CI run into a candidates folder.

The folder mirrors Megatron-LM's ``tests/functional_tests/test_cases`` layout, so it pairs with a
store of that shape file by file: ``<out>/<model>/<test>/golden_values_<env>_<platform>[_2nd].json``,
the bytes exactly as CI wrote them. Two sources, each found and named as Megatron's
``download_golden_values.py`` does: GitHub Actions artifacts of a workflow run (``github``) and
GitLab job artifacts of a pipeline and its functional child pipelines (``gitlab``).

Standard library only (urllib, zipfile). Every failure — no token, 401/403/404, a rate limit, a
bad zip, a hostile path in a zip or in a name — is one ``FetchError`` line, and nothing is
written: files are staged beside ``out`` and moved into place when the whole fetch succeeded.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import github, gitlab
from .http import FetchError
from .land import Staging

SOURCES = ("github", "gitlab")

__all__ = ["SOURCES", "FetchError", "Fetched", "fetch"]


@dataclass(frozen=True)
class Fetched:
    """What a fetch wrote (paths under ``out``) and notes on what it left out and why."""

    out: Path
    files: tuple[Path, ...]
    notes: tuple[str, ...]

    @property
    def folders(self) -> int:
        """How many test folders received files."""
        return len({f.parent for f in self.files})


def fetch(source: str, run_id: int, out: Path, *, repo: str | None = None, project: str | None = None,
          api_url: str | None = None, only_failing: bool = False,
          env: Mapping[str, str] = os.environ) -> Fetched:
    """Fetch the golden values of GitHub workflow run / GitLab pipeline ``run_id`` into ``out``."""
    source = source.lower()
    if source not in SOURCES:
        raise FetchError(f"unknown source {source!r}: choose {' or '.join(SOURCES)}")
    if run_id <= 0:
        raise FetchError(f"{'run' if source == 'github' else 'pipeline'} id must be a positive number, got {run_id}")
    if source == "github":
        if project is not None:
            raise FetchError("--project is for gitlab; GitHub takes --repo OWNER/NAME")
        where = github.connect(repo, api_url, env)
        with Staging(out, where.api.limits) as staging:
            notes = github.fetch_run(where, run_id, staging, only_failing=only_failing)
            files = staging.commit()
    else:
        if repo is not None:
            raise FetchError("--repo is for github; GitLab takes --project ID|GROUP/NAME")
        place = gitlab.connect(project, api_url, env)
        with Staging(out, place.api.limits) as staging:
            notes = gitlab.fetch_pipeline(place, run_id, staging, only_failing=only_failing)
            files = staging.commit()
    return Fetched(out, tuple(files), tuple(notes))
