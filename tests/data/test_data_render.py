"""Prompt rendering with a tiny real Hugging Face tokenizer built in the test (no downloads)."""
from __future__ import annotations

import pytest

from clipo.data import PromptExample, render_prompt, render_prompts, to_messages

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    words = ["[UNK]", "[PAD]", "<|end|>", "<|user|>", "<|system|>", "<|assistant|>", "what", "is", "2", "+", "?"]
    model = tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]")
    tok = tokenizers.Tokenizer(model)
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    # Role markers are special tokens, so the whitespace pre-tokenizer does not split them into pieces.
    tok.add_special_tokens(["<|end|>", "<|user|>", "<|system|>", "<|assistant|>"])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                                eos_token="<|end|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


TEXT = PromptExample("what is 2+2?", "4", "toy", 0)
CHAT = PromptExample([{"role": "user", "content": "what is 2+2?"}], "4", "toy", 1)


def test_chat_template_with_generation_prompt(tokenizer):
    expected = "<|user|>\nwhat is 2+2?<|end|>\n<|assistant|>\n"
    assert render_prompt(CHAT, tokenizer) == expected
    assert render_prompt(TEXT, tokenizer) == expected  # text prompts become one user message
    ids = tokenizer(render_prompt(CHAT, tokenizer))["input_ids"]
    assert ids[-1] == tokenizer.convert_tokens_to_ids("<|assistant|>")  # really ends at the assistant turn


def test_system_prompt_is_prepended_or_replaces(tokenizer):
    out = render_prompt(CHAT, tokenizer, system_prompt="Be brief.")
    assert out.startswith("<|system|>\nBe brief.<|end|>\n<|user|>\n")
    with_system = PromptExample([{"role": "system", "content": "Old."}, {"role": "user", "content": "Q"}], "1", "t", 0)
    out = render_prompt(with_system, tokenizer, system_prompt="New.")
    assert "Old." not in out and out.count("<|system|>") == 1 and "New." in out
    assert render_prompt(with_system, tokenizer).startswith("<|system|>\nOld.")


def test_raw_text_mode_needs_no_tokenizer():
    assert render_prompt(TEXT, use_chat_template=False) == "what is 2+2?"
    assert render_prompt(CHAT, None, use_chat_template=False, system_prompt="Sys") == "Sys\n\nwhat is 2+2?"
    assert render_prompt("plain", use_chat_template=False) == "plain"


def test_clear_errors_without_template(tokenizer):
    with pytest.raises(ValueError, match="needs a tokenizer"):
        render_prompt(TEXT)
    import copy

    base = copy.deepcopy(tokenizer)
    base.chat_template = None
    with pytest.raises(ValueError, match="has no chat template.*use_chat_template=False"):
        render_prompt(TEXT, base)


def test_render_prompts_and_to_messages(tokenizer):
    assert render_prompts([TEXT, CHAT], tokenizer) == [render_prompt(TEXT, tokenizer)] * 2
    msgs = [{"role": "user", "content": "x"}]
    out = to_messages(msgs, "s")
    assert out == [{"role": "system", "content": "s"}, {"role": "user", "content": "x"}]
    assert msgs == [{"role": "user", "content": "x"}]  # the example's messages are not mutated
