"""The first RL step's numbers, recomputed from their definitions with plain Python loops.

One GRPO + CLIPO step of the tiny trainer runs as usual; the test keeps the :class:`StepBatch` that
``trainer.prepare`` returned, the head's weights from before the step and the per-rollout loss the head
reported, then derives every logged number again from the rollouts alone, without calling the library's
math (no ``group_advantages``, ``contrastive_loss``, ``contrastive_reward``, ``ppo_clip_loss``, ``aggregate``,
``policy_forward``):

* verifier: ``tiny_even_length`` scores 1 when the response text has even length; accuracy = share > 0;
* the teacher-forced forward: per rollout, an unpadded forward of prompt + response gives the old log-probs
  ``log softmax(logits_{P+t−1})[o_t]``, the entropies and the pooled state (mean of the lm_head's input over
  the response tokens);
* CLIPO (group level, InfoNCE, correct rollouts are anchors): ``z = W h / ‖W h‖`` with the pre-step head
  ``W``; for anchor i and a positive p (same prompt, also correct, ≠ i) ``ℓ_ij = cos_ij/τ − max_k cos_ik/τ``
  and ``L_i = −(ℓ_ip − log(Σ_{j≠i, same prompt} e^{ℓ_ij} + 1e-8))``; the positive is drawn at random, so
  the head's reported loss must be this value for one of i's positives; reward ``max(c − λ·L_i, floor)``
  for correct rollouts, ``max(c, floor)`` for the others;
* GRPO advantage: ``(R_i − mean_g) / (std_g + eps)``, unbiased std, 0 for a group whose rewards are equal;
* the policy loss on the first (on-policy) epoch: ratio 1, so the clipped surrogate is −A on every token
  (clip is inactive at r = 1; the dual clip keeps min(−A, −3A) = −A for A < 0) and the token-mean over the
  whole batch is ``Σ_i −A_i·|o_i| / Σ_i |o_i|``;
* the KL to the reference: the reference is the initial policy, so on step 1 it is 0.
"""
from __future__ import annotations

import json
import math
import random

import pytest
import torch

from clipo.testing import build_tiny_trainer
from clipo.training.tracking import read_metrics

TOL = 1e-5


@pytest.fixture(scope="module")
def first_step(tmp_path_factory):
    """Run one step; return (trainer, StepBatch, metrics row, pre-step head weights, head report, naive forward)."""
    folder = tmp_path_factory.mktemp("first_step")
    rng = random.Random(0)
    rows = [{"prompt": f"{a}+{b}=?", "answer": str(a + b)}
            for a, b in ((rng.randint(0, 9), rng.randint(0, 9)) for _ in range(32))]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    trainer = build_tiny_trainer([f"data.train={folder / 'train.jsonl'}", "data.eval=[]",
                                  f"trainer.output_dir={folder / 'run'}", "trainer.max_steps=1",
                                  "trainer.tensorboard=false", "rollout.n=8"])
    head_before = {k: v.detach().clone() for k, v in trainer.head_trainer.head.state_dict().items()}
    captured = {}

    real_head_step = trainer.head_trainer.step

    def recording_head_step(*args, **kwargs):
        result = real_head_step(*args, **kwargs)
        captured["head"] = result
        return result

    trainer.head_trainer.step = recording_head_step
    real_prepare = trainer.prepare

    def recording_prepare(*args, **kwargs):
        batch, metrics = real_prepare(*args, **kwargs)
        captured["batch"] = batch
        captured["forward"] = _naive_forward(trainer.model, batch.rollouts)  # the policy before its update
        return batch, metrics

    trainer.prepare = recording_prepare
    trainer.fit()
    (row,) = read_metrics(folder / "run")
    return trainer, captured["batch"], row, head_before, captured["head"], captured["forward"]


