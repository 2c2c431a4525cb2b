"""Fixtures shared by the whole suite."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MEGATRON_FIXTURES = SHARED / "fixtures" / "megatron"


@pytest.fixture
def megatron_fixtures() -> Path:
    """The real Megatron-LM goldens beside the clone (../shared); skip where absent."""
    if not MEGATRON_FIXTURES.is_dir():
        pytest.skip(f"{MEGATRON_FIXTURES} is absent: real-Megatron fixture tests are extra")
    return MEGATRON_FIXTURES
