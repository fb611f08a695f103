"""Policy-gradient losses of the base algorithms (``docs/algorithms.md``).

Each function returns a :class:`PolicyLoss` ``(loss, metrics)``: ``loss`` is the scalar to MINIMISE (the
negative of the paper's objective) and ``metrics`` holds detached scalar tensors (no ``.item()`` here, so
nothing forces a device sync). Which algorithm uses which loss is the registry's business
(:mod:`clipo.core.algorithms`).

Shapes: ``N`` rollouts, ``L`` padded response tokens. ``logp``/``old_logp`` are ``[N, L]`` log-probs of the
sampled tokens under π_θ and π_old; ``mask`` is ``[N, L]``; ``advantages`` is ``[N]`` (one per rollout) or
``[N, L]`` (per token). ``r = π_θ / π_old``.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from clipo.core.ops import aggregate, masked_mean


class PolicyLoss(NamedTuple):
    """A loss to minimise and its detached diagnostics (``pg_clipfrac``, ``pg_clipfrac_lower``, ``ppo_kl``)."""

    loss: Tensor
    metrics: dict[str, Tensor]


def _token_advantages(advantages: Tensor, logp: Tensor) -> Tensor:
    """Broadcast ``[N]`` advantages to ``[N, L]``; pass ``[N, L]`` through."""
    if advantages.dim() == 1:
        if advantages.shape[0] != logp.shape[0]:
            raise ValueError(f"advantages [N] has N={advantages.shape[0]} but logp has N={logp.shape[0]}")
        return advantages[:, None].expand_as(logp)
    if advantages.shape != logp.shape:
        raise ValueError(f"advantages must be [N] or [N, L]={tuple(logp.shape)}, got {tuple(advantages.shape)}")
    return advantages


def _check_clip(eps_low: float, eps_high: float) -> None:
    if eps_low < 0 or eps_high < 0:
        raise ValueError(f"clip ranges must be >= 0, got eps_low={eps_low}, eps_high={eps_high}")


def ppo_clip_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    dual_clip: float | None = 3.0,
    agg: str = "token-mean",
    norm_len: float | None = None,
    global_count: float | Tensor | None = None,
) -> PolicyLoss:
    """Token-level clipped surrogate of PPO / GRPO / DAPO with clip-higher and dual clip (verl's vanilla loss).

    ::

        log_r = clamp(logp − old_logp, −20, 20);  r = exp(log_r)                        [N, L]
        l1 = −A·r ;  l2 = −A·clamp(r, 1 − eps_low, 1 + eps_high) ;  l = max(l1, l2)      [N, L]
        l3 = −A·c                          (dual clip, c = dual_clip > 1)                [N, L]
        L  = where(A < 0, min(l, l3), l)   (caps the loss of negative-advantage tokens)  [N, L]
        loss = aggregate(L, mask, agg)                                                    []

    Metrics: ``pg_clipfrac = mean_m[l2 > l1]``, ``pg_clipfrac_lower = mean_m[(l > l3) ∧ (A < 0)]``,
    ``ppo_kl = mean_m[−log_r]`` (masked means).

    Args:
        eps_low, eps_high: clip range ``[1 − eps_low, 1 + eps_high]``; ``eps_high=None`` means symmetric.
            GRPO 0.2/0.2, DAPO's clip-higher 0.2/0.28.
        dual_clip: the constant ``c`` (verl ``clip_ratio_c`` = 3.0); ``None`` disables the dual clip.
        agg, norm_len, global_count: passed to :func:`clipo.aggregate`. GRPO's paper uses
            ``seq-mean-token-mean``; verl and DAPO ``token-mean``; Dr. GRPO ``seq-mean-token-sum-constlen``.
    """
    eps_high = eps_low if eps_high is None else eps_high
    _check_clip(eps_low, eps_high)
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1.0 (verl's clip_ratio_c), got {dual_clip}; use None to disable it")
    adv = _token_advantages(advantages, logp)
    log_ratio = torch.clamp(logp - old_logp, min=-20.0, max=20.0)
    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    pessimistic = torch.maximum(unclipped, clipped)
    if dual_clip is None:
        per_token = pessimistic
        lower_clipped = torch.zeros_like(pessimistic, dtype=torch.bool)
    else:
        capped = -adv * dual_clip
        per_token = torch.where(adv < 0, torch.minimum(pessimistic, capped), pessimistic)
        lower_clipped = (pessimistic > capped) & (adv < 0)
    loss = aggregate(per_token, mask, agg, norm_len=norm_len, global_count=global_count)
    with torch.no_grad():
        metrics = {
            "pg_clipfrac": masked_mean((clipped > unclipped).float(), mask.float()),
            "pg_clipfrac_lower": masked_mean(lower_clipped.float(), mask.float()),
            "ppo_kl": masked_mean(-log_ratio.float(), mask.float()),
        }
    return PolicyLoss(loss, metrics)


def _sequence_log_ratio(logp: Tensor, old_logp: Tensor, mask: Tensor) -> Tensor:
    """``log s_i = Σ_t m·(logp − old_logp) / max(n_i, 1)`` — GSPO's length-normalised sequence log-ratio, ``[N]``."""
    maskf = mask.to(logp.dtype)
    lengths = maskf.sum(-1).clamp(min=1.0)
    diff = torch.where(mask.bool(), logp - old_logp, torch.zeros_like(logp))
    return diff.sum(-1) / lengths


def gspo_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: float = 3e-4,
    eps_high: float = 4e-4,
    variant: str = "token",
    global_count: float | Tensor | None = None,
) -> PolicyLoss:
    """GSPO: clipping of the length-normalised sequence ratio (verl's ``compute_policy_loss_gspo``).

    ::

        log s_i   = Σ_t m·(logp − old_logp) / max(n_i, 1)                                  [N]
        token     : log s_it = min(sg(log s_i) + logp_it − sg(logp_it), 10)                 [N, L]
                    (value s_i; ∂s_it/∂logp_it = s_i: each token carries its sequence's ratio)
        sequence  : log s_it = min(log s_i, 10)  (the same for every token of sequence i)   [N, L]
        L  = max(−A·s, −A·clamp(s, 1 − eps_low, 1 + eps_high))                              [N, L]
        loss = aggregate(L, mask, "seq-mean-token-mean")   — the mode is fixed by the algorithm

    With sequence-constant advantages the two variants agree in value and gradient. There is no dual clip.
    An empty response has ``log s = 0`` and is left out of the sequence mean.

    Args:
        eps_low, eps_high: sequence clip range; the paper uses 3e-4 / 4e-4.
        variant: ``"token"`` (GSPO-token, verl's implementation) or ``"sequence"``.
        global_count: number of non-empty rows of the whole batch when it is split (see ``aggregate``).

    Metrics: ``pg_clipfrac = mean_m[l2 > l1]``, ``pg_clipfrac_lower = 0``, ``ppo_kl = mean_m[−(logp − old_logp)]``.
    """
    _check_clip(eps_low, eps_high)
    if variant not in ("token", "sequence"):
        raise ValueError(f"gspo_loss: variant must be 'token' or 'sequence', got {variant!r}")
    adv = _token_advantages(advantages, logp)
    seq_log_ratio = _sequence_log_ratio(logp, old_logp, mask)
    if variant == "token":
        log_s = seq_log_ratio.detach()[:, None] + logp - logp.detach()
    else:
        log_s = seq_log_ratio[:, None].expand_as(logp)
    ratio = torch.exp(torch.clamp(log_s, max=10.0))
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    per_token = torch.maximum(unclipped, clipped)
    loss = aggregate(per_token, mask, "seq-mean-token-mean", global_count=global_count)
    with torch.no_grad():
        maskf = mask.float()
        metrics = {
            "pg_clipfrac": masked_mean((clipped > unclipped).float(), maskf),
            "pg_clipfrac_lower": torch.zeros((), device=logp.device),
            "ppo_kl": masked_mean(-(logp - old_logp).float(), maskf),
        }
    return PolicyLoss(loss, metrics)


