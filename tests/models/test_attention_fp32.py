"""Attention in float32 on CPU under bf16 autocast (clipo.models.attention).

The expected values come from a naive attention written here (softmax(q·kᵀ/√d + mask)·v in float64 on the
same inputs), not from the code under test.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from clipo.models import CPU_FP32_SDPA, fp32_attention_on_cpu
from clipo.models.attention import sdpa_fp32_on_cpu
from clipo.testing import build_tiny_model, build_tiny_tokenizer
from clipo.training.precision import autocast_context


class _Module(torch.nn.Module):
    """What transformers' attention forward reads from its module: causality and the GQA group count."""

    def __init__(self, groups: int):
        super().__init__()
        self.is_causal = True
        self.num_key_value_groups = groups


def naive_attention(q, k, v, mask):
    """q [B, Hq, Lq, D], k/v [B, Hkv, Lk, D], mask [B, 1, Lq, Lk] bool → [B, Lq, Hq, D], float64, a loop over
    heads (each query head reads key/value head h // (Hq/Hkv))."""
    q, k, v = q.double(), k.double(), v.double()
    groups = q.shape[1] // k.shape[1]
    out = torch.empty(q.shape[0], q.shape[1], q.shape[2], q.shape[3], dtype=torch.float64)
    for h in range(q.shape[1]):
        kh, vh = k[:, h // groups], v[:, h // groups]
        scores = q[:, h] @ kh.transpose(-1, -2) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(~mask[:, 0], float("-inf"))
        out[:, h] = scores.softmax(-1) @ vh
    return out.transpose(1, 2)


def _inputs(lq=5, lk=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(3, 4, lq, 16, generator=g)
    k = torch.randn(3, 2, lk, 16, generator=g)
    v = torch.randn(3, 2, lk, 16, generator=g)
    mask = torch.ones(3, 1, lq, lk, dtype=torch.bool).tril(lk - lq)  # causal over the last lq positions
    mask[0, :, :, :2] = False  # a left-padded row
    return q, k, v, mask


@pytest.mark.parametrize("lq,lk", [(5, 9), (1, 9), (9, 9)])
def test_under_autocast_the_kernel_runs_in_fp32_and_matches_a_naive_attention(lq, lk, monkeypatch):
    q, k, v, mask = _inputs(lq, lk)
    seen = []
    real = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        seen.append((args[0].dtype, args[1].dtype, args[2].dtype, torch.is_autocast_enabled("cpu")))
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # as in Qwen2 under autocast: rotary makes q and k float32, v comes out of a bf16 linear
        out, _ = sdpa_fp32_on_cpu(_Module(2), q, k, v.bfloat16(), mask)
    assert seen == [(torch.float32, torch.float32, torch.float32, False)]
    assert out.dtype == torch.bfloat16 and out.shape == (3, lq, 4, 16)
    expected = naive_attention(q, k, v.bfloat16().float(), mask)
    seen_any = mask[:, 0].any(-1)  # [B, Lq]: queries of a padded position see no key; their output is arbitrary
    # only the final rounding to bf16 separates them (relative 2^-8)
    torch.testing.assert_close(out.double()[seen_any], expected[seen_any], rtol=2 ** -8, atol=1e-6)


def test_16_bit_inputs_without_autocast_are_computed_in_fp32_and_returned_in_their_dtype():
    q, k, v, mask = (t.bfloat16() if t.is_floating_point() else t for t in _inputs())
    out, _ = sdpa_fp32_on_cpu(_Module(2), q, k, v, mask)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), naive_attention(q, k, v, mask), rtol=2 ** -8, atol=1e-6)


def test_fp32_without_autocast_is_transformers_sdpa_unchanged():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    q, k, v, mask = _inputs()
    ours, _ = sdpa_fp32_on_cpu(_Module(2), q, k, v, mask)
    plain, _ = sdpa_attention_forward(_Module(2), q, k, v, mask)
    assert torch.equal(ours, plain)
    torch.testing.assert_close(ours.double(), naive_attention(q, k, v, mask), rtol=1e-5, atol=1e-6)


def test_gradients_flow_to_the_bf16_inputs():
    q, k, v, mask = _inputs()
    q, k, v = (t.bfloat16().requires_grad_() for t in (q, k, v))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = sdpa_fp32_on_cpu(_Module(2), q, k, v, mask)
    out.float().sum().backward()
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    naive_attention(q64, k64, v64, mask).sum().backward()
    for ours, ref in ((q, q64), (k, k64), (v, v64)):
        assert ours.grad.dtype == torch.bfloat16
        torch.testing.assert_close(ours.grad.double(), ref.grad, rtol=2 ** -6, atol=2e-2)


def test_the_switch_is_temporary_and_only_for_sdpa_models_on_cpu():
    tok = build_tiny_tokenizer()
    model = build_tiny_model(tok, seed=0)
    assert model.config._attn_implementation == "sdpa"
    with fp32_attention_on_cpu(model):
        assert model.config._attn_implementation == CPU_FP32_SDPA
        layer = model.model.layers[0].self_attn
        assert layer.config._attn_implementation == CPU_FP32_SDPA  # the modules read the same config
    assert model.config._attn_implementation == "sdpa"
    model.set_attn_implementation("eager")
    with fp32_attention_on_cpu(model):
        assert model.config._attn_implementation == "eager"  # a user's choice is left alone


def test_a_bf16_mixed_forward_matches_fp32_attention_on_the_same_bf16_projections():
    """The whole model under autocast_context('bf16-mixed'): the logits are those of the same autocast forward
    with attention forced to float32 by hand (eager attention in float64 would differ only in rounding)."""
    tok = build_tiny_tokenizer()
    model = build_tiny_model(tok, seed=0).eval()
    ids = torch.randint(3, 60, (2, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    with torch.no_grad(), autocast_context("bf16-mixed", "cpu", model):
        ours = model(input_ids=ids, attention_mask=mask).logits.float()
    assert model.config._attn_implementation == "sdpa"
    with torch.no_grad(), autocast_context("bf16-mixed", "cpu"):  # no model: attention stays bf16 under autocast
        plain = model(input_ids=ids, attention_mask=mask).logits.float()
    with torch.no_grad():
        exact = model(input_ids=ids, attention_mask=mask).logits
    keep = mask.bool()
    # both are bf16 approximations of the fp32 logits; fp32 attention is at least as close as bf16 attention
    err_ours = (ours - exact)[keep].abs().max()
    err_plain = (plain - exact)[keep].abs().max()
    assert err_ours <= err_plain * 1.5 and err_ours < 0.1
