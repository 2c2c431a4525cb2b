"""The ``golden`` command: a thin typer layer over the library.

One module per command group — ``store`` (validate, show, history, fsck, adopt, migrate),
``compare`` (diff), ``judge`` (many candidates in one process), ``approve`` (pending, approve,
reject, review, rollback, prune), ``stats`` (stats, import-tb), ``report``, ``run`` (run, check),
``fetch`` — and ``options``, where every shared option and its
rule (store discovery, approver, name checks) is declared once. A command parses, calls one
library function (``goldens.workflow`` for judging), renders, and maps errors to exit codes:
0 pass, 1 a regression/difference, 2 usage or input error (``common.handles_errors``).

Layers, checked by import-linter (pyproject.toml; ``tests/test_layers.py`` runs it): cli → workflow →
{runner, reports} → the edges → core.

Imports: every command module is imported at start-up (``golden --help`` lists every command), so
at module level a command module imports only typer, the standard library and the project's light
modules (errors, sanitize, the table of Megatron's generations, case-name checks). What loads numpy,
pandas, rich, yaml or the runner — the store, the workflow, the reports, rich — is imported inside
the command (or renderer) that needs it; ``tests/test_cli_main.py`` checks that ``--help`` loads
none of them. The modules below say "imported inside the commands" for this rule.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from . import approve, compare, fetch, judge, report, run, stats, store


def _typer(*, help: str | None = None, no_args_is_help: bool = False, add_completion: bool = False) -> typer.Typer:
    """A ``golden`` app: no pretty tracebacks (an error is one line), help as plain text (no rich markup)."""
    return typer.Typer(name="golden", help=help, no_args_is_help=no_args_is_help, add_completion=add_completion,
                       pretty_exceptions_enable=False, rich_markup_mode=None)


app = _typer(
    help="Golden values for distributed-training regression tests: run a case, compare it with its "
         "golden, report, and approve new baselines with a record of why.\n\n"
         "Exit codes: 0 pass, 1 a regression/difference found, 2 usage or input error.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion on the whole app
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"golden {version('golden-toolkit')}")
        except PackageNotFoundError:
            print("golden (version unknown: the distribution is not installed)")
        raise typer.Exit()


@app.callback()
def _root(show_version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = False) -> None:
    """Golden values for distributed-training regression tests."""

COMMANDS: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("run", run.run), ("check", run.check), ("diff", compare.diff), ("judge", judge.judge), ("report", report.report),
    ("pending", approve.pending), ("approve", approve.accept), ("review", approve.review),
    ("reject", approve.reject), ("rollback", approve.rollback), ("prune", approve.prune),
    ("history", store.history), ("show", store.show), ("validate", store.validate), ("fsck", store.fsck),
    ("adopt", store.adopt), ("migrate", store.migrate), ("stats", stats.stats), ("import-tb", stats.import_tb),
    ("fetch", fetch.fetch),
)
for _name, _command in COMMANDS:
    app.command(_name)(_command)


def main() -> None:
    """Run the app; a usage error (bad option, missing argument) is one line and exit 2, like
    every other input error, instead of click's multi-line usage block."""
    if len(sys.argv) <= 1:
        app()  # bare `golden`: the help, as typer prints it
    try:
        code = app_for(sys.argv[1])(standalone_mode=False)
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


def app_for(command: str) -> typer.Typer:
    """The app with only the command asked for: typer inspects every registered command's signature
    on each start (some 25 ms for all of them), and one command needs one. Anything else — ``--help``,
    an unknown name — gets the whole app, and so its listing or its error."""
    commands = dict(COMMANDS)
    if command not in commands:
        return app
    single = _typer()
    single.callback()(_group)  # a group of one: `golden diff ...`, not a bare command
    single.command(command)(commands[command])
    return single


def _group() -> None:
    """Golden values for distributed-training regression tests."""
