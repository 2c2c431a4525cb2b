"""The pytest plugin: a ``golden_values`` fixture that judges metrics against the golden store.

``golden_values.check(metrics, case=..., env=..., platform=..., policy=...)`` judges a
Megatron-style metrics dict, a run (artifact, run folder, golden_values file) or a path as
``golden diff`` does, and fails the test with the tool's own "why" lines when the verdict is not a
pass. ``--golden-regen`` stages each failing run (or one with no golden yet) as the pending
candidate for ``golden review``, as pytest-regressions' ``--force-regen`` and insta's review do:
the test still fails, and a person approves. CI never writes goldens, so ``--golden-regen`` with
``CI`` set is a usage error.

The store: ``--golden-store``, else the ini key ``golden_store`` (relative to the ini file), else
``cases/`` under the rootdir. A metrics dict staged with ``--golden-regen`` is kept as the
golden_values files Megatron's CI writes, under ``runs/pytest/<case>/`` of the rootdir (the ini
key ``golden_runs`` moves it), where the candidate points.

Registered as a ``pytest11`` entry point (pyproject.toml); import-light, so that loading it costs a
pytest run nothing until a test asks for the fixture.
"""
from __future__ import annotations

from collections.abc import Mapping
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .core.errors import FormatError, GoldenError

if TYPE_CHECKING:
    from .core.policy import PolicySet
    from .core.result import ComparisonResult
    from .workflow.judge import Judgement

STORE_INI = "golden_store"
RUNS_INI = "golden_runs"
DEFAULT_STORE = "cases"
DEFAULT_RUNS = "runs/pytest"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("golden", "golden values (the golden_values fixture)")
    group.addoption("--golden-store", dest="golden_store", default=None, metavar="PATH",
                    help=f"the golden store (default: the ini key {STORE_INI}, else <rootdir>/{DEFAULT_STORE})")
    group.addoption("--golden-regen", dest="golden_regen", action="store_true", default=False,
                    help="stage each failing run as the pending candidate for `golden review` (never in CI)")
    parser.addini(STORE_INI, f"the golden store, relative to the ini file (default: <rootdir>/{DEFAULT_STORE})")
    parser.addini(RUNS_INI, f"where --golden-regen keeps metrics dicts it stages, relative to the ini file "
                            f"(default: <rootdir>/{DEFAULT_RUNS})")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("golden_regen", default=False):
        from .store.safety import in_ci

        if in_ci():
            raise pytest.UsageError("--golden-regen stages candidates in the golden store, and CI never writes "
                                    "goldens (CI is set): run it outside CI, then `golden review`")


def _ini_path(config: pytest.Config, key: str) -> Path | None:
    value = config.getini(key)
    if not value:
        return None
    base = config.inipath.parent if config.inipath is not None else config.rootpath
    return base / str(value)


def store_root(config: pytest.Config) -> Path:
    """``--golden-store`` (relative to the invocation folder), else the ini key, else <rootdir>/cases."""
    given = config.getoption("golden_store", default=None)
    if given:
        return Path(config.invocation_params.dir, given)
    return _ini_path(config, STORE_INI) or config.rootpath / DEFAULT_STORE


class GoldenValues:
    """What the ``golden_values`` fixture gives a test: ``check``."""

    def __init__(self, store: Path, *, regen: bool, runs: Path):
        self.store = store
        self.regen = regen
        self.runs = runs

    def check(self, metrics: Any, *, case: str | None = None, env: str | None = None, platform: str | None = None,
              policy: str | Path | PolicySet | Mapping[str, Any] | None = None, force: str | None = None,
              second: Any = None) -> ComparisonResult:
        """Judge ``metrics`` — a Megatron-style dict (``second``: its resumed phase, the ``_2nd``
        file's dict), a run or a path — against the store's golden of (case, env, platform), each
        defaulting to what the run declares. Fails the test with the why lines unless it passes;
        returns the result."""
        __tracebackhide__ = True
        try:
            judgement = self._judge(metrics, case, env, platform, policy, force, second)
        except GoldenError as exc:
            pytest.fail(f"golden_values: {exc}", pytrace=False)
        if judgement.result is not None and judgement.passed:
            return judgement.result
        pytest.fail(self._why(judgement), pytrace=False)

    def _judge(self, metrics: Any, case: str | None, env: str | None, platform: str | None,
               policy: str | Path | PolicySet | Mapping[str, Any] | None, force: str | None,
               second: Any) -> Judgement:
        from . import api
        from .workflow.judge import judge_run, should_stage

        if isinstance(metrics, Mapping) and case is None:
            raise FormatError("a metrics dict names no case: give case=")
        store = api.open_store(self.store)
        the_policy = api.policy_argument(policy)
        run = (api.run_from_metrics(metrics, second=second, case=case, env=env, platform=platform)
               if isinstance(metrics, Mapping) else api.run_of(metrics, case=case, env=env, platform=platform))
        judgement = judge_run(store, run, case=case, env=env, platform=platform, policy=the_policy,
                              force=force, stage=False)
        if not self.regen or not should_stage(judgement.result):
            return judgement
        if isinstance(metrics, Mapping):  # a candidate points at a file: keep the dict as Megatron's CI would
            target_env, target_platform = judgement.env or env, judgement.platform or platform
            if target_env is None or target_platform is None:
                raise FormatError("--golden-regen: give env= and platform= to stage a metrics dict of a case "
                                  "with no golden yet")
            saved = api.save_metrics(metrics, self.runs / str(judgement.case), env=target_env,
                                     platform=target_platform, second=second)
            run = api.load_run(saved)
        return judge_run(store, run, case=judgement.case, env=judgement.env or env,
                         platform=judgement.platform or platform, policy=the_policy, force=force, stage=True)

    def _why(self, judgement: Judgement) -> str:
        """The failure message: what ``golden diff`` prints (its table, then the why lines), as plain
        text, then what was (or was not) staged. A metrics dict kept in memory has no file to approve
        from: its approve command is left out (``--golden-regen`` keeps one)."""
        lines = [f"golden_values: {judgement.case} {judgement.env or '*'}/{judgement.platform or '*'}"]
        result = judgement.result
        if result is not None:
            from rich.console import Console
            from rich.text import Text

            from reports.document import approve_command
            from reports.terminal import result_lines, result_table

            from .api import METRICS_LABEL

            out = StringIO()
            Console(file=out, width=120, color_system=None, soft_wrap=False).print(result_table(result))
            lines += out.getvalue().rstrip().splitlines()
            unusable = approve_command(result, str(self.store)) if result.candidate == METRICS_LABEL else None
            lines += [text for text in (Text.from_markup(line).plain for line in result_lines(result, str(self.store)))
                      if unusable is None or unusable not in text]
        lines += list(judgement.notes)
        if not self.regen:
            lines.append("(pytest --golden-regen stages this run for `golden review`)")
        return "\n".join(lines)


@pytest.fixture
def golden_values(request: pytest.FixtureRequest) -> GoldenValues:
    """Judge metrics against the golden store: ``golden_values.check(metrics, case=..., env=...,
    platform=..., policy=...)``."""
    config = request.config
    runs = _ini_path(config, RUNS_INI) or config.rootpath / DEFAULT_RUNS
    return GoldenValues(store_root(config), regen=bool(config.getoption("golden_regen")), runs=runs)


__all__ = ["GoldenValues", "golden_values", "store_root"]
