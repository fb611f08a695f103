"""Shared tiny tokenizer/model fixtures: built locally in milliseconds, never downloaded."""

import pytest
import torch

from clipo.models.tiny import add_logit_bias, build_tiny_model, build_tiny_tokenizer

QUESTIONS = ["1+1?", "What is the answer to 23*7?", "Hi"]


@pytest.fixture(scope="session")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture()
def model(tokenizer):
    """A fresh random Qwen2-style model in eval mode (function scope: tests may add hooks or train it)."""
    return build_tiny_model(tokenizer).eval()


@pytest.fixture()
def eos_model(tokenizer):
    """A model biased towards EOS (p(EOS) ~ 0.16 per sampled step), so rows end at different lengths."""
    model = build_tiny_model(tokenizer).eval()
    add_logit_bias(model, {tokenizer.eos_token_id: 3.0})
    return model


@pytest.fixture(scope="session")
def prompts(tokenizer):
    """Chat-rendered prompts of different token lengths (so the batch is left-padded)."""
    return [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                          add_generation_prompt=True) for q in QUESTIONS]


def make_padded_batch(tokenizer, prompt_lens, response_lens, *, extra_prompt_pad=0, extra_response_pad=0, seed=0):
    """A hand-made batch: random prompts/responses of the given lengths, prompts left-padded, responses
    right-padded (with the pad id), optionally with extra all-padding columns on either side."""
    g = torch.Generator().manual_seed(seed)
    vocab, pad = len(tokenizer), tokenizer.pad_token_id
    n = len(prompt_lens)
    width_p = max(prompt_lens) + extra_prompt_pad
    width_l = max(max(response_lens), 1) + extra_response_pad
    prompt_ids = torch.full((n, width_p), pad, dtype=torch.long)
    prompt_mask = torch.zeros((n, width_p), dtype=torch.long)
    response_ids = torch.full((n, width_l), pad, dtype=torch.long)
    response_mask = torch.zeros((n, width_l), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompt_lens, response_lens)):
        prompt_ids[i, width_p - p:] = torch.randint(4, vocab, (p,), generator=g)
        prompt_mask[i, width_p - p:] = 1
        response_ids[i, :r] = torch.randint(4, vocab, (r,), generator=g)
        response_mask[i, :r] = 1
    return prompt_ids, prompt_mask, response_ids, response_mask


@pytest.fixture(scope="session")
def padded_batch(tokenizer):
    """`padded_batch(prompt_lens, response_lens, **kw)` -> (prompt_ids, prompt_mask, response_ids, response_mask)."""
    return lambda *args, **kwargs: make_padded_batch(tokenizer, *args, **kwargs)
