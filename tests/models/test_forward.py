"""`policy_forward` against a naive loop: one unpadded sequence at a time, full log_softmax, gather."""

import pytest
import torch

import clipo.models.forward as forward_module
from clipo.models.forward import plan_micro_batches, policy_forward, pool_hidden, token_logp
from clipo.models.tiny import build_tiny_model

# Different prompt and response lengths, including a 1-token response ("official" pooling gives 0) and an
# empty one (everything 0).
PROMPT_LENS = [5, 9, 2, 7, 3]
RESPONSE_LENS = [6, 1, 8, 3, 0]


def naive_forward(model, prompt_ids, prompt_mask, response_ids, response_mask, temperature=1.0):
    """Per row: forward the unpadded prompt+response alone and read everything off the full outputs."""
    rows = []
    for i in range(prompt_ids.shape[0]):
        prompt = prompt_ids[i][prompt_mask[i].bool()]
        length = int(response_mask[i].sum())
        response = response_ids[i, :length]
        seq = torch.cat([prompt, response])[None]
        with torch.no_grad():
            out = model(input_ids=seq, output_hidden_states=True)
        logprobs = torch.log_softmax(out.logits[0].double() / temperature, dim=-1)  # [T, V]
        p = prompt.numel()
        # Token o_t is predicted by the logits at position p + t - 1.
        logp = torch.stack([logprobs[p + t - 1, response[t]] for t in range(length)]) if length else torch.zeros(0, dtype=torch.double)
        entropy = -(logprobs.exp() * logprobs).sum(-1)[p - 1:p + length - 1]
        hidden = out.hidden_states[-1][0, p:p + length].double()  # h(o_0) .. h(o_{L-1})
        mean = hidden.mean(0) if length else torch.zeros(hidden.shape[-1], dtype=torch.double)
        official = hidden[:length - 1].sum(0) / length if length > 1 else torch.zeros_like(mean)
        rows.append((logp, entropy, mean, official))
    return rows


