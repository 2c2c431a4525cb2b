"""What every CLI command shares: error rendering, exit codes, the terminal console.

Library code raises ``GoldenError``; here it becomes one line on stderr and exit 2.
Only typer (and rich, lazily) is imported at module level to keep ``golden --help`` fast.
"""
from __future__ import annotations

import functools
import sys
from typing import Any, Callable, TypeVar

import typer

from .errors import EXIT_INPUT, GoldenError

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = EXIT_INPUT) -> "typer.Exit":
    """Print a one-line error and return the Exit to raise."""
    first_line = " ".join(str(message).split("\n")[0].split()) or "error"
    print(f"error: {first_line}", file=sys.stderr)
    return typer.Exit(code)


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


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def in_ci() -> bool:
    import os

    return bool(os.environ.get("CI"))
