"""The algorithm registry: each base algorithm is ONE entry — its policy loss, its denominator, its advantage
and its paper's defaults.

::

    Algorithm(name, policy_loss, loss_count_kind, advantage, preset, description)

    entry = get_algorithm("dapo")
    knobs = AlgorithmKnobs(eps_low=0.2, eps_high=0.28, dual_clip=10.0, loss_agg="token-mean", ...)
    A     = entry.advantage(rewards [N], group_ids [N], knobs)                       -> [N]
    loss  = entry.policy_loss(logp, old_logp, A, mask, knobs, global_count)       -> PolicyLoss
    kind  = entry.count_kind(knobs.loss_agg)   # what global_count counts (clipo.core.loss.loss_denominator)

The preset is the dict of defaults a run config fills into the knobs it leaves unset (``clipo.training.config``
reads it; ``incorrect_score`` is the verifier's score of a wrong answer). Adding an algorithm is one
:func:`register_algorithm` call plus its tests. Formulas: ``docs/algorithms.md``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from torch import Tensor

from clipo.core.advantages import group_advantages, rloo_advantages
from clipo.core.loss import AGG_COUNT_KIND, COUNT_KINDS, BoundPolicyLoss
from clipo.core.policy_losses import PolicyLoss, gmpo_loss, gspo_loss, ppo_clip_loss


@dataclass(frozen=True)
class AlgorithmKnobs:
    """The scalar knobs of the advantage and the policy loss (a run config's resolved ``algorithm`` section)."""

    eps_low: float = 0.2  # clip range [1 − eps_low, 1 + eps_high] (GSPO: sequence ratio, GMPO: log space)
    eps_high: float = 0.2
    dual_clip: float = 0.0  # dual-clip constant c > 1 for negative advantages; 0 disables it
    loss_agg: str = "token-mean"  # clipo.core.ops.AGGREGATION_MODES
    norm_len: float | None = None  # the constant length of seq-mean-token-sum-constlen / -norm
    gspo_variant: str = "token"  # "token" or "sequence"
    scale_by_std: bool = True  # group_advantages: GRPO (True) or Dr. GRPO (False)
    adv_eps: float = 1e-6  # group_advantages: added to the group std


#: ``(logp [N, L], old_logp [N, L], advantages [N] or [N, L], mask [N, L], knobs, global_count) -> PolicyLoss``
PolicyLossFn = Callable[[Tensor, Tensor, Tensor, Tensor, AlgorithmKnobs, "Tensor | float | None"], PolicyLoss]
#: ``(rewards [N], group_ids [N], knobs) -> advantages [N]``
AdvantageFn = Callable[[Tensor, Tensor, AlgorithmKnobs], Tensor]


@dataclass(frozen=True)
class Algorithm:
    """One base algorithm.

    Attributes:
        name: the ``algorithm.name`` that selects it.
        policy_loss: the loss with tensors and knobs, see :data:`PolicyLossFn`.
        loss_count_kind: what the policy loss divides by when a mini-batch is split (``tokens``, ``sequences``,
            ``rows``; see :func:`clipo.core.loss.loss_denominator`), or None when it follows ``loss_agg``.
        advantage: the outcome advantage, see :data:`AdvantageFn`.
        preset: the paper's defaults for the knobs a config leaves unset (read-only).
        description: one line for listings.
    """

    name: str
    policy_loss: PolicyLossFn
    loss_count_kind: str | None
    advantage: AdvantageFn
    preset: Mapping[str, Any]
    description: str = ""

    def __post_init__(self) -> None:
        if self.loss_count_kind is not None and self.loss_count_kind not in COUNT_KINDS:
            raise ValueError(f"algorithm {self.name!r}: loss_count_kind must be None or one of "
                             f"{', '.join(COUNT_KINDS)}, got {self.loss_count_kind!r}")
        object.__setattr__(self, "preset", MappingProxyType(dict(self.preset)))

    def count_kind(self, loss_agg: str) -> str:
        """The kind of the policy loss's global denominator under aggregation mode ``loss_agg``."""
        return self.loss_count_kind or AGG_COUNT_KIND[loss_agg]

    def bind(self, knobs: AlgorithmKnobs) -> BoundPolicyLoss:
        """The policy loss with its knobs bound: ``(logp, old_logp, advantages, mask, global_count) -> PolicyLoss``."""
        def loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor,
                 global_count: Tensor | float | None) -> PolicyLoss:
            return self.policy_loss(logp, old_logp, advantages, mask, knobs, global_count)
        return loss


# ------------------------------------------------------------------------------------------ the losses with knobs


def ppo_clip_policy_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, knobs: AlgorithmKnobs,
                         global_count: Tensor | float | None) -> PolicyLoss:
    """:func:`clipo.core.policy_losses.ppo_clip_loss` with clip-higher, dual clip (0: off) and ``loss_agg``."""
    return ppo_clip_loss(logp, old_logp, advantages, mask, eps_low=knobs.eps_low, eps_high=knobs.eps_high,
                         dual_clip=knobs.dual_clip or None, agg=knobs.loss_agg, norm_len=knobs.norm_len,
                         global_count=global_count)


def gspo_policy_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, knobs: AlgorithmKnobs,
                     global_count: Tensor | float | None) -> PolicyLoss:
    """:func:`clipo.core.policy_losses.gspo_loss` (its own seq-mean-token-mean; no dual clip)."""
    return gspo_loss(logp, old_logp, advantages, mask, eps_low=knobs.eps_low, eps_high=knobs.eps_high,
                     variant=knobs.gspo_variant, global_count=global_count)


