"""The head's own small training loop: one AdamW step per RL step, rewards from the pre-update losses."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from clipo.core.contrastive.head import ContrastiveHead
from clipo.core.contrastive.losses import anchor_mask, contrastive_loss, contrastive_masks, embedding_separation
from clipo.core.contrastive.rewards import contrastive_reward, similarity_gap_reward

REWARD_KINDS = ("clipo", "similarity_gap")


@dataclass
class HeadStepResult:
    """What one :meth:`HeadTrainer.step` produced. Tensors are detached.

    Attributes:
        rewards: ``[N]`` contrastive reward per rollout, to add to the verifiable reward.
        per_rollout_loss: ``[N]`` contrastive loss of the pre-update head (0 for non-anchors).
        loss: ``[]`` the batch loss that was (or would have been) minimised.
        updated: whether the head's optimizer stepped (False when fixed or when no rollout was an anchor).
        metrics: detached scalar tensors, keys prefixed ``contrastive/``.
        z: ``[N, D]`` the pre-update head's outputs (what the loss was computed on), for diagnostics.
    """

    rewards: Tensor
    per_rollout_loss: Tensor
    loss: Tensor
    updated: bool
    metrics: dict[str, Tensor] = field(default_factory=dict)
    z: Tensor | None = None


class HeadTrainer:
    """Trains a :class:`ContrastiveHead` alongside RL and turns its loss into rewards (CLIPO §10.2-10.4).

    Per RL step (:meth:`step`): forward the head on the pooled embeddings ``h [N, H]``, compute the per-rollout
    and batch contrastive loss, take ONE AdamW step on the batch loss, and return rewards computed from the
    losses of that same forward pass, i.e. of the head *before* its update (as the official code).

    When no rollout is a valid anchor (every group all-correct or all-wrong) the step is skipped and
    ``contrastive/skipped`` is 1; the official code crashes there. With ``fixed=True`` the head is never
    updated (eval mode, no grad). ``warmup_steps`` counts the first RL steps during which the *policy* must
    stay frozen while the head learns: :attr:`in_warmup` tells the trainer. (The official
    ``trainer.critic_warmup = W`` freezes the actor on steps 1..W−1, i.e. ``warmup_steps = W − 1``.)
    """

    def __init__(
        self,
        head: ContrastiveHead,
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        kind: str = "infonce",
        level: str = "group",
        temperature: float = 0.05,
        masked_label: int = 0,
        skip_trivial: bool = True,
        distance: str = "cosine",
        reward: str = "clipo",
        lam: float = 0.2,
        constant: float = 0.0,
        floor: float = -0.5,
        gap_weight: float = 0.5,
        fixed: bool = False,
        warmup_steps: int = 0,
    ):
        if reward not in REWARD_KINDS:
            raise ValueError(f"HeadTrainer: reward must be one of {REWARD_KINDS}, got {reward!r}")
        if warmup_steps < 0:
            raise ValueError(f"HeadTrainer: warmup_steps must be >= 0, got {warmup_steps}")
        self.head = head
        self.optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
        self.loss_options: dict[str, Any] = dict(
            kind=kind, level=level, temperature=temperature, masked_label=masked_label,
            skip_trivial=skip_trivial, distance=distance,
        )
        self.reward_kind = reward
        self.reward_options = dict(lam=lam, constant=constant, floor=floor)
        self.gap_weight = gap_weight
        self.fixed = fixed
        self.warmup_steps = warmup_steps
        self.steps_done = 0

    @property
    def in_warmup(self) -> bool:
        """True while the policy should stay frozen: the steps taken so far are at most ``warmup_steps``."""
        return self.steps_done <= self.warmup_steps

    def step(
        self,
        hidden: Tensor,
        correct: Tensor,
        group_ids: Tensor,
        *,
        generator: torch.Generator | None = None,
        positive_idx: Tensor | None = None,
    ) -> HeadStepResult:
        """One head update on ``hidden [N, H]`` (pooled, detached), ``correct [N]``, ``group_ids [N]``."""
        device = next(self.head.parameters()).device
        hidden = hidden.detach().to(device)
        correct = correct.to(device).bool()
        group_ids = group_ids.to(device)
        self.steps_done += 1
        train = not self.fixed
        self.head.train(train)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(train):
            z = self.head(hidden)
            per_rollout, batch_loss = contrastive_loss(
                z, correct, group_ids, generator=generator, positive_idx=positive_idx, **self.loss_options
            )
        labels = correct.long()
        masks = contrastive_masks(labels, group_ids, self.loss_options["level"])
        anchors = anchor_mask(
            labels, masks, masked_label=self.loss_options["masked_label"], skip_trivial=self.loss_options["skip_trivial"]
        )
        updated = train and bool(anchors.any())
        grad_norm = torch.zeros((), device=device)
        if updated:
            batch_loss.backward()
            grad_norm = torch.linalg.vector_norm(
                torch.stack([p.grad.detach().norm() for p in self.head.parameters() if p.grad is not None])
            )
            self.optimizer.step()
        per_rollout = per_rollout.detach()
        if self.reward_kind == "clipo":
            rewards = contrastive_reward(per_rollout, correct, **self.reward_options)
        else:
            rewards = similarity_gap_reward(z.detach(), correct, group_ids, weight=self.gap_weight)
        metrics = self._metrics(z.detach(), correct, group_ids, per_rollout, batch_loss.detach(), anchors, rewards)
        metrics["contrastive/skipped"] = torch.tensor(0.0 if updated or self.fixed else 1.0)
        metrics["contrastive/grad_norm"] = grad_norm.detach()
        return HeadStepResult(rewards, per_rollout, batch_loss.detach(), updated, metrics, z=z.detach())

    @staticmethod
    def _metrics(z, correct, group_ids, per_rollout, batch_loss, anchors, rewards) -> dict[str, Tensor]:
        nan = torch.full((), float("nan"), device=rewards.device)
        metrics = {
            "contrastive/loss": batch_loss,
            "contrastive/num_anchors": anchors.sum().float(),
            "contrastive/anchor_loss_mean": per_rollout[anchors].mean() if bool(anchors.any()) else nan,
            "contrastive/reward_correct": rewards[correct].mean() if bool(correct.any()) else nan,
            "contrastive/reward_incorrect": rewards[~correct].mean() if bool((~correct).any()) else nan,
        }
        for name, value in embedding_separation(z, correct, group_ids).items():
            metrics[f"contrastive/{name}"] = value
        return metrics

    def state_dict(self) -> dict[str, Any]:
        """Head weights, optimizer state and the step counter; loadable with ``torch.load(weights_only=True)``."""
        return {"head": self.head.state_dict(), "optimizer": self.optimizer.state_dict(), "steps_done": self.steps_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps_done = int(state["steps_done"])


def build_head_trainer(clipo: Any, model_config: Any, device: torch.device | str) -> HeadTrainer:
    """The :class:`HeadTrainer` a run's ``clipo`` config section describes, for a policy with ``model_config``
    (a transformers config: its hidden size is the head's input). ``clipo.head_load_path`` loads a saved head."""
    text_config = model_config.get_text_config() if hasattr(model_config, "get_text_config") else model_config
    hidden = text_config.hidden_size
    if clipo.head_load_path:
        head = ContrastiveHead.from_pretrained(clipo.head_load_path)
        if head.config.hidden_size != hidden:
            raise ValueError(f"clipo.head_load_path: the head expects hidden size {head.config.hidden_size}, "
                             f"the policy has {hidden}")
    else:
        head = ContrastiveHead(hidden, clipo.head_size, clipo.head_kind)
    return HeadTrainer(
        head.to(device), lr=clipo.head_lr, weight_decay=clipo.head_weight_decay, kind=clipo.loss_kind,
        level=clipo.level, temperature=clipo.temperature, masked_label=clipo.masked_label,
        skip_trivial=clipo.skip_trivial, distance=clipo.distance, reward=clipo.reward, lam=clipo.lam,
        constant=clipo.constant, floor=clipo.floor, gap_weight=clipo.gap_weight, fixed=clipo.fixed_head,
        warmup_steps=clipo.warmup_steps)
