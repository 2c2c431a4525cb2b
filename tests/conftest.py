"""Fixtures shared by the whole suite; the builders they use are in tests/builders.py, the fakes in tests/fakes/."""
from __future__ import annotations

from pathlib import Path

import pytest

from goldens.store import GoldenStore
from tests.builders import LOSS, ZEROS, make_store, seed
from tests.fakes.ci_server import FakeCI

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MEGATRON_FIXTURES = SHARED / "fixtures" / "megatron"


@pytest.fixture(autouse=True)
def not_in_ci_unless_asked(monkeypatch):
    """The suite runs the same inside CI and outside, and whatever store settings the shell holds:
    CI never writes to a store, so a test that means CI sets it itself (monkeypatch.setenv, or the
    CLI runner's env); likewise a test that means a store, backend or dialect from the environment."""
    for name in ("CI", "GOLDEN_STORE", "GOLDEN_BACKEND", "GOLDEN_DIALECT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def megatron_fixtures() -> Path:
    """The real Megatron-LM goldens beside the clone (../shared); skip where absent."""
    if not MEGATRON_FIXTURES.is_dir():
        pytest.skip(f"{MEGATRON_FIXTURES} is absent: real-Megatron fixture tests are extra")
    return MEGATRON_FIXTURES


@pytest.fixture
def store(tmp_path) -> GoldenStore:
    """The synthetic store: cases ``tiny`` and ``other`` in tmp_path/cases; ``tiny`` holds a dev/cpu
    golden of LOSS and ZEROS under fingerprint fp-seed (so a run from ``write_run``, fp-1 by default,
    is judged in the approx regime); ``other`` has no golden yet."""
    made = make_store(tmp_path / "cases", ("tiny", "other"))
    seed(made, "tiny", {"lm loss": LOSS, "num-zeros": ZEROS})
    return made


@pytest.fixture
def runs(tmp_path) -> Path:
    """Where the tests' runs go (``write_run`` makes it): tmp_path/runs."""
    return tmp_path / "runs"


@pytest.fixture
def fake_ci():
    """GitHub's and GitLab's APIs on 127.0.0.1 (``fakes.ci_server.FakeCI``), stopped after the test (and
    by itself after two minutes in any case)."""
    ci = FakeCI().start()
    yield ci
    ci.stop()
