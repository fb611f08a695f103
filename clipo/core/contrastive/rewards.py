"""Turning the contrastive signal into a dense reward (docs/algorithms.md#clipo)."""
from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def contrastive_reward(
    per_rollout_loss: Tensor,
    correct: Tensor,
    *,
    lam: float = 0.2,
    constant: float = 0.0,
    floor: float = -0.5,
) -> Tensor:
    """CLIPO's reward: ``r_con_i = max(constant − lam · L_i · 1[correct_i], floor)``, ``[N]`` float32, no grad.

    ``L_i`` is the per-rollout contrastive loss of the PRE-update head. With the defaults the reward lies in
    ``[−0.5, 0]``: incorrect rollouts (and correct non-anchors, whose loss is 0) get exactly ``constant``,
    so a correct total ``1 + r_con ≥ 0.5`` stays above an incorrect 0 and advantages keep their sign. It is
    added to the verifiable reward (at the last valid token) before the group advantage.
    """
    gate = correct.to(torch.float32)
    return torch.clamp(constant - lam * per_rollout_loss.float() * gate, min=floor)


@torch.no_grad()
def similarity_gap_reward(z: Tensor, correct: Tensor, group_ids: Tensor | None = None, *, weight: float = 0.5) -> Tensor:
    """The seed write-up's reward: ``weight · (mean cos to same-label rollouts − mean cos to other-label ones)``.

    For each rollout ``i`` the means run over the other rollouts of its prompt group (or of the whole batch
    when ``group_ids`` is None), split by whether their correctness equals ``correct_i``. A rollout with no
    rollout of one kind to compare with gets 0. Returns ``[N]`` float32 without gradient. Unlike
    :func:`contrastive_reward`, every rollout (correct or not) receives it.
    """
    z = torch.nn.functional.normalize(z.float(), dim=-1)
    n = z.shape[0]
    cos = z @ z.T
    c = correct.bool()
    scope = torch.ones(n, n, dtype=torch.bool, device=z.device) if group_ids is None else group_ids[:, None] == group_ids[None, :]
    not_self = ~torch.eye(n, dtype=torch.bool, device=z.device)
    same = scope & not_self & (c[:, None] == c[None, :])
    other = scope & (c[:, None] != c[None, :])
    n_same, n_other = same.sum(-1), other.sum(-1)
    mean_same = (cos * same).sum(-1) / n_same.clamp(min=1)
    mean_other = (cos * other).sum(-1) / n_other.clamp(min=1)
    gap = torch.where((n_same > 0) & (n_other > 0), mean_same - mean_other, torch.zeros_like(mean_same))
    return weight * gap
