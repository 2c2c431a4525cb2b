"""The ``golden`` command: a thin typer app. Each command area registers from its own module.

Commands parse options and call one library function; heavy imports (numpy, pandas, torch)
happen inside the command bodies, so ``golden --help`` stays fast.
"""
from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="golden",
    help="Golden values for distributed-training regression tests: run a case, compare it with its "
         "golden, report, and approve new baselines with a record of why.\n\n"
         "Exit codes: 0 pass, 1 a regression/difference found, 2 usage or input error.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Each module defines register(app); a module not yet present is simply skipped.
COMMAND_MODULES = (
    "goldens.cli_store",
    "goldens.cli_compare",
    "goldens.cli_approve",
    "goldens.cli_stats",
    "reports.cli",
    "runner.cli",
)

for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as _exc:
        if _exc.name != _name:
            raise
        continue
    _module.register(app)


def main() -> None:
    """Run the app; a usage error (bad option, missing argument) is one line and exit 2, like
    every other input error, instead of click's multi-line usage block."""
    import sys

    if len(sys.argv) <= 1:
        app()  # bare `golden`: the help, as typer prints it
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as exc:  # click's usage errors, vendored by typer
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        print(f"error: {' '.join(message.split())}{hint}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
