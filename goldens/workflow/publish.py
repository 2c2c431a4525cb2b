"""``golden check`` after its run: the run judged (``judge.judge_run``), then the result and the
reports kept beside it. The report builder loads pandas: it is imported inside ``publish`` only.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports.output import RESULT_FILES

from .. import inputs
from ..files.atomic import atomic_write_text
from ..store import GoldenStore
from .judge import Judgement, judge_run


@dataclass(frozen=True)
class Published:
    """What ``publish`` wrote beside a run."""

    result_file: Path
    report_dir: Path


def publish(judgement: Judgement, run_dir: Path, *, store_root: Path | None) -> Published | None:
    """Keep what ``golden check`` decided beside the run: ``result.json`` and the reports in
    ``report/`` (Markdown, HTML, JUnit, JSON). Nothing when there was no golden to judge by."""
    from reports.build import build_result_report  # pandas: only when reports are written

    if judgement.result is None:
        return None
    result_file = run_dir / "result.json"
    atomic_write_text(result_file, json.dumps(judgement.result.to_json(), indent=2, allow_nan=False) + "\n")
    written = build_result_report([run_dir], None, tuple(RESULT_FILES), store=store_root)
    return Published(result_file, written.files[0].parent)


def check_run(report: Any, *, store_root: Path | None, env: str | None = None, platform: str | None = None,
              policy: str | None = None, force: str | None = None, generation: str | None = None,
              new_env: bool = False, new_platform: bool = False) -> tuple[Judgement, Published | None]:
    """``golden check`` after its run: judge the run's artifact (staged if failing or without a
    golden), then publish the result and reports beside it."""
    run = inputs.load_artifact_side(report.artifact)
    judgement = judge_run(GoldenStore(store_root, generation=generation), run, case=report.artifact.case, env=env,
                          platform=platform, policy=policy, force=force, new_env=new_env, new_platform=new_platform)
    return judgement, publish(judgement, report.artifact_path.parent, store_root=store_root)
