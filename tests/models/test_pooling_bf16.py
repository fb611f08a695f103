"""``pooling="official_bf16"``: the official sglang patch's bf16 running sum, against a naive loop in Python order."""

import pytest
import torch

from clipo.models import POOLING_MODES
from clipo.models.forward import policy_forward, pool_hidden
from clipo.models.tiny import build_tiny_model

PROMPT_LENS = [5, 9, 2, 7, 3]
RESPONSE_LENS = [6, 1, 8, 3, 0]


def naive_official_bf16(hidden: torch.Tensor, length: int) -> torch.Tensor:
    """What the patch does per request: the first decode input's state cloned in bf16, then `+=` the state of
    every further decode input (o_1 .. o_{|o|-2}), then `/ len(output_ids)`; float32 out (0 when |o| <= 1)."""
    if length <= 1:
        return torch.zeros(hidden.shape[-1])
    states = [hidden[t].to(torch.bfloat16) for t in range(length - 1)]
    total = states[0].clone()
    for state in states[1:]:
        total += state
    return (total / length).float()


def test_mode_is_registered():
    assert "official_bf16" in POOLING_MODES


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_naive_running_sum_bit_for_bit(dtype):
    g = torch.Generator().manual_seed(0)
    lengths = [0, 1, 2, 3, 40, 700, 1300]  # 1300 > the 256-column chunk: the loop crosses chunk borders
    width = 24
    hidden = (torch.randn(len(lengths), max(lengths), width, generator=g) + 2.0).to(dtype)  # common component
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    hidden = hidden.masked_fill(~mask.bool()[..., None], 1e4)  # padding must never leak in
    got = pool_hidden(hidden, mask, "official_bf16")
    assert got.dtype == torch.float32 and got.shape == (len(lengths), width)
    for i, n in enumerate(lengths):
        assert torch.equal(got[i], naive_official_bf16(hidden[i], n)), i


def test_running_sum_rounds_after_every_token():
    # 300 tokens of 1.0 per coordinate: once the bf16 sum reaches 256 its spacing is 2, so 256 + 1 rounds back to
    # 256 (ties to even) and the sum stalls; a float32 sum (the "official" mode) reaches 299.
    n = 301
    hidden = torch.ones(1, n, 2)
    mask = torch.ones(1, n, dtype=torch.long)
    bf16 = pool_hidden(hidden, mask, "official_bf16")
    fp32 = pool_hidden(hidden, mask, "official")
    assert bf16[0, 0].item() == pytest.approx(256 / n, rel=2 ** -8)
    assert fp32[0, 0].item() == pytest.approx(300 / n, rel=1e-6)


def test_short_sums_agree_with_float32_official_to_bf16_precision():
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(3, 12, 16, generator=g)
    mask = torch.ones(3, 12, dtype=torch.long)
    torch.testing.assert_close(pool_hidden(hidden, mask, "official_bf16"), pool_hidden(hidden, mask, "official"),
                               rtol=0.05, atol=0.02)


@pytest.mark.parametrize("group_size", [None, 5])
def test_policy_forward_uses_it(tokenizer, padded_batch, group_size):
    model = build_tiny_model(tokenizer).eval()
    batch = padded_batch(PROMPT_LENS, RESPONSE_LENS)
    if group_size is not None:  # one prompt repeated: the shared-prompt path pools the same states
        prompt_ids, prompt_mask = batch[0][:1].expand(5, -1).clone(), batch[1][:1].expand(5, -1).clone()
        batch = (prompt_ids, prompt_mask, batch[2], batch[3])
    out = policy_forward(model, *batch, pooling="official_bf16", group_size=group_size)
    ref = policy_forward(model, *batch, pooling="official", group_size=group_size)
    for i, n in enumerate(RESPONSE_LENS):
        prompt = batch[0][i][batch[1][i].bool()]
        seq = torch.cat([prompt, batch[2][i, :n]])[None]
        with torch.no_grad():
            states = model(input_ids=seq, output_hidden_states=True).hidden_states[-1][0, prompt.numel():]
        expected = naive_official_bf16(states, n)
        # the forward's states differ from this unbatched one by float32 rounding, which bf16 rounding can flip by
        # one bf16 step; the float32 "official" mode bounds how far either is from the exact value
        torch.testing.assert_close(out.pooled[i], expected, rtol=2 ** -7, atol=1e-3)
        torch.testing.assert_close(out.pooled[i], ref.pooled[i], rtol=2 ** -6, atol=1e-2)
        assert torch.equal(out.pooled[i], out.pooled[i].bfloat16().float())  # bf16 values
