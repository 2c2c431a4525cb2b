"""Fit Markdown into GitHub's comment limit by dropping whole rows and sections, never cutting one.

A PR comment over 65,536 characters is rejected outright, so a large result must summarise:
the headline and the most important rows always go in; less important rows and detail
sections go in while they fit; what was left out is said in a note.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

GITHUB_COMMENT_LIMIT = 65_536


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table; cells must already be escaped. ``align``: 'l' or 'r' per column."""
    align = align or ["l"] * len(headers)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [_row(headers), _row(rule), *(_row(r) for r in rows)]
    return "\n".join(lines) + "\n"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


@dataclass
class Budget:
    """Collects Markdown parts while the total stays within ``limit`` characters."""

    limit: int = GITHUB_COMMENT_LIMIT
    parts: list[str] = field(default_factory=list)

    @property
    def used(self) -> int:
        return sum(len(p) for p in self.parts)

    @property
    def left(self) -> int:
        return self.limit - self.used

    def add(self, text: str) -> bool:
        """Add ``text`` whole if it fits; False (and nothing added) otherwise."""
        if len(text) > self.left:
            return False
        self.parts.append(text)
        return True

    def add_if_room(self, text: str, *, reserve: int = 0) -> bool:
        """Add ``text`` whole if it fits and still leaves ``reserve`` characters free."""
        if len(text) + reserve > self.left:
            return False
        self.parts.append(text)
        return True

    def add_table(self, headers: Sequence[str], rows_by_priority: Sequence[Sequence[str]], *,
                  align: Sequence[str] | None = None, reserve: int = 0, omitted_note: Callable[[int], str],
                  display_order: Callable[[list[int]], list[int]] | None = None) -> int:
        """Add a complete table of as many rows as fit (most important first), then a note.

        ``reserve`` keeps room for what must still follow; ``display_order`` reorders the kept
        row indices for display (e.g. back to alphabetical). Returns the number of rows left out.
        """
        room = self.left - reserve
        kept: list[int] = []
        size = len(table(headers, [], align))
        for index, row in enumerate(rows_by_priority):
            row_size = len(_row(row)) + 1
            omitted_after = len(rows_by_priority) - index - 1
            note_size = len(omitted_note(omitted_after)) if omitted_after else 0
            if size + row_size + note_size > room:
                break
            kept.append(index)
            size += row_size
        omitted = len(rows_by_priority) - len(kept)
        if kept:
            order = display_order(kept) if display_order else kept
            self.parts.append(table(headers, [rows_by_priority[i] for i in order], align))
        if omitted:
            note = omitted_note(omitted)
            if len(note) <= self.left:
                self.parts.append(note)
        return omitted

    def text(self) -> str:
        return "".join(self.parts)
