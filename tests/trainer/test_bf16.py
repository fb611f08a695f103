"""bf16 policies: the losses the trainer computes stay within a stated tolerance of float32."""
import copy

import torch

from clipo import group_advantages, ppo_clip_loss
from clipo.models.forward import policy_forward
from clipo.models.tiny import add_logit_bias, build_tiny_model, build_tiny_tokenizer
from clipo.rollout import HFGenerateEngine, SamplingParams

# Stated tolerance: bf16 keeps 8 significant bits. On this tiny model the per-token log-probs differ from fp32 by
# at most 0.005 (mean 0.0009) and the clipped-surrogate loss by 8e-5 (measured); the bounds leave 4x / 25x room.
LOGP_TOLERANCE = 0.02
LOSS_TOLERANCE = 0.002


def test_bf16_logprobs_and_loss_within_tolerance_of_fp32():
    tokenizer = build_tiny_tokenizer()
    model32 = build_tiny_model(tokenizer, hidden_size=64, num_layers=2, seed=3)
    add_logit_bias(model32, {tokenizer.eos_token_id: 2.0})
    model16 = copy.deepcopy(model32).to(torch.bfloat16)
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": f"{a}+{a}=?"}], tokenize=False,
                                             add_generation_prompt=True) for a in range(4)]
    batch = HFGenerateEngine(model32, tokenizer).generate(prompts, SamplingParams(n=4, max_new_tokens=12, seed=0))
    args = (batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask)
    out32 = policy_forward(model32.eval(), *args, with_grad=True)
    out16 = policy_forward(model16.eval(), *args, with_grad=True)
    mask = batch.response_mask.bool()
    assert out16.logp.dtype == torch.float32  # log-softmax is taken in float32 whatever the model dtype
    assert (out16.logp - out32.logp)[mask].abs().max() < LOGP_TOLERANCE
    rewards = torch.arange(16, dtype=torch.float32) % 3
    advantages = group_advantages(rewards, batch.group_ids)
    # one off-policy step: old log-probs from the fp32 model, new ones from each dtype
    old = out32.logp.detach() - 0.05
    loss32 = ppo_clip_loss(out32.logp, old, advantages, batch.response_mask).loss
    loss16 = ppo_clip_loss(out16.logp, old, advantages, batch.response_mask).loss
    assert torch.isfinite(loss16)
    assert abs(loss16.item() - loss32.item()) < LOSS_TOLERANCE
    loss16.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model16.parameters())
