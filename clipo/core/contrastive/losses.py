"""CLIPO's contrastive losses (docs/algorithms.md#clipo), vectorised over an ``[N, N]`` similarity matrix.

Inputs: unit embeddings ``z [N, D]``, correctness ``correct [N]`` (labels ``y_i = int(correct_i)``) and prompt
ids ``group_ids [N]``. All kinds share one construction::

    sim_ij = cos_ij ("cosine") | −cos_ij ("negative_cosine") | 1 − sqrt(clamp(2 − 2cos_ij, min=1e-8)) ("l2")
    Same_ij = [y_i = y_j];  G_ij = [g_i = g_j]  (group, cross);  G ≡ 1  (batch)
    positives  P_ij = Same_ij · G_ij · [i ≠ j]
    candidates C_ij = G_ij (group)  |  1 (batch, cross);   A_ij = C_ij · [i ≠ j]
    n_pos_i = Σ_j P_ij;   n_neg_i = Σ_j C_ij (1 − Same_ij G_ij)
    ℓ_ij = sim_ij/τ − sg(max_k sim_ik/τ)          (row max over ALL k, self included)
    S_i = Σ_j A_ij e^{ℓ_ij};  S⁺_i = Σ_j P_ij e^{ℓ_ij};  LSE_i = log(S_i + 1e-8)

    soft_nn     : L_i = −[log(S⁺_i + 1e-8) − LSE_i]
    supcon_in   : L_i = −[log(S⁺_i + 1e-8) − LSE_i − log(n_pos_i + 1e-8)]
    supcon_out  : L_i = −Σ_j P_ij (ℓ_ij − LSE_i) / (n_pos_i + 1e-8)
    infonce     : L_i = −[ℓ_{i,p_i} P_{i,p_i} − LSE_i],  p_i ~ Uniform{j : P_ij = 1}   (one sampled positive)

    anchors α_i = [y_i ≠ masked_label]  (masked_label −1: every rollout)
                  × [n_pos_i > 0 ∧ n_neg_i > 0]  (when skip_trivial)
    per-rollout loss α_i L_i;   batch loss Σ_i α_i L_i / (Σ_i α_i + 1e-8)

The row-max shift and the ``1e-8`` terms are kept because at τ = 0.05 they change the values measurably; they
reproduce the official code. Levels: ``group`` (positives and denominator from the same prompt, the paper's
default), ``batch`` (prompt ids ignored), ``cross`` (positives from the same prompt, denominator the whole
batch, so same-label rollouts of other prompts act as negatives).

The seed write-up's batch-wide InfoNCE over all positives is :data:`SEED_CONTRASTIVE`:
``kind="supcon_out", level="batch", masked_label=-1, temperature=0.1``.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

CONTRASTIVE_KINDS = ("infonce", "supcon_in", "supcon_out", "soft_nn")
CONTRASTIVE_LEVELS = ("group", "batch", "cross")
DISTANCES = ("cosine", "negative_cosine", "l2")

#: The seed write-up's variant: every rollout an anchor, all same-label rollouts in the batch positives.
SEED_CONTRASTIVE = {"kind": "supcon_out", "level": "batch", "masked_label": -1, "temperature": 0.1}

_EPS = 1e-8


class ContrastiveMasks(NamedTuple):
    """Pair masks of :func:`contrastive_masks`, all ``[N, N]`` bool except the counts ``[N]``."""

    positives: Tensor
    candidates: Tensor
    num_positives: Tensor
    num_negatives: Tensor


def similarity_matrix(z: Tensor, distance: str = "cosine") -> Tensor:
    """``sim [N, N]`` from unit embeddings ``z [N, D]`` (see the module docstring for the formulas)."""
    cos = z @ z.T
    if distance == "cosine":
        return cos
    if distance == "negative_cosine":
        return -cos
    if distance == "l2":
        # ‖z_i − z_j‖ = sqrt(2 − 2 cos) for unit vectors; the clamp keeps sqrt differentiable on the diagonal.
        return 1.0 - torch.sqrt(torch.clamp(2.0 - 2.0 * cos, min=1e-8))
    raise ValueError(f"unknown distance {distance!r}; choose one of {', '.join(DISTANCES)}")


def contrastive_masks(labels: Tensor, group_ids: Tensor, level: str = "group") -> ContrastiveMasks:
    """Positive and candidate pair masks for ``labels [N]`` (int) and ``group_ids [N]`` at ``level``."""
    if level not in CONTRASTIVE_LEVELS:
        raise ValueError(f"unknown contrastive level {level!r}; choose one of {', '.join(CONTRASTIVE_LEVELS)}")
    n = labels.shape[0]
    not_self = ~torch.eye(n, dtype=torch.bool, device=labels.device)
    same_label = labels[:, None] == labels[None, :]
    if level == "batch":
        same_group = torch.ones(n, n, dtype=torch.bool, device=labels.device)
    else:
        same_group = group_ids[:, None] == group_ids[None, :]
    in_candidates = same_group if level == "group" else torch.ones_like(same_group)
    positives = same_label & same_group & not_self
    candidates = in_candidates & not_self
    num_negatives = (in_candidates & ~(same_label & same_group)).sum(-1)
    return ContrastiveMasks(positives, candidates, positives.sum(-1), num_negatives)


def anchor_mask(
    labels: Tensor, masks: ContrastiveMasks, *, masked_label: int = 0, skip_trivial: bool = True
) -> Tensor:
    """``α [N]`` bool: rollouts whose loss counts (label not masked; a positive and a negative if skip_trivial)."""
    anchors = torch.ones_like(labels, dtype=torch.bool) if masked_label == -1 else labels != masked_label
    if skip_trivial:
        anchors = anchors & (masks.num_positives > 0) & (masks.num_negatives > 0)
    return anchors


def sample_positives(positives: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One positive index per row, uniformly among ``positives [N, N]`` (``[N]`` long).

    Matches the official draw: ``torch.multinomial(W, 1)`` with ``W = P`` as float and ``W[i, 0] = 1e-8`` for
    rows without a positive (their draw is 0 and is masked out), so a seeded generator gives the same indices.
    """
    if positives.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=positives.device)
    weights = positives.float()
    empty = ~positives.any(-1)
    weights[empty, 0] = 1e-8
    return torch.multinomial(weights, 1, generator=generator).squeeze(-1)


