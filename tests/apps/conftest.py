"""Make `compare_rewards_for_tests` importable by dotted path (``reward.verifier=compare_rewards_for_tests:...``),
as a user's own reward module would be."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from clipo.models.tiny import build_tiny_model, build_tiny_tokenizer

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Qwen2-style model and its tokenizer saved as a Hugging Face folder."""
    folder = tmp_path_factory.mktemp("tiny_model")
    tokenizer = build_tiny_tokenizer()
    build_tiny_model(tokenizer, seed=0).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