def gmpo_policy_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, knobs: AlgorithmKnobs,
                     global_count: Tensor | float | None) -> PolicyLoss:
    """:func:`clipo.core.policy_losses.gmpo_loss` (a mean over rows; no dual clip)."""
    return gmpo_loss(logp, old_logp, advantages, mask, eps_low=knobs.eps_low, eps_high=knobs.eps_high,
                     global_count=global_count)


def group_relative_advantage(rewards: Tensor, group_ids: Tensor, knobs: AlgorithmKnobs) -> Tensor:
    """:func:`clipo.core.advantages.group_advantages`: ``(R − mean_g) / (std_g + eps)``, or ``R − mean_g``."""
    return group_advantages(rewards, group_ids, scale_by_std=knobs.scale_by_std, eps=knobs.adv_eps)


def leave_one_out_advantage(rewards: Tensor, group_ids: Tensor, knobs: AlgorithmKnobs) -> Tensor:
    """:func:`clipo.core.advantages.rloo_advantages` (``scale_by_std`` and ``adv_eps`` do not apply)."""
    return rloo_advantages(rewards, group_ids)


# ------------------------------------------------------------------------------------------ the registry

ALGORITHMS: dict[str, Algorithm] = {}


def register_algorithm(algorithm: Algorithm, *, overwrite: bool = False) -> Algorithm:
    """Add ``algorithm`` to :data:`ALGORITHMS` (``overwrite=True`` to replace an entry of the same name)."""
    if algorithm.name in ALGORITHMS and not overwrite:
        raise ValueError(f"algorithm {algorithm.name!r} is already registered; pass overwrite=True to replace it")
    ALGORITHMS[algorithm.name] = algorithm
    return algorithm


def get_algorithm(name: str) -> Algorithm:
    """The registered algorithm ``name``; a ``KeyError`` that lists the valid names otherwise."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise KeyError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}") from None


# Shared by every preset: no dynamic sampling or overlong shaping, 0 for a wrong answer, verl's std epsilon.
_PLAIN = {"adv_eps": 1e-6, "dynamic_sampling": False, "overlong_penalty": False, "incorrect_score": 0.0}

register_algorithm(Algorithm(
    "grpo", ppo_clip_policy_loss, None, group_relative_advantage,
    # verl's GRPO as the CLIPO scripts run it: token-mean, symmetric 0.2 clip, dual clip 3, k3 KL loss 0.001.
    dict(_PLAIN, scale_by_std=True, loss_agg="token-mean", eps_low=0.2, eps_high=0.2, dual_clip=3.0, kl_coef=0.001),
    "GRPO: group-normalised advantages, PPO clip with dual clip, KL loss to the reference."))
register_algorithm(Algorithm(
    "dr_grpo", ppo_clip_policy_loss, None, group_relative_advantage,
    # Dr. GRPO: no std, per-sequence token sums over a constant length, no KL.
    dict(_PLAIN, scale_by_std=False, loss_agg="seq-mean-token-sum-constlen", eps_low=0.2, eps_high=0.2,
         dual_clip=0.0, kl_coef=0.0),
    "Dr. GRPO: mean-centred advantages, token sums over a constant length, no KL."))
register_algorithm(Algorithm(
    "dapo", ppo_clip_policy_loss, None, group_relative_advantage,
    # DAPO: clip-higher, token-mean, no KL, ±1 rule reward, overlong shaping, dynamic sampling.
    dict(_PLAIN, scale_by_std=True, loss_agg="token-mean", eps_low=0.2, eps_high=0.28, dual_clip=10.0, kl_coef=0.0,
         dynamic_sampling=True, overlong_penalty=True, incorrect_score=-1.0),
    "DAPO: clip-higher, token-mean, dynamic sampling, overlong shaping, ±1 reward."))
register_algorithm(Algorithm(
    "gspo", gspo_policy_loss, "sequences", group_relative_advantage,
    # GSPO: sequence-level ratio clipping with tiny ranges; the loss fixes its own aggregation.
    dict(_PLAIN, scale_by_std=True, loss_agg="seq-mean-token-mean", eps_low=3e-4, eps_high=4e-4, dual_clip=0.0,
         kl_coef=0.0),
    "GSPO: clipping of the length-normalised sequence ratio."))
register_algorithm(Algorithm(
    "gmpo", gmpo_policy_loss, "rows", group_relative_advantage,
    # GMPO: geometric mean of token ratios, log-space clip 0.4, no KL.
    dict(_PLAIN, scale_by_std=True, loss_agg="token-mean", eps_low=0.4, eps_high=0.4, dual_clip=0.0, kl_coef=0.0),
    "GMPO: geometric mean of token ratios, clipped in log space."))
register_algorithm(Algorithm(
    "rloo", ppo_clip_policy_loss, None, leave_one_out_advantage,
    # RLOO: leave-one-out baseline (no std), PPO clip 0.2/0.2 without dual clip, token-mean, no KL.
    dict(_PLAIN, scale_by_std=False, loss_agg="token-mean", eps_low=0.2, eps_high=0.2, dual_clip=0.0, kl_coef=0.0),
    "RLOO: leave-one-out advantages, PPO clip, token-mean."))