def contrastive_loss(
    z: Tensor,
    correct: Tensor,
    group_ids: Tensor,
    *,
    kind: str = "infonce",
    level: str = "group",
    temperature: float = 0.05,
    masked_label: int = 0,
    skip_trivial: bool = True,
    distance: str = "cosine",
    positive_idx: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-rollout contrastive loss ``[N]`` and batch loss ``[]`` (formulas in the module docstring).

    Args:
        z: ``[N, D]`` L2-normalised embeddings (the head's output); bf16/fp16 are upcast to float32.
        correct: ``[N]`` bool (or 0/1) verifier verdicts; label ``y_i = int(correct_i)``.
        group_ids: ``[N]`` integer prompt ids.
        kind: ``infonce`` (the paper's default, one sampled positive), ``supcon_in``, ``supcon_out``, ``soft_nn``.
        level: ``group`` (default), ``batch`` or ``cross``.
        temperature: τ > 0 (paper 0.05).
        masked_label: label whose anchors are dropped (0: only correct rollouts are anchors, the paper's
            default; 1: only incorrect ones; −1: all).
        skip_trivial: drop anchors without a positive or without a negative among their candidates.
        distance: ``cosine`` (default), ``negative_cosine`` or ``l2``.
        positive_idx: ``[N]`` long, the positive of each row for ``infonce`` (drawn when None).
        generator: the RNG for drawing infonce positives (the global torch RNG when None).

    Returns:
        ``(per_rollout [N], batch_loss [])``. Non-anchors have loss 0. When no rollout is an anchor both are
        constant zeros without gradient (the official code then crashes in ``backward``; callers should
        skip the optimizer step — :class:`clipo.HeadTrainer` does).
    """
    if kind not in CONTRASTIVE_KINDS:
        raise ValueError(f"unknown contrastive kind {kind!r}; choose one of {', '.join(CONTRASTIVE_KINDS)}")
    if temperature <= 0:
        raise ValueError(f"contrastive temperature must be > 0, got {temperature}")
    if masked_label not in (-1, 0, 1):
        raise ValueError(f"masked_label must be -1 (keep all), 0 (drop incorrect) or 1 (drop correct), got {masked_label}")
    if z.dim() != 2 or correct.shape != (z.shape[0],) or group_ids.shape != (z.shape[0],):
        raise ValueError(
            f"contrastive_loss: expected z [N, D], correct [N], group_ids [N]; got {tuple(z.shape)}, "
            f"{tuple(correct.shape)}, {tuple(group_ids.shape)}"
        )
    if z.dtype in (torch.float16, torch.bfloat16):
        z = z.float()
    labels = correct.long()
    masks = contrastive_masks(labels, group_ids, level)
    anchors = anchor_mask(labels, masks, masked_label=masked_label, skip_trivial=skip_trivial)
    n = z.shape[0]
    if not bool(anchors.any()):
        zeros = torch.zeros(n, dtype=z.dtype, device=z.device)
        return zeros, torch.zeros((), dtype=z.dtype, device=z.device)

    logits = similarity_matrix(z, distance) / temperature
    shifted = logits - logits.max(dim=-1, keepdim=True).values.detach()
    positives = masks.positives.to(z.dtype)
    candidates = masks.candidates.to(z.dtype)
    exp = torch.exp(shifted)
    log_denominator = torch.log((candidates * exp).sum(-1) + _EPS)
    num_pos = masks.num_positives.to(z.dtype)
    if kind == "infonce":
        if positive_idx is None:
            positive_idx = sample_positives(masks.positives, generator)
        if positive_idx.shape != (n,):
            raise ValueError(f"positive_idx must be [N]={n} long indices, got shape {tuple(positive_idx.shape)}")
        chosen = positive_idx[:, None].to(device=z.device, dtype=torch.long)
        picked = shifted.gather(1, chosen).squeeze(1) * positives.gather(1, chosen).squeeze(1)
        per_rollout = -(picked - log_denominator)
    elif kind == "supcon_out":
        log_prob = shifted - log_denominator[:, None]
        per_rollout = -(positives * log_prob).sum(-1) / (num_pos + _EPS)
    else:
        log_positive = torch.log((positives * exp).sum(-1) + _EPS)
        per_rollout = -(log_positive - log_denominator)
        if kind == "supcon_in":
            per_rollout = per_rollout + torch.log(num_pos + _EPS)
    weights = anchors.to(z.dtype)
    per_rollout = per_rollout * weights
    return per_rollout, per_rollout.sum() / (weights.sum() + _EPS)


def embedding_separation(z: Tensor, correct: Tensor, group_ids: Tensor) -> dict[str, Tensor]:
    """Mean cosine similarity of correct–correct and correct–incorrect pairs within each prompt group.

    A diagnostic of what the head learns: CLIPO should pull correct rollouts together (high ``cos_cc``) and
    away from incorrect ones (lower ``cos_ci``). NaN when a batch has no pair of that type. Returns detached
    scalars ``{"cos_correct_correct", "cos_correct_incorrect"}``.
    """
    with torch.no_grad():
        z = F.normalize(z.float(), dim=-1)
        cos = z @ z.T
        same_group = group_ids[:, None] == group_ids[None, :]
        not_self = ~torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
        c = correct.bool()
        both = same_group & not_self & c[:, None] & c[None, :]
        mixed = same_group & c[:, None] & ~c[None, :]
        nan = torch.full((), float("nan"), device=z.device)
        return {
            "cos_correct_correct": cos[both].mean() if bool(both.any()) else nan,
            "cos_correct_incorrect": cos[mixed].mean() if bool(mixed.any()) else nan,
        }
