"""The loss of one micro-batch: policy loss + KL penalty − entropy bonus, over the mini-batch's global denominators.

A mini-batch (one optimizer step) is split into micro-batches (gradient accumulation) and, with data
parallelism, over processes. For the summed gradients to be those of the whole mini-batch, every part divides
by the WHOLE mini-batch's denominator (``global_count`` of :func:`clipo.core.ops.aggregate`), counted once per
mini-batch by :func:`mini_batch_denominators` and, across processes, summed by its ``reduce``. Then::

    loss_k = policy_k + kl_coef · KL_k − entropy_coef · H_k                      (micro-batch k)
    Σ_k loss_k = loss of the whole mini-batch                                    (value and gradient)

Modes with no count (``seq-mean-token-sum-norm``, which sums over rows and divides by a length) instead
weight micro-batch ``k`` by its share of the mini-batch's rows, ``share_k = n_k / n`` (verl's micro-batch
weighting): the mini-batch loss is then the row-weighted mean of the micro-batch sums, not their sum.
Formulas: ``docs/algorithms.md``.

Shapes: ``n`` rows in the micro-batch, ``L`` padded response tokens.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from clipo.core.kl import kl_estimate
from clipo.core.ops import aggregate, masked_mean
from clipo.core.policy_losses import PolicyLoss

#: What each aggregation mode divides by (see :func:`loss_denominator`); ``none``: it has no count to share.
AGG_COUNT_KIND: dict[str, str] = {
    "token-mean": "tokens",
    "seq-mean-token-sum": "sequences",
    "seq-mean-token-mean": "sequences",
    "seq-mean-token-sum-constlen": "rows",
    "seq-mean-token-sum-norm": "none",
}
COUNT_KINDS: tuple[str, ...] = ("tokens", "sequences", "rows", "none")

#: ``(logp, old_logp, advantages, mask, global_count) -> PolicyLoss`` — an algorithm's loss with its knobs bound.
BoundPolicyLoss = Callable[[Tensor, Tensor, Tensor, Tensor, "Tensor | float | None"], PolicyLoss]


def loss_denominator(mask: Tensor, kind: str) -> Tensor | None:
    """The denominator a loss of ``kind`` divides by, counted on ``mask [n, L]`` (a float scalar tensor).

    ::

        tokens    : Σ_{i,t} m                      (token-mean)
        sequences : max(Σ_i [n_i > 0], 1)           (non-empty rows: seq-mean-token-sum/-mean, GSPO)
        rows      : max(n, 1)                       (all rows: seq-mean-token-sum-constlen, GMPO)
        none      : None                            (seq-mean-token-sum-norm shares no count)
    """
    if kind == "tokens":
        return mask.sum().float()
    if kind == "sequences":
        return (mask.sum(-1) > 0).sum().float().clamp(min=1)
    if kind == "rows":
        return torch.tensor(float(max(mask.shape[0], 1)))
    if kind == "none":
        return None
    raise ValueError(f"loss_denominator: unknown kind {kind!r}; choose one of {', '.join(COUNT_KINDS)}")


class Denominators(NamedTuple):
    """The global denominators of one mini-batch, shared by all its micro-batches (and processes)."""

    policy: Tensor | None  # the policy loss's count (its kind is the algorithm's, see Algorithm.count_kind)
    aggregate: Tensor | None  # loss_agg's count, for the KL and entropy terms
    rows: int  # this process's rows in the mini-batch: micro-batch k's share is n_k / rows


def mini_batch_denominators(mask: Tensor, *, policy_kind: str, loss_agg: str,
                            reduce: Callable[[Tensor], Tensor] | None = None) -> Denominators:
    """Count the denominators of a mini-batch ``mask [n, L]``; ``reduce`` sums a count over processes (identity
    when None). The KL and entropy terms are aggregated with ``loss_agg`` even where the policy loss fixes its
    own reduction (GSPO, GMPO)."""
    def count(kind: str) -> Tensor | None:
        value = loss_denominator(mask, kind)
        return value if value is None or reduce is None else reduce(value)

    return Denominators(count(policy_kind), count(AGG_COUNT_KIND[loss_agg]), int(mask.shape[0]))


class MicroBatchLoss(NamedTuple):
    """The loss to back-propagate and its detached diagnostics (``kl``, ``pg_loss``, and the policy loss's)."""

    loss: Tensor
    metrics: dict[str, Tensor]


def micro_batch_loss(
    policy_loss: BoundPolicyLoss,
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    denominators: Denominators,
    *,
    loss_agg: str,
    norm_len: float | None = None,
    ref_logp: Tensor | None = None,
    kl_coef: float = 0.0,
    kl_kind: str = "k3",
    entropy: Tensor | None = None,
    entropy_coef: float = 0.0,
) -> MicroBatchLoss:
    """One micro-batch's share of the mini-batch loss.

    ::

        P  = policy_loss(logp, old_logp, A, m, c_policy)                          (× share when c_policy is None)
        KL = aggregate(kl_estimate(logp, ref_logp, kl_kind), m, loss_agg, c_agg)   (× share when c_agg is None)
        H  = aggregate(entropy, m, loss_agg, c_agg)                                (× share when c_agg is None)
        loss = P + kl_coef · KL − entropy_coef · H                                 share = n / denominators.rows

    Args:
        policy_loss: the algorithm's bound loss (:meth:`clipo.core.algorithms.Algorithm.bind`).
        logp: ``[n, L]`` sampled-token log-probs under π_θ (with grad); ``old_logp`` the same under π_old.
        advantages: ``[n]`` or ``[n, L]``; ``mask``: ``[n, L]`` response mask (float).
        denominators: the mini-batch's counts (:func:`mini_batch_denominators`).
        loss_agg, norm_len: aggregation of the KL and entropy terms (and of the policy loss where it follows it).
        ref_logp: ``[n, L]`` reference log-probs; None leaves the KL term out.
        entropy: ``[n, L]`` token entropies (with grad); None leaves the entropy term out.

    Metrics: ``kl`` (masked mean of the per-token estimate, when the KL term is on), ``pg_loss`` (this micro-
    batch's share of the policy loss: the mini-batch's is their sum) and the policy loss's own metrics.
    """
    policy_count, agg_count = denominators.policy, denominators.aggregate
    share = logp.shape[0] / denominators.rows
    policy = policy_loss(logp, old_logp, advantages, mask, policy_count)
    pg_loss = policy.loss if policy_count is not None else policy.loss * share
    loss = pg_loss
    metrics: dict[str, Tensor] = {}
    if ref_logp is not None:
        kl = kl_estimate(logp, ref_logp, kl_kind)
        kl_loss = aggregate(kl, mask, loss_agg, norm_len=norm_len, global_count=agg_count)
        loss = loss + kl_coef * (kl_loss if agg_count is not None else kl_loss * share)
        metrics["kl"] = masked_mean(kl.detach(), mask)
    if entropy is not None:
        bonus = aggregate(entropy, mask, loss_agg, norm_len=norm_len, global_count=agg_count)
        loss = loss - entropy_coef * (bonus if agg_count is not None else bonus * share)
    metrics["pg_loss"] = pg_loss.detach()
    metrics.update(policy.metrics)
    return MicroBatchLoss(loss, metrics)
