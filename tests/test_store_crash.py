"""Crash safety: a writer SIGKILLed at random instants leaves the old or the new version (both backends).

The long run (≥ 200 kills) is ``python bench/crash_store.py``; this is the same harness, shorter.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[1] / "bench" / "crash_store.py"


def _harness():
    spec = importlib.util.spec_from_file_location("crash_store", HARNESS)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("crash_store", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
@pytest.mark.parametrize("backend", ["ledger", "git"])
def test_sigkilled_writer_leaves_old_or_new_version_and_fsck_passes(backend):
    stats = _harness().run_trials(25, seed=2026, max_delay=0.2, backend=backend)
    assert stats.kills == 25
    assert sum(stats.outcomes.values()) == 25
    # the harness raised on any broken invariant; here: kills did land inside the write protocol
    inside = sum(n for outcome, n in stats.outcomes.items() if not outcome.startswith("between writes"))
    assert inside >= 1, stats.outcomes
