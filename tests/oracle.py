"""Megatron-LM's own test functions as the oracle: its unmodified ``python_test_utils`` imported
in-process (``megatron_oracle``), and what its CI decides for a candidate (``megatron_verdict``).

Why: where this tool judges as Megatron's CI judges, the tests and benchmarks compare its verdicts
with those of Megatron's own code rather than with expectations written by hand.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shutil
import sys
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from goldens.core.megatron import INFERENCE, RESUME
from goldens.megatron.case import read_megatron_case


class _ClickStub:
    """Stands in for ``click`` while Megatron's extraction module is imported (click may be absent:
    typer vendors its own; where it is installed its decorators would turn the function into a
    command): these decorators leave the function as Megatron wrote it, called with keyword arguments."""

    @staticmethod
    def command(*_args: Any, **_kwargs: Any):
        return lambda function: function

    @staticmethod
    def option(*_args: Any, **_kwargs: Any):
        return lambda function: function


PYTHON_TEST_UTILS = "tests.functional_tests.python_test_utils"


def _import_without_click(module: str) -> types.ModuleType:
    """``module`` imported with ``_ClickStub`` as ``click``; whatever ``click`` was is restored after."""
    real = sys.modules.get("click")
    sys.modules["click"] = _ClickStub()  # type: ignore[assignment]  # a stand-in module
    try:
        return importlib.import_module(module)
    finally:
        if real is None:
            sys.modules.pop("click")
        else:
            sys.modules["click"] = real


@contextlib.contextmanager
def megatron_oracle(utils: Path) -> Iterator[types.SimpleNamespace]:
    """Megatron-LM's python_test_utils (the unmodified files in ``utils``), imported in-process as
    ``tests.functional_tests.python_test_utils`` from a throwaway package root. This suite's own
    ``tests`` package is set aside meanwhile and restored after, with the root logger (each test
    module calls ``logging.basicConfig``)."""
    root_dir = Path(tempfile.mkdtemp(prefix="mlm_oracle_"))
    package = root_dir / "tests" / "functional_tests" / "python_test_utils"
    package.mkdir(parents=True)
    for folder in (root_dir / "tests", root_dir / "tests" / "functional_tests", package):
        (folder / "__init__.py").write_text("")
    for source in Path(utils).glob("*.py"):
        shutil.copy(source, package / source.name)
    ours = lambda name: name == "tests" or name.startswith("tests.")
    saved = {name: sys.modules.pop(name) for name in list(sys.modules) if ours(name)}
    root = logging.getLogger()
    saved_log = (root.level, list(root.handlers))
    sys.path.insert(0, str(root_dir))
    importlib.invalidate_caches()
    try:
        namespace = types.SimpleNamespace(
            common=importlib.import_module(f"{PYTHON_TEST_UTILS}.common"),
            regular=importlib.import_module(f"{PYTHON_TEST_UTILS}.test_pretraining_regular_pipeline"),
            resume=importlib.import_module(f"{PYTHON_TEST_UTILS}.test_pretraining_resume_checkpoint_pipeline"),
            inference=importlib.import_module(f"{PYTHON_TEST_UTILS}.test_inference_regular_pipeline"),
            extract=_import_without_click(f"{PYTHON_TEST_UTILS}.get_test_results_from_tensorboard_logs"))
        logging.getLogger().setLevel(logging.CRITICAL)  # their per-metric INFO/ERROR lines
        yield namespace
    finally:
        sys.path.remove(str(root_dir))
        for name in [n for n in sys.modules if ours(n)]:
            del sys.modules[name]
        sys.modules.update(saved)
        root.setLevel(saved_log[0])
        root.handlers[:] = saved_log[1]
        shutil.rmtree(root_dir, ignore_errors=True)


def _megatron_ran(call: Any) -> bool:
    """Megatron's test function returned (pass) or raised (an assert, or an error: CI fails either)."""
    try:
        call()
        return True
    except Exception:
        return False


def megatron_verdict(m: types.SimpleNamespace, config: Path, golden: Path, candidate: Path,
                     second: Path | None = None, *, allow_nondeterministic: bool | None = None) -> bool:
    """What Megatron's CI decides for a candidate of one case, test by test as run_ci_test.sh runs them:
    the regular pipeline (and, for ckpt-resume / frozen-resume, the resume pipeline on the candidate's
    ``_2nd`` file), or the inference pipeline (TEST_TYPE frozen-start, MODE inference). The flag and
    TRAIN_ITERS as the script derives them (here: ``goldens.megatron.case``, whose reading of the yq
    text is tested on its own); ``allow_nondeterministic`` overrides the flag."""
    case = read_megatron_case(config)
    flag = case.allow_nondeterministic if allow_nondeterministic is None else allow_nondeterministic
    verdict = True
    read = m.common.read_golden_values_from_json
    if INFERENCE in case.pipelines:
        os.environ.pop("ENABLE_LIGHTWEIGHT_MODE", None)
        return _megatron_ran(lambda: m.inference.test_inference_pipeline(
            golden_values_path=str(golden), test_values_path=str(candidate), model_config_path=str(config)))
    if "regular" in case.pipelines:
        verdict &= _megatron_ran(lambda: m.regular.test_regular_pipeline(
            compare_approximate_results=flag, golden_values=read(golden),
            actual_values=read(candidate), model_config_path=str(config)))
    if RESUME in case.pipelines:
        verdict &= second is not None and _megatron_ran(lambda: m.resume.test_resume_checkpoint_pipeline(
            compare_approximate_results=flag, actual_values_first_run=read(candidate),
            actual_values_second_run=read(second), train_iters=case.train_iters, model_config_path=str(config)))
    return verdict