def gmpo_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: float = 0.4,
    eps_high: float = 0.4,
    global_count: float | Tensor | None = None,
) -> PolicyLoss:
    """GMPO: maximise the geometric mean of token ratios, clipped token-wise in log space.

    ::

        d_t   = logp − old_logp                    (no ±20 clamp)                         [N, L]
        d^c_t = clamp(d_t, −eps_low, eps_high)      (ratio range [e^−eps_low, e^eps_high])  [N, L]
        d̃_t   = sgn(A)·min(sgn(A)·d_t, sgn(A)·d^c_t)     A>0: min(d, d^c); A<0: max(d, d^c); A=0: 0
        ratio_i = exp(Σ_t m·d̃_t / (n_i + 1e-8))                                             [N]
        Â_i     = Σ_t m·A_t / (n_i + 1e-8)          (sequence advantage)                     [N]
        loss    = mean_i(−Â_i · ratio_i)            (plain mean over ALL rows; no aggregation mode)

    The gradient reaches token t unless the clip binds on the side that favours the advantage. Empty rows
    have ratio 1 and Â 0: they add 0 but count in the mean. There is no dual clip.

    Args:
        eps_low, eps_high: log-space clip (paper 0.4 / 0.4, i.e. ratio in (0.670, 1.492)).
        global_count: the row count of the whole batch when it is split; replaces ``N``.

    Metrics: ``pg_clipfrac = mean_m[(d ≠ d^c) ∧ A > 0]``, ``pg_clipfrac_lower = mean_m[(d ≠ d^c) ∧ A < 0]``,
    ``ppo_kl = mean_m[−d]``.
    """
    _check_clip(eps_low, eps_high)
    adv = _token_advantages(advantages, logp)
    maskf = mask.to(logp.dtype)
    log_ratio = logp - old_logp
    clamped = torch.clamp(log_ratio, min=-eps_low, max=eps_high)
    sign = torch.sign(adv)
    chosen = sign * torch.minimum(sign * log_ratio, sign * clamped)
    chosen = torch.where(mask.bool(), chosen, torch.zeros_like(chosen))
    lengths = maskf.sum(-1)
    seq_ratio = torch.exp(chosen.sum(-1) / (lengths + 1e-8))
    seq_adv = torch.where(mask.bool(), adv, torch.zeros_like(adv)).sum(-1) / (lengths + 1e-8)
    rows = max(logp.shape[0], 1) if global_count is None else global_count
    loss = (-seq_adv * seq_ratio).sum() / rows
    with torch.no_grad():
        clipped = log_ratio != clamped
        m = mask.float()
        metrics = {
            "pg_clipfrac": masked_mean((clipped & (adv > 0)).float(), m),
            "pg_clipfrac_lower": masked_mean((clipped & (adv < 0)).float(), m),
            "ppo_kl": masked_mean(-log_ratio.float(), m),
        }
    return PolicyLoss(loss, metrics)

