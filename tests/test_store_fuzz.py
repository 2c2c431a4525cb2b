"""Damaged and hostile stores, every store command: no traceback, nothing changed outside the
store, nothing written in CI, no referenced blob lost (a short run of bench/fuzz_store.py; the
long one is ``python bench/fuzz_store.py``, 5,000 stores)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[1] / "bench" / "fuzz_store.py"


def _harness():
    spec = importlib.util.spec_from_file_location("fuzz_store", HARNESS)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("fuzz_store", module)  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="named pipes, symlinks and SIGALRM are POSIX")
def test_two_hundred_damaged_stores_break_no_rule(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("GOLDEN_STORE", raising=False)
    stats = _harness().run_fuzz(200, seed=2026)
    assert stats.stores == 200 and stats.commands >= 200 * 17
    assert stats.violations == [], "\n".join(stats.violations[:5])
    assert len(stats.mutations) == 19  # every kind of damage was made
    assert stats.exit_codes[2] > 0 and stats.exit_codes[1] > 0 and stats.exit_codes[0] > 0


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="named pipes, symlinks and SIGALRM are POSIX")
def test_damaged_git_stores_break_no_rule(monkeypatch):
    """The same rules where git is the history: forged journals, damaged approval records, links
    and wrong file types at the git backend's paths; the repository itself never changes."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("GOLDEN_STORE", raising=False)
    monkeypatch.delenv("GOLDEN_BACKEND", raising=False)
    harness = _harness()
    stats = harness.run_fuzz(80, seed=2027, backend="git")
    assert stats.stores == 80 and stats.commands >= 80 * 17
    assert stats.violations == [], "\n".join(stats.violations[:5])
    assert set(stats.mutations) == set(harness.mutations("git"))  # every kind of damage was made
    assert stats.exit_codes[2] > 0 and stats.exit_codes[1] > 0 and stats.exit_codes[0] > 0