@torch.no_grad()
def _naive_forward(model, rollouts):
    """Per rollout, one unpadded forward: [(logp per response token, entropy per token, pooled state)]."""
    seen = {}
    hook = model.get_output_embeddings().register_forward_hook(lambda m, inputs, out: seen.update(h=inputs[0]))
    was_training = model.training
    model.eval()
    out = []
    try:
        for i in range(rollouts.num_rollouts):
            prompt = [int(t) for t, m in zip(rollouts.prompt_ids[i], rollouts.prompt_mask[i]) if m]
            response = [int(t) for t, m in zip(rollouts.response_ids[i], rollouts.response_mask[i]) if m]
            logits = model(torch.tensor([prompt + response])).logits[0].double()
            hidden = seen["h"][0].double()
            logps, entropies = [], []
            for t, token in enumerate(response):
                row = logits[len(prompt) + t - 1].tolist()
                top = max(row)
                log_z = top + math.log(sum(math.exp(x - top) for x in row))
                logps.append(row[token] - log_z)
                entropies.append(-sum(math.exp(x - log_z) * (x - log_z) for x in row))
            states = [hidden[len(prompt) + t] for t in range(len(response))]
            pooled = sum(states) / len(states) if states else torch.zeros(hidden.shape[-1], dtype=torch.float64)
            out.append((logps, entropies, pooled))
    finally:
        hook.remove()
        model.train(was_training)
    return out


def _groups(batch):
    groups = {}
    for i, g in enumerate(batch.rollouts.group_ids.tolist()):
        groups.setdefault(g, []).append(i)
    return groups


def test_config_is_the_one_derived_here(first_step):
    trainer = first_step[0]
    a, c = trainer.config.algorithm, trainer.config.clipo
    assert (a.name, a.scale_by_std, a.adv_eps, a.loss_agg, a.eps_low, a.eps_high, a.dual_clip) == (
        "grpo", True, 1e-6, "token-mean", 0.2, 0.2, 3.0)
    assert (c.loss_kind, c.level, c.masked_label, c.skip_trivial, c.distance, c.head_kind, c.pooling) == (
        "infonce", "group", 0, True, "cosine", "linear", "mean")
    assert (c.temperature, c.lam, c.constant, c.floor) == (0.5, 0.2, 0.0, -0.5)
    assert trainer.config.trainer.ppo_epochs == 1 and trainer.config.trainer.mini_batches == 1
    assert trainer.config.rollout.temperature == 1.0 and trainer.config.reward.incorrect_score == 0.0


def test_verifier_scores_and_accuracy(first_step):
    _, batch, row, *_ = first_step
    texts = batch.rollouts.response_texts
    expected = [1.0 if len(text) % 2 == 0 else 0.0 for text in texts]
    assert batch.scores.tolist() == expected
    assert batch.correct.tolist() == [s > 0 for s in expected]
    assert row["reward/accuracy"] == pytest.approx(sum(s > 0 for s in expected) / len(expected), abs=1e-7)
    assert 0 < sum(expected) < len(expected)  # a mix, so the rest of this file has something to check


def test_old_logprobs_entropy_and_pooled_states(first_step):
    _, batch, row, _, _, forward = first_step
    mask = batch.rollouts.response_mask
    token_entropies = []
    for i, (logps, entropies, pooled) in enumerate(forward):
        n = int(mask[i].sum())
        assert len(logps) == n
        assert batch.old_logp[i, :n].tolist() == pytest.approx(logps, abs=TOL)
        assert batch.old_logp[i, n:].abs().sum().item() == 0.0  # padding
        assert batch.pooled[i].double().tolist() == pytest.approx(pooled.tolist(), abs=TOL)
        token_entropies.extend(entropies)
    assert row["actor/entropy"] == pytest.approx(sum(token_entropies) / len(token_entropies), abs=TOL)


