"""What every command shares at run time: error rendering, exit codes, the terminal console.

Library code raises ``GoldenError``; here it becomes one line on stderr and exit 2. rich and the
approval module are imported inside the helpers that need them (the start-up rule in ``goldens.cli``).
"""
from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer

from ..core import sanitize
from ..core.errors import EXIT_INPUT, GoldenError

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = EXIT_INPUT) -> typer.Exit:
    """Print a one-line error and return the Exit to raise (escapes, controls and workflow
    commands taken out: a message may quote a name from a hostile file or server)."""
    first_line = " ".join(sanitize.line(str(message).split("\n")[0]).split()) or "error"
    print(f"error: {first_line}", file=sys.stderr)
    return typer.Exit(code)


def say(message: object = "", err: bool = False) -> None:
    """``typer.echo`` for text that may hold names from files, servers or approvers: no escape
    sequence, control character or workflow command reaches the terminal or the CI log."""
    typer.echo(sanitize.text(message), err=err)


def handles_errors(func: F) -> F:
    """Turn library errors into a one-line message and exit code 2 (never a traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GoldenError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except BrokenPipeError:
            raise typer.Exit(0) from None

    return wrapper  # type: ignore[return-value]


LOG_WIDTH = 200  # columns for output that is not a terminal (CI logs, pipes) when $COLUMNS is unset


def writes_to_terminal(stderr: bool = False) -> bool:
    """Whether stdout (or stderr) is a real terminal; a CI log, a pipe or a file is not."""
    stream = sys.stderr if stderr else sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def console(stderr: bool = False) -> Any:
    """The rich console. A terminal keeps its own width; a log or pipe has no right edge, so it
    gets ``$COLUMNS`` if set, else ``LOG_WIDTH`` — rich's 80-column default broke full-precision
    numbers over several lines there."""
    from rich.console import Console

    width = None
    if not writes_to_terminal(stderr):
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) > 0 else LOG_WIDTH
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


@contextmanager
def progress_bar(what: str) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr for long work (``advance(done, total)``) — only on a terminal
    and outside CI: a log gets no bar (None), so it stays quiet."""
    from ..approve import in_ci

    if not writes_to_terminal(stderr=True) or in_ci(None):
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def show_table(out: Any, table: Any) -> None:
    """Print a rich table. A terminal wraps it to its width. In a log or pipe a cell is never
    wrapped or cut to fit an edge the log does not have: the box is drawn at its natural width up
    to ``LOG_WIDTH`` columns (``$COLUMNS`` is only a preference there); a wider table — one long
    metric name pads every row of a box to 1,000+ characters — is printed as plain tab-separated
    rows instead (``plain_rows``)."""
    if not writes_to_terminal(out.stderr):
        unbounded = out.options.update_width(1 << 16)  # measured as if the log were endless
        natural = out.measure(table, options=unbounded).maximum
        if natural > max(out.width, LOG_WIDTH):
            out.file.write("".join(line + "\n" for line in plain_rows(table)))  # tabs kept (rich expands them)
            return
        out.width = max(out.width, natural)
    out.print(table)


def plain_rows(table: Any) -> list[str]:
    """A rich table as text lines: its title, then the header and each row, cells joined by a tab
    (no padding, no box: a line is as long as its own cells)."""
    from rich.text import Text

    def plain(cell: Any) -> str:
        text = cell if isinstance(cell, Text) else Text.from_markup(cell) if isinstance(cell, str) else Text(str(cell))
        return " ".join(text.plain.split())

    title = [plain(table.title)] if table.title else []
    header = "\t".join(plain(c.header) for c in table.columns)
    rows = ["\t".join(plain(c._cells[i]) for c in table.columns) for i in range(table.row_count)]
    return [*title, header, *rows]


def echo_json(doc: Any) -> None:
    """A document on stdout, strict JSON (NaN never written as a bare literal)."""
    typer.echo(json.dumps(doc, indent=2, allow_nan=False))
