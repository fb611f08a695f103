"""Outcome advantages (GRPO, Dr. GRPO, RLOO) and DAPO's reward-side tools (``docs/algorithms.md``).

Shapes: ``N`` rollouts; rollouts of the same prompt share one integer ``group_id``.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


def _group_index(group_ids: Tensor) -> tuple[Tensor, int]:
    """Map arbitrary integer group ids ``[N]`` to dense indices ``0..K-1`` and return ``(index [N], K)``."""
    if group_ids.dtype.is_floating_point or group_ids.dtype == torch.bool:
        raise TypeError(f"group_ids must be an integer tensor (one id per prompt), got dtype {group_ids.dtype}")
    _, index = torch.unique(group_ids, return_inverse=True)
    return index, int(index.max().item()) + 1 if index.numel() else 0


class _GroupSums(NamedTuple):
    """Per-group statistics shared by the advantage estimators (float64)."""

    index: Tensor  # [N] dense group index of each rollout
    rewards: Tensor  # [N] the rewards as float64
    counts: Tensor  # [K] rollouts per group
    sums: Tensor  # [K] reward sum per group
    constant: Tensor  # [N] bool: the rollout's group has identical rewards


def _group_sums(name: str, rewards: Tensor, group_ids: Tensor) -> _GroupSums:
    """Check the shapes (``name`` is the caller, for the message) and sum the rewards per group."""
    if rewards.dim() != 1 or group_ids.shape != rewards.shape:
        raise ValueError(
            f"{name}: rewards and group_ids must both be [N]; got {tuple(rewards.shape)} and "
            f"{tuple(group_ids.shape)} (sum token-level rewards over the last dim first)"
        )
    index, num_groups = _group_index(group_ids)
    r = rewards.double()
    counts = torch.zeros(num_groups, dtype=torch.float64, device=r.device).index_add_(0, index, torch.ones_like(r))
    sums = torch.zeros_like(counts).index_add_(0, index, r)
    # "All equal" is tested on the rewards themselves, so it is exact whatever the round-off of a mean.
    group_max = torch.full_like(counts, -torch.inf).scatter_reduce_(0, index, r, reduce="amax")
    group_min = torch.full_like(counts, torch.inf).scatter_reduce_(0, index, r, reduce="amin")
    return _GroupSums(index, r, counts, sums, (group_max == group_min)[index])


@torch.no_grad()
def group_advantages(
    rewards: Tensor,
    group_ids: Tensor,
    *,
    scale_by_std: bool = True,
    eps: float = 1e-6,
) -> Tensor:
    """Group-relative outcome advantages of GRPO (``scale_by_std=True``) and Dr. GRPO (``False``).

    For rollout ``i`` in group ``g`` with ``G = |g|``::

        GRPO     : A_i = (R_i − mean_g R) / (std_g R + eps)      std unbiased (N−1), as torch.std
        Dr. GRPO : A_i =  R_i − mean_g R

    A group of one gets mean 0 and std 1 (verl's convention), so ``A_i = R_i / (1 + eps)`` under GRPO.
    A group whose rewards are all identical gets exactly 0. (verl computes ``0/(0+eps)``, which is exactly 0
    for 0/1 rewards but not for non-dyadic ones: in float32, eight rewards of 0.7 give |A| ≈ 0.056; clipo
    returns the exact 0.)
    Means and deviations are accumulated in float64 and the result is cast back to ``rewards.dtype``.

    Args:
        rewards: ``[N]`` scalar reward per rollout (sum the token-level rewards first).
        group_ids: ``[N]`` integer id of each rollout's prompt; ids need not be contiguous or sorted.
        scale_by_std: divide by the group std (GRPO) or not (Dr. GRPO).
        eps: added to the std (verl 1e-6; the Dr. GRPO / oat code uses 1e-8).

    Returns:
        ``[N]`` advantages, no gradient. Broadcast over tokens with ``A[:, None] * mask``.
    """
    index, r, counts, sums, constant = _group_sums("group_advantages", rewards, group_ids)
    mean = sums / counts
    deviation = r - mean[index]
    # Unbiased variance; groups of one take verl's convention (mean 0, std 1).
    squares = torch.zeros_like(counts).index_add_(0, index, deviation * deviation)
    std = torch.sqrt(squares / (counts - 1).clamp(min=1))
    singleton = counts[index] == 1
    centered = torch.where(singleton, r, deviation)
    # Exactly zero for groups with identical rewards, whatever the round-off in the mean.
    centered = torch.where(constant & ~singleton, torch.zeros_like(centered), centered)
    if scale_by_std:
        scale = torch.where(singleton, torch.ones_like(r), std[index])
        centered = centered / (scale + eps)
    return centered.to(rewards.dtype)


@torch.no_grad()
def rloo_advantages(rewards: Tensor, group_ids: Tensor) -> Tensor:
    """RLOO's leave-one-out advantages: each rollout is compared with the mean of the OTHER rollouts of its group.

    For rollout ``i`` in group ``g`` with ``G = |g|``::

        A_i = R_i − (1 / (G − 1)) · Σ_{j ∈ g, j ≠ i} R_j   =   G / (G − 1) · (R_i − mean_g R)      (G > 1)
        A_i = 0                                                                                 (G = 1)

    The baseline of rollout ``i`` does not depend on ``R_i``, so the estimate is unbiased (Kool et al. 2019,
    "Buy 4 REINFORCE samples, get a baseline for free"; Ahmadian et al. 2024). A group of one has no other
    rollout to compare with and gets 0. A group whose rewards are all identical gets exactly 0 (the sums can
    leave round-off for non-dyadic rewards). There is no std scaling. Sums are accumulated in float64 and the
    result is cast back to ``rewards.dtype``.

    Args:
        rewards: ``[N]`` scalar reward per rollout.
        group_ids: ``[N]`` integer id of each rollout's prompt; ids need not be contiguous or sorted.

    Returns:
        ``[N]`` advantages, no gradient; they sum to 0 within every group.
    """
    index, r, counts, sums, constant = _group_sums("rloo_advantages", rewards, group_ids)
    others = counts[index] - 1  # [N] G − 1
    baseline = (sums[index] - r) / others.clamp(min=1)  # mean of the other rollouts of the group
    advantages = torch.where(others > 0, r - baseline, torch.zeros_like(r))
    advantages = torch.where(constant, torch.zeros_like(advantages), advantages)
    return advantages.to(rewards.dtype)


def overlong_penalty(lengths: Tensor, *, max_len: int, cache_len: int, factor: float = 1.0) -> Tensor:
    """DAPO's soft overlong punishment (paper eq. 13), added to the task reward whatever its correctness.

    With ``expected = max_len − cache_len`` and ``|y|`` the valid response length (EOS included)::

        R_len(y) = min(−(|y| − expected) / cache_len · factor, 0)
                 = 0                                  if |y| ≤ expected
                 = (expected − |y|) / cache_len       if expected < |y| ≤ max_len   (factor 1)
                 = −factor                            at |y| = max_len

    Args:
        lengths: ``[N]`` valid response lengths (int or float).
        max_len: ``L_max``, the maximum response length (DAPO: 20480).
        cache_len: ``L_cache``, the width of the soft buffer (DAPO: 4096); must be in ``(0, max_len]``.
        factor: penalty scale (DAPO: 1.0).

    Returns:
        ``[N]`` float32 penalties in ``[−factor·(|y|−expected)/cache_len, 0]``.
    """
    if not 0 < cache_len <= max_len:
        raise ValueError(f"overlong_penalty: need 0 < cache_len <= max_len, got cache_len={cache_len}, max_len={max_len}")
    expected = max_len - cache_len
    exceed = lengths.to(torch.float32) - expected
    return torch.clamp(-exceed / cache_len * factor, max=0.0)


def informative_groups(rewards: Tensor, group_ids: Tensor) -> Tensor:
    """DAPO's dynamic-sampling predicate: keep a rollout iff its group's rewards are not all equal.

    verl keeps a group when ``np.std(values) > 0`` or the group has one member; the paper writes
    ``0 < #correct < G``. clipo tests "not all equal" exactly (``max > min``), which is the same except for the
    float round-off a population std can carry.

    Args:
        rewards: ``[N]`` the per-rollout metric (accuracy, score, or summed reward).
        group_ids: ``[N]`` integer prompt ids.

    Returns:
        ``[N]`` bool: True for rollouts of informative groups (and of groups of one, as verl).
    """
    if rewards.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=rewards.device)
    index, num_groups = _group_index(group_ids)
    r = rewards.double()
    group_max = torch.full((num_groups,), -torch.inf, dtype=torch.float64, device=r.device)
    group_max = group_max.scatter_reduce_(0, index, r, reduce="amax")
    group_min = torch.full_like(group_max, torch.inf).scatter_reduce_(0, index, r, reduce="amin")
    counts = torch.zeros_like(group_max).index_add_(0, index, torch.ones_like(r))
    keep = (group_max > group_min) | (counts == 1)
    return keep[index]