def assert_matches_naive(out, naive, response_mask, pooling):
    for i, (logp, entropy, mean, official) in enumerate(naive):
        length = int(response_mask[i].sum())
        torch.testing.assert_close(out.logp[i, :length].double(), logp, atol=1e-5, rtol=0)
        assert torch.all(out.logp[i, length:] == 0)
        if out.entropy is not None:
            torch.testing.assert_close(out.entropy[i, :length].double(), entropy, atol=1e-5, rtol=0)
        expected = mean if pooling == "mean" else official
        torch.testing.assert_close(out.pooled[i].double(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch,tied", [("qwen2", False), ("llama", True)])
@pytest.mark.parametrize("pooling", ["mean", "official"])
def test_matches_naive_loop(tokenizer, padded_batch, arch, tied, pooling):
    model = build_tiny_model(tokenizer, arch=arch, tie_word_embeddings=tied).eval()
    batch = padded_batch(PROMPT_LENS, RESPONSE_LENS)
    out = policy_forward(model, *batch, pooling=pooling, compute_entropy=True)
    assert out.logp.dtype == torch.float32 and out.logp.shape == batch[2].shape
    assert out.entropy.shape == batch[2].shape
    assert out.pooled.shape == (len(PROMPT_LENS), model.config.hidden_size) and out.pooled.dtype == torch.float32
    assert_matches_naive(out, naive_forward(model, *batch), batch[3], pooling)


def test_temperature_scales_logits(model, padded_batch):
    batch = padded_batch(PROMPT_LENS, RESPONSE_LENS)
    out = policy_forward(model, *batch, temperature=0.7, compute_entropy=True)
    assert_matches_naive(out, naive_forward(model, *batch, temperature=0.7), batch[3], "mean")


@pytest.mark.parametrize("limits", [{"micro_batch_size": 1}, {"micro_batch_size": 2},
                                    {"max_tokens_per_micro_batch": 20}, {"max_tokens_per_micro_batch": 1},
                                    {"micro_batch_size": 3, "max_tokens_per_micro_batch": 30}])
def test_micro_batching_does_not_change_results(model, padded_batch, limits):
    batch = padded_batch(PROMPT_LENS, RESPONSE_LENS)
    whole = policy_forward(model, *batch, pooling="official", compute_entropy=True)
    split = policy_forward(model, *batch, pooling="official", compute_entropy=True, **limits)
    for name in ("logp", "entropy", "pooled"):
        torch.testing.assert_close(getattr(split, name), getattr(whole, name), atol=1e-5, rtol=0)


def test_extra_padding_does_not_change_results(model, padded_batch):
    batch = padded_batch(PROMPT_LENS, RESPONSE_LENS)
    padded = padded_batch(PROMPT_LENS, RESPONSE_LENS, extra_prompt_pad=4, extra_response_pad=3)
    out = policy_forward(model, *batch, compute_entropy=True)
    out_padded = policy_forward(model, *padded, compute_entropy=True)
    width = batch[2].shape[1]
    torch.testing.assert_close(out_padded.logp[:, :width], out.logp, atol=1e-5, rtol=0)
    assert torch.all(out_padded.logp[:, width:] == 0)
    torch.testing.assert_close(out_padded.entropy[:, :width], out.entropy, atol=1e-5, rtol=0)
    torch.testing.assert_close(out_padded.pooled, out.pooled, atol=1e-5, rtol=0)


def test_fallbacks_match_the_fast_path(model, padded_batch, monkeypatch):
    # Fast path: logits only for the response columns, pooled states read off the lm_head input.
    batch = padded_batch(PROMPT_LENS, RESPONSE_LENS)
    fast = policy_forward(model, *batch, pooling="official")
    # A model without `logits_to_keep`: full logits, sliced afterwards.
    monkeypatch.setattr(forward_module, "accepts_logits_to_keep", lambda _model: False)
    full_logits = policy_forward(model, *batch, pooling="official")
    # A model without a reachable lm_head module: `output_hidden_states=True`.
    monkeypatch.setattr(model, "get_output_embeddings", lambda: None)
    hidden_states = policy_forward(model, *batch, pooling="official")
    for slow in (full_logits, hidden_states):
        torch.testing.assert_close(slow.logp, fast.logp, atol=1e-6, rtol=0)
        torch.testing.assert_close(slow.pooled, fast.pooled, atol=1e-6, rtol=0)


def test_with_grad_gives_gradients_and_detached_pooling(model, padded_batch):
    model.train()
    batch = padded_batch(PROMPT_LENS, RESPONSE_LENS)
    out = policy_forward(model, *batch, compute_entropy=True, with_grad=True, micro_batch_size=2)
    assert out.logp.requires_grad and out.entropy.requires_grad and not out.pooled.requires_grad
    (out.logp.sum() + 0.1 * out.entropy.sum()).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    no_grad = policy_forward(model, *batch, micro_batch_size=2)
    assert not no_grad.logp.requires_grad
    torch.testing.assert_close(no_grad.logp, out.logp.detach(), atol=1e-6, rtol=0)


def test_bfloat16_model_returns_float32(tokenizer, padded_batch):
    model = build_tiny_model(tokenizer, dtype=torch.bfloat16).eval()
    batch = padded_batch(PROMPT_LENS, RESPONSE_LENS)
    out = policy_forward(model, *batch, compute_entropy=True)
    assert out.logp.dtype == out.entropy.dtype == out.pooled.dtype == torch.float32
    assert torch.isfinite(out.logp).all() and torch.isfinite(out.pooled).all()


def test_rejects_bad_arguments(model, padded_batch):
    batch = padded_batch(PROMPT_LENS, RESPONSE_LENS)
    with pytest.raises(ValueError, match="pooling"):
        policy_forward(model, *batch, pooling="max")
    with pytest.raises(ValueError, match="temperature"):
        policy_forward(model, *batch, temperature=0.0)


def test_token_logp_chunks_agree_with_log_softmax(monkeypatch):
    logits = torch.randn(3, 7, 50, dtype=torch.bfloat16)
    targets = torch.randint(0, 50, (3, 7))
    monkeypatch.setattr(forward_module, "_LOGP_CHUNK_ELEMENTS", 50 * 4)  # 4 tokens per chunk
    logp, entropy = token_logp(logits, targets, temperature=0.5, compute_entropy=True)
    reference = torch.log_softmax(logits.float() / 0.5, dim=-1)
    torch.testing.assert_close(logp, reference.gather(-1, targets[..., None]).squeeze(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(entropy, -(reference.exp() * reference).sum(-1), atol=1e-5, rtol=0)


def test_pool_hidden_by_hand():
    # One row, |o| = 3: mean = (h0 + h1 + h2) / 3; official = (h0 + h1) / 3 (the last token is never fed back).
    hidden = torch.tensor([[[1.0, 0.0], [2.0, 4.0], [3.0, 5.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 1, 0]])
    torch.testing.assert_close(pool_hidden(hidden, mask, "mean"), torch.tensor([[2.0, 3.0]]))
    torch.testing.assert_close(pool_hidden(hidden, mask, "official"), torch.tensor([[1.0, 4.0 / 3.0]]))


@pytest.mark.parametrize("limits", [{"micro_batch_size": 2}, {"max_tokens": 25}, {"micro_batch_size": 4, "max_tokens": 40}])
def test_plan_micro_batches_covers_rows_within_limits(limits):
    lengths = torch.tensor([5, 12, 3, 12, 8, 1, 30])
    plan = plan_micro_batches(lengths, **limits)
    assert sorted(torch.cat(plan).tolist()) == list(range(len(lengths)))
    for rows in plan:
        if "micro_batch_size" in limits:
            assert len(rows) <= limits["micro_batch_size"]
        if "max_tokens" in limits and len(rows) > 1:
            assert len(rows) * int(lengths[rows].max()) <= limits["max_tokens"]
    assert [r.tolist() for r in plan_micro_batches(lengths)] == [list(range(len(lengths)))]


def test_rejects_right_padded_or_empty_prompts(model, padded_batch):
    prompt_ids, prompt_mask, response_ids, response_mask = padded_batch(PROMPT_LENS, RESPONSE_LENS)
    right_padded = prompt_mask.flip(1)
    with pytest.raises(ValueError, match="left-padded"):
        policy_forward(model, prompt_ids, right_padded, response_ids, response_mask)


# ---- Shared prompts: policy_forward(group_size=n) computes each group's prompt once ----

GROUP_PROMPT_LENS = [5, 9, 2, 7]  # one per group; 1-token "prompts" cannot share and fall back
GROUP_RESPONSE_LENS = [6, 1, 8, 3, 0, 4, 5, 2, 7, 1, 1, 9]  # 4 groups x 3 rows, incl. |o| = 0 and 1


def grouped_batch(padded_batch, n=3, prompt_lens=GROUP_PROMPT_LENS, response_lens=GROUP_RESPONSE_LENS, seed=0):
    """Each of len(prompt_lens) prompts repeated n times contiguously, with its own responses per row."""
    prompt_ids, prompt_mask, _, _ = padded_batch(prompt_lens, [1] * len(prompt_lens), extra_prompt_pad=1, seed=seed)
    _, _, response_ids, response_mask = padded_batch([1] * len(response_lens), response_lens, seed=seed + 1)
    return (prompt_ids.repeat_interleave(n, 0), prompt_mask.repeat_interleave(n, 0), response_ids, response_mask)


@pytest.mark.parametrize("arch,tied", [("qwen2", False), ("llama", True)])
@pytest.mark.parametrize("pooling", ["mean", "official"])
def test_shared_prompts_match_naive_loop(tokenizer, padded_batch, arch, tied, pooling):
    model = build_tiny_model(tokenizer, arch=arch, tie_word_embeddings=tied).eval()
    batch = grouped_batch(padded_batch)
    out = policy_forward(model, *batch, pooling=pooling, compute_entropy=True, group_size=3)
    assert out.logp.shape == batch[2].shape and out.pooled.dtype == torch.float32
    assert_matches_naive(out, naive_forward(model, *batch), batch[3], pooling)


def _spy_prefills(monkeypatch):
    calls = []
    real = forward_module.shared_prompt_cache

    def spy(model, ids, *args):
        calls.append(ids.shape[0])
        return real(model, ids, *args)

    monkeypatch.setattr(forward_module, "shared_prompt_cache", spy)
    return calls


@pytest.mark.parametrize("n", [2, 3, 4])
@pytest.mark.parametrize("limits", [{}, {"micro_batch_size": 4}, {"micro_batch_size": 8},
                                    {"max_tokens_per_micro_batch": 60}, {"micro_batch_size": 1}])
def test_shared_prompts_equal_unshared_path(model, padded_batch, monkeypatch, n, limits):
    responses = (GROUP_RESPONSE_LENS * 2)[:4 * n]
    batch = grouped_batch(padded_batch, n=n, response_lens=responses)
    plain = policy_forward(model, *batch, pooling="official", compute_entropy=True, **limits)
    calls = _spy_prefills(monkeypatch)
    shared = policy_forward(model, *batch, pooling="official", compute_entropy=True, group_size=n, **limits)
    for name in ("logp", "entropy", "pooled"):
        torch.testing.assert_close(getattr(shared, name), getattr(plain, name), atol=1e-5, rtol=0)
    # The shared path ran (whole groups per micro-batch) unless the limits cannot hold one group.
    longest = int((batch[1].sum(-1) + batch[3].sum(-1)).max())
    fits = limits.get("micro_batch_size", n) >= n and limits.get("max_tokens_per_micro_batch", 10**9) >= n * longest
    assert (sum(calls) == 4) if fits else not calls


@pytest.mark.parametrize("pooling", ["mean", "official"])
@pytest.mark.parametrize("limits", [{}, {"micro_batch_size": 6}])
def test_shared_prompts_give_the_same_gradients(tokenizer, padded_batch, monkeypatch, pooling, limits):
    model = build_tiny_model(tokenizer).train()
    batch = grouped_batch(padded_batch)
    weights = torch.randn(batch[2].shape, generator=torch.Generator().manual_seed(0))
    results = []
    for group_size in (None, 3):
        model.zero_grad(set_to_none=True)
        out = policy_forward(model, *batch, pooling=pooling, compute_entropy=True, with_grad=True,
                             group_size=group_size, **limits)
        assert out.logp.requires_grad and out.entropy.requires_grad and not out.pooled.requires_grad
        ((out.logp * weights).sum() + 0.1 * out.entropy.sum()).backward()
        results.append((out, {name: p.grad.clone() for name, p in model.named_parameters()}))
    (plain, plain_grads), (shared, shared_grads) = results
    torch.testing.assert_close(shared.logp.detach(), plain.logp.detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(shared.entropy.detach(), plain.entropy.detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(shared.pooled, plain.pooled, atol=1e-5, rtol=0)
    for name, grad in plain_grads.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(shared_grads[name], grad, atol=1e-4, rtol=0, msg=name)


def test_shared_prompts_fallbacks_match(model, padded_batch, monkeypatch):
    batch = grouped_batch(padded_batch)
    fast = policy_forward(model, *batch, pooling="official", group_size=3)
    monkeypatch.setattr(forward_module, "accepts_logits_to_keep", lambda _model: False)
    full_logits = policy_forward(model, *batch, pooling="official", group_size=3)
    monkeypatch.setattr(model, "get_output_embeddings", lambda: None)
    hidden_states = policy_forward(model, *batch, pooling="official", group_size=3)
    for slow in (full_logits, hidden_states):
        torch.testing.assert_close(slow.logp, fast.logp, atol=1e-6, rtol=0)
        torch.testing.assert_close(slow.pooled, fast.pooled, atol=1e-6, rtol=0)


def test_shared_prompts_under_gradient_checkpointing_fall_back(tokenizer, padded_batch, monkeypatch):
    # transformers drops the KV cache under activation checkpointing: the forward must not share then.
    from clipo.models import enable_gradient_checkpointing

    model = build_tiny_model(tokenizer).train()
    enable_gradient_checkpointing(model)
    batch = grouped_batch(padded_batch)
    plain = policy_forward(model, *batch, with_grad=True)
    calls = _spy_prefills(monkeypatch)
    shared = policy_forward(model, *batch, with_grad=True, group_size=3)
    assert not calls
    torch.testing.assert_close(shared.logp.detach(), plain.logp.detach(), atol=1e-6, rtol=0)


def test_shared_prompts_reject_mismatched_groups(model, padded_batch):
    batch = grouped_batch(padded_batch)
    with pytest.raises(ValueError, match="do not share"):
        policy_forward(model, *batch, group_size=2)  # 12 rows, but groups of 3 share a prompt
    with pytest.raises(ValueError, match="does not divide"):
        policy_forward(model, *batch, group_size=5)
    # A group of one is no sharing at all.
    torch.testing.assert_close(policy_forward(model, *batch, group_size=1).logp, policy_forward(model, *batch).logp)


@pytest.mark.parametrize("limits", [{}, {"micro_batch_size": 6}, {"micro_batch_size": 7}, {"max_tokens": 95},
                                    {"micro_batch_size": 9, "max_tokens": 100}])
def test_plan_micro_batches_keeps_groups_whole(limits):
    lengths = torch.tensor([5, 12, 3, 12, 8, 1, 30, 2, 2, 7, 7, 7])  # 4 groups of 3
    plan = plan_micro_batches(lengths, group_size=3, **limits)
    assert sorted(torch.cat(plan).tolist()) == list(range(len(lengths)))
    for rows in plan:
        assert len(rows) % 3 == 0 and rows.tolist() == [x for g in rows[::3].tolist() for x in range(g, g + 3)]
        assert rows[0] % 3 == 0
        if "micro_batch_size" in limits:
            assert len(rows) <= limits["micro_batch_size"]
        if "max_tokens" in limits:
            assert len(rows) * int(lengths[rows].max()) <= limits["max_tokens"]
    assert plan_micro_batches(lengths, group_size=3, micro_batch_size=2) is None  # a group cannot fit
    assert plan_micro_batches(lengths, group_size=3, max_tokens=80) is None  # 3 x 30 > 80


def test_shared_prompts_with_lora(tokenizer, padded_batch, monkeypatch):
    # A peft-wrapped policy: the cache argument is forwarded to the base model; gradients reach the adapters.
    pytest.importorskip("peft")
    from clipo.models import LoraSpec, apply_lora

    model = apply_lora(build_tiny_model(tokenizer), LoraSpec(r=4, dropout=0.0)).train()
    with torch.no_grad():  # non-zero B matrices, so the adapters change the outputs
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    batch = grouped_batch(padded_batch)
    weights = torch.randn(batch[2].shape, generator=torch.Generator().manual_seed(1))
    calls = _spy_prefills(monkeypatch)
    results = []
    for group_size in (None, 3):
        model.zero_grad(set_to_none=True)
        out = policy_forward(model, *batch, with_grad=True, group_size=group_size)
        (out.logp * weights).sum().backward()
        results.append((out.logp.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}))
    assert calls
    (plain, plain_grads), (shared, shared_grads) = results
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=0)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(shared_grads[name], grad, atol=1e-4, rtol=0, msg=name)
