"""Every option more than one command takes, declared once; and the one rule each of them follows.

- ``--store``: the option, else ``$GOLDEN_STORE``, else ``./cases`` when it exists, else the
  repository's ``cases/`` (``goldens.store.default_store_root``) — the same for every command,
  from any folder (``open_store``).
- ``--approver``: the option, else ``git config user.name`` in the store, else ``$USER``
  (``goldens.store.identity.resolve_approver``) — the same for every command that writes.
- ``--case``: a case's path under the store (``gpt/gpt3_7b``) or a bare name that names one case;
  where candidates are listed or approved in bulk, also a glob (``gpt/*``). ``--env`` /
  ``--platform``: names. All checked before anything is read (letters, digits, '_', '-', '.'), so a
  hostile one is one line and exit 2.
- ``--dialect``: how goldens are written into the tree (``full`` or ``megatron``) [default: detected
  from the tree, or ``$GOLDEN_DIALECT``].
- ``--megatron-generation``: which generation of Megatron's conventions (``goldens.megatron``) the
  megatron preset judges by and the Megatron dialect writes in [default: ``$GOLDEN_MEGATRON_GENERATION``,
  else detected from the tree].

Light imports only at module level (the start-up rule in ``goldens.cli``): the store and its
case-pattern check load numpy, so they are imported inside ``open_store`` and the option check.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..core.errors import GoldenError, StoreError
from ..core.megatron import generation as known_generation
from ..files.case import check_case_path, check_name
from .common import fail

if TYPE_CHECKING:
    from ..store import GoldenStore

STORE_ENV = "GOLDEN_STORE"  # goldens.store.STORE_ENV (not imported: it would load the store at --help)


def _name_checker(what: str) -> Callable[[str | None], str | None]:
    """A parse-time check: a hostile name is the usual one line and exit 2 (as every input error),
    before the command reads anything."""
    def check(value: str | None) -> str | None:
        if value is None:
            return None
        from ..store.tree import check_case_pattern

        checks: dict[str, Callable[[str], str]] = {"case": check_case_path, "case pattern": check_case_pattern}
        try:
            return checks[what](value) if what in checks else check_name(value, what)
        except StoreError as exc:
            raise fail(str(exc)) from None
    return check


StoreOpt = Annotated[Path | None, typer.Option(
    "--store", metavar="PATH", envvar=STORE_ENV, show_default=False,
    help="Golden store: a cases folder, or a Megatron checkout's tests/functional_tests/test_cases "
         "[default: $GOLDEN_STORE, else ./cases, else this repository's cases/].")]
CaseOpt = Annotated[str | None, typer.Option(
    "--case", metavar="PATH", callback=_name_checker("case"), show_default=False,
    help="The case: its path under the store (gpt/gpt3_7b…) or a name only one case has [default: the run's].")]
CasePatternOpt = Annotated[str | None, typer.Option(
    "--case", metavar="PATTERN", callback=_name_checker("case pattern"), show_default=False,
    help="Only these cases: a case path, a bare name, or a glob (gpt/*, *memory_speed); with a RUN, the "
         "run's case.")]
DIALECTS = ("full", "megatron")  # goldens.store.dialect.DIALECTS (not imported: it would load numpy at --help)
DialectOpt = Annotated[str | None, typer.Option(
    "--dialect", metavar="|".join(DIALECTS), envvar="GOLDEN_DIALECT", show_default=False,
    help="How goldens are written into the tree: full (full precision, our store) or megatron (as Megatron's "
         "extraction writes them) [default: detected from the tree].")]
GENERATION_ENV = "GOLDEN_MEGATRON_GENERATION"  # goldens.megatron.GENERATION_ENV (kept light for --help)
GenerationOpt = Annotated[str | None, typer.Option(
    "--megatron-generation", metavar="legacy|pr7087|pr7217", show_default=False,
    help="Which generation of Megatron-LM's golden conventions to follow (thresholds, rounding, precision "
         "marker, linter rule) [default: $GOLDEN_MEGATRON_GENERATION, else detected from the tree].")]
EnvOpt = Annotated[str | None, typer.Option(
    "--env", metavar="NAME", callback=_name_checker("env"), show_default=False,
    help="Golden environment: dev, lts, … [default: the run's, or the only one].")]
PlatformOpt = Annotated[str | None, typer.Option(
    "--platform", metavar="NAME", callback=_name_checker("platform"), show_default=False,
    help="Golden platform: dgx_h100, cpu, … [default: the run's, or the only one].")]
NewEnvOpt = Annotated[bool, typer.Option(
    "--new-env", help="The --env is a new one on purpose: never refused as a typo of a name the store knows "
                      "(without it, one at most 2 edits from a known env — dve for dev — is refused: did you mean…).")]
NewPlatformOpt = Annotated[bool, typer.Option(
    "--new-platform", help="The --platform is a new one on purpose (without it, a known platform with a character "
                           "dropped, added or swapped, or another case or separator, is refused as a typo: "
                           "did you mean…; a changed character — dgx_h200 beside dgx_h100 — is a new platform).")]
PolicyOpt = Annotated[str | None, typer.Option(
    "--policy", metavar="megatron|default|FILE", show_default=False,
    help="Policy preset or YAML policy file; the case's case.yaml metrics: overlay the preset, the file "
         "overlays both.")]
RESULT_FORMATS = ("table", "json", "csv", "md")
ResultFormatOpt = Annotated[str, typer.Option(
    "--format", "-f", metavar="|".join(RESULT_FORMATS),
    help="table (rich, for terminals), json (the result, for reports), csv (one row per step), md (markdown).")]
VerboseOpt = Annotated[bool, typer.Option(
    "--verbose", "-v", help="On a terminal, a pass too gets its table and its why/rule lines (a pass is one line "
                            "there without it; a failure, a log or a pipe always gets everything).")]
ExactOpt = Annotated[bool | None, typer.Option(
    "--exact/--approx", show_default=False,
    help="Force the exact regime (as if fingerprints matched) or the approximate one [default: exact only "
         "when fingerprints are equal].")]
ApproverOpt = Annotated[str | None, typer.Option(
    "--approver", metavar="NAME", show_default=False,
    help="Who is accountable for this write [default: git config user.name in the store, else $USER].")]
ReasonOpt = Annotated[str | None, typer.Option(
    "--reason", metavar="TEXT", show_default=False,
    help="Why these values are the new truth (recorded with the version; required).")]
AllowCiOpt = Annotated[bool, typer.Option("--allow-ci", help="Write even though CI is set (deliberate override).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def out_option(help: str) -> object:
    """``--out/-o PATH``: where a command writes (its help says what: a run folder, a report
    folder, a file). One declaration, each command's own help."""
    return typer.Option("--out", "-o", metavar="PATH", show_default=False, help=help)


def check_result_format(fmt: str) -> str:
    if fmt not in RESULT_FORMATS:
        raise GoldenError(f"--format must be one of {', '.join(RESULT_FORMATS)}, got {fmt!r}")
    return fmt


def open_store(root: Path | None, dialect: str | None = None, generation: str | None = None) -> GoldenStore:
    """The store every command uses: ``root`` when given, else the discovery rule above."""
    from ..store import GoldenStore

    if dialect is not None and dialect not in DIALECTS:
        raise GoldenError(f"--dialect must be one of {', '.join(DIALECTS)}, got {dialect!r}")
    if generation is not None:
        known_generation(generation)  # an unknown name: one line, exit 2, before anything is read
    return GoldenStore(root, dialect=dialect, generation=generation)


def store_line(store: GoldenStore) -> str:
    """Which backend and write dialect the store uses, and why (fsck and approve print it)."""
    info = store.describe()
    line = (f"store {info['root']}: {info['backend']} history ({info['backend_why']}); "
            f"{info['dialect']} dialect ({info['dialect_why']})")
    if "generation" in info:
        line += f"; Megatron generation {info['generation']} ({info['generation_why']})"
        if info["generation_warning"]:
            line += f"\nwarning: {info['generation_warning']}"
    return line