def _naive_infonce(batch, weight, temperature):
    """{anchor i: {positive p: L_i with p drawn}} at group level, from the pooled states and the head weight."""
    w = weight.double()
    z = []
    for h in batch.pooled.double():
        v = [sum(w[d, k].item() * h[k].item() for k in range(h.shape[0])) for d in range(w.shape[0])]
        norm = math.sqrt(sum(x * x for x in v))
        z.append([x / norm for x in v])
    n = len(z)
    cos = [[sum(a * b for a, b in zip(z[i], z[j])) for j in range(n)] for i in range(n)]
    correct, groups = batch.correct.tolist(), batch.rollouts.group_ids.tolist()
    losses = {}
    for i in range(n):
        if not correct[i]:
            continue  # masked_label 0: incorrect rollouts are no anchors
        same = [j for j in range(n) if j != i and groups[j] == groups[i]]
        positives = [j for j in same if correct[j]]
        negatives = [j for j in same if not correct[j]]
        if not positives or not negatives:
            continue  # skip_trivial
        top = max(cos[i][k] / temperature for k in range(n))
        ell = [cos[i][j] / temperature - top for j in range(n)]
        log_denominator = math.log(sum(math.exp(ell[j]) for j in same) + 1e-8)
        losses[i] = {p: -(ell[p] - log_denominator) for p in positives}
    return losses


def test_contrastive_loss_and_reward(first_step):
    trainer, batch, row, head_before, head_report, _ = first_step
    c = trainer.config.clipo
    candidates = _naive_infonce(batch, head_before["projection.weight"], c.temperature)
    assert candidates, "no anchor in the first batch: nothing to check"
    reported = head_report.per_rollout_loss.tolist()
    per_rollout = [0.0] * len(reported)
    for i, options in candidates.items():
        # The drawn positive is random: the reported loss must be the loss for one of i's positives.
        matches = [loss for loss in options.values() if abs(loss - reported[i]) <= TOL]
        assert matches, (i, reported[i], options)
        per_rollout[i] = matches[0]
    for i, loss in enumerate(reported):
        if i not in candidates:
            assert loss == 0.0, (i, loss)  # non-anchors have no loss
    anchors = len(candidates)
    assert row["contrastive/num_anchors"] == anchors
    assert row["contrastive/loss"] == pytest.approx(sum(per_rollout) / (anchors + 1e-8), abs=TOL)
    correct = batch.correct.tolist()
    expected = [max(c.constant - c.lam * per_rollout[i] * correct[i], c.floor) for i in range(len(correct))]
    assert batch.contrastive.tolist() == pytest.approx(expected, abs=TOL)
    assert any(r < 0 for r in expected)  # some correct anchor was rewarded for its loss


def test_rewards_and_grpo_advantages(first_step):
    trainer, batch, row, *_ = first_step
    eps = trainer.config.algorithm.adv_eps
    rewards = [s + o + r for s, o, r in zip(batch.scores.tolist(), batch.overlong.tolist(), batch.contrastive.tolist())]
    assert batch.overlong.abs().max().item() == 0.0  # GRPO has no overlong penalty
    assert batch.rewards.tolist() == pytest.approx(rewards, abs=TOL)
    expected = [0.0] * len(rewards)
    for members in _groups(batch).values():
        values = [rewards[i] for i in members]
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        for i in members:
            expected[i] = 0.0 if max(values) == min(values) else (rewards[i] - mean) / (std + eps)
    assert batch.advantages.tolist() == pytest.approx(expected, abs=TOL)
    assert any(abs(a) > 0.1 for a in expected)
    assert row["reward/mean"] == pytest.approx(sum(rewards) / len(rewards), abs=TOL)
    assert row["advantage/abs_mean"] == pytest.approx(sum(abs(a) for a in expected) / len(expected), abs=TOL)


def test_on_policy_pg_loss_is_the_token_mean_of_minus_the_advantage(first_step):
    _, batch, row, *_ = first_step
    lengths = batch.rollouts.response_mask.sum(-1).tolist()
    advantages = batch.advantages.tolist()
    expected = sum(-a * n for a, n in zip(advantages, lengths)) / sum(lengths)
    assert row["actor/pg_loss"] == pytest.approx(expected, abs=TOL)
    assert abs(expected) > 1e-3  # not trivially 0: long and short responses carry different advantages
    # ratio 1: nothing is clipped and the policy has not moved from the sampling one
    assert row["actor/pg_clipfrac"] == 0.0 and row["actor/pg_clipfrac_lower"] == 0.0
    assert row["actor/ppo_kl"] == pytest.approx(0.0, abs=TOL)
    # the reference is the initial policy: no KL on the first step
    assert row["actor/kl"] == pytest.approx(0.0, abs=TOL)
