"""Shared fixtures: where the paper's data lives, relative to the project root."""
from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data" / "clipo"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data/clipo`` beside the checkout; tests that need it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the paper's data is not at {SHARED_DATA} (it sits beside the checkout in CI)")
    return SHARED_DATA
