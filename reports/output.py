"""Write rendered reports to disk (atomically) and to GitHub's step summary."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from goldens.core.errors import GoldenError
from goldens.files.atomic import atomic_write_text

RESULT_FORMATS = ("md", "html", "junit", "json")
CHANGES_FORMATS = ("md", "html", "json")
RESULT_FILES = {"md": "report.md", "html": "report.html", "junit": "junit.xml", "json": "report.json"}
CHANGES_FILES = {"md": "changes.md", "html": "changes.html", "json": "changes.json"}


def parse_formats(text: str, allowed: Iterable[str]) -> tuple[str, ...]:
    """``md,html`` → ("md", "html"), rejecting unknown names (order kept, duplicates dropped)."""
    allowed = tuple(allowed)
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise GoldenError(f"--format {text!r}: choose from {', '.join(allowed)} (comma-separated)")
    return names


def write_all(out_dir: Path, renderers: dict[str, Callable[[], str]], files: dict[str, str]) -> list[Path]:
    """Render every requested format first, then write them, so a render error writes nothing."""
    rendered = {fmt: render() for fmt, render in renderers.items()}
    written = []
    for fmt, text in rendered.items():
        target = out_dir / files[fmt]
        try:
            atomic_write_text(target, text)
        except OSError as exc:
            raise GoldenError(f"cannot write {target}: {exc.strerror or exc}") from None
        written.append(target)
    return written


def append_step_summary(markdown: str) -> Path | None:
    """Append to ``$GITHUB_STEP_SUMMARY`` when GitHub Actions provides it."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    try:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(markdown if markdown.endswith("\n") else markdown + "\n")
    except OSError as exc:
        raise GoldenError(f"cannot append to GITHUB_STEP_SUMMARY {target}: {exc.strerror or exc}") from None
    return Path(target)
