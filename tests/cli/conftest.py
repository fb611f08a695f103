"""Fixtures of the CLI tests."""
import pytest

from clipo.models.tiny import build_tiny_model, build_tiny_tokenizer


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Qwen2-style model and its tokenizer saved as a Hugging Face folder (what `model.name_or_path`
    names)."""
    folder = tmp_path_factory.mktemp("tiny_model")
    tokenizer = build_tiny_tokenizer()
    build_tiny_model(tokenizer, seed=0).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
