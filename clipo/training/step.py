"""What one RL step is made of, apart from the trainer's loop: its batch (:class:`StepBatch`) and its metrics,
the algorithm knobs read from the config, deterministic seeds, the learning-rate and embedding-snapshot schedules."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from clipo.core.algorithms import AlgorithmKnobs
from clipo.core.contrastive import embedding_diagnostics
from clipo.core.ops import masked_mean
from clipo.training.config import Config
from clipo.training.run_folder import EmbeddingSnapshot, SampleRecord


@dataclass
class StepBatch:
    """The rollouts of one step and everything computed from them (N rollouts, L response tokens)."""

    rollouts: Any  # clipo.rollout.RolloutBatch
    examples: list  # [N] the PromptExample of each rollout
    scores: Tensor  # [N] verifier score (shaped for the algorithm, e.g. ±1 for DAPO)
    correct: Tensor  # [N] bool, verifier score > 0
    overlong: Tensor  # [N] DAPO overlong penalty (0 when off)
    contrastive: Tensor  # [N] CLIPO reward (0 when off)
    rewards: Tensor  # [N] total reward fed to the advantage
    advantages: Tensor  # [N]
    old_logp: Tensor  # [N, L]
    ref_logp: Tensor | None  # [N, L]
    entropy: Tensor  # [N, L]
    pooled: Tensor  # [N, H] pooled last-layer hidden states (detached)
    extras: dict = field(default_factory=dict)  # per-rollout [N] values added by rollout_metrics hooks
    train_forward: Any = None  # step 5's forward with its autograd graph, when it doubles as the training forward


def batch_metrics(batch: StepBatch) -> dict[str, Tensor]:
    """The step's reward, advantage, response-length and entropy metrics (NaN where a subset is empty)."""
    lengths = batch.rollouts.response_lengths.float()
    mask = batch.rollouts.response_mask.float()
    correct = batch.correct
    nan = torch.tensor(float("nan"))
    return {
        "reward/mean": batch.rewards.mean(),
        "reward/std": batch.rewards.std() if batch.rewards.numel() > 1 else nan,
        "reward/verifier_mean": batch.scores.mean(),
        "reward/accuracy": correct.float().mean(),
        "reward/overlong_mean": batch.overlong.mean(),
        "reward/contrastive_correct": batch.contrastive[correct].mean() if bool(correct.any()) else nan,
        "reward/contrastive_incorrect": batch.contrastive[~correct].mean() if bool((~correct).any()) else nan,
        "advantage/abs_mean": batch.advantages.abs().mean(),
        "response/length_mean": lengths.mean(),
        "response/length_max": lengths.max(),
        "response/truncated_rate": batch.rollouts.truncated.float().mean(),
        "actor/entropy": masked_mean(batch.entropy.cpu(), mask),
    }


def step_diagnostics(pooled: Tensor, correct: Tensor, group_ids: Tensor, lengths: Tensor,
                     head_out: Tensor | None = None, head_result: Any = None) -> dict[str, float]:
    """The official run's embedding diagnostics of one step (``clipo.diagnostics``; names and formulas in
    :mod:`clipo.core.contrastive.diagnostics`), with their cost as ``time/diagnostics_s``.

    pooled [N, H], correct [N], group_ids [N], lengths [N]: the (gathered) batch the head step saw.
    head_out [N, D]: the head's outputs *before* its update (the official run logs the outputs of the forward
    its loss came from), or None with CLIPO off; head_result: that step's
    :class:`clipo.training.head.HeadStepResult` (per-rollout loss and reward), or None.
    """
    start = time.perf_counter()
    out = embedding_diagnostics(
        pooled, correct.bool(), group_ids, lengths.to(pooled.device), head_out=head_out,
        losses=head_result.per_rollout_loss if head_result is not None else None,
        rewards=head_result.rewards if head_result is not None else None)
    out["time/diagnostics_s"] = time.perf_counter() - start
    return out


def algorithm_knobs(config: Config) -> AlgorithmKnobs:
    """The resolved ``algorithm`` section's scalars, as the registry's advantage and policy loss take them."""
    a = config.algorithm
    return AlgorithmKnobs(eps_low=a.eps_low, eps_high=a.eps_high, dual_clip=a.dual_clip, loss_agg=a.loss_agg,
                          norm_len=a.norm_len, gspo_variant=a.gspo_variant, scale_by_std=a.scale_by_std,
                          adv_eps=a.adv_eps)


def derive_seed(*parts: int) -> int:
    """A deterministic 63-bit seed from integers (run seed, step, round, ...), independent of RNG state."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = (value ^ (int(part) + 0x9E3779B97F4A7C15 + (value << 6) + (value >> 2))) & 0xFFFFFFFFFFFFFFFF
    return value & 0x7FFFFFFFFFFFFFFF


def lr_factor(step: int, *, warmup: int, total: int, schedule: str) -> float:
    """Multiplier of the base LR after ``step`` scheduler steps: linear warm-up, then constant/linear/cosine decay."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def snapshot_schedule(max_steps: int, count: int) -> set[int]:
    """``count`` evenly spaced steps in 1..max_steps, first and last included."""
    if count <= 0 or max_steps <= 0:
        return set()
    if count == 1:
        return {max_steps}
    return {1 + round(i * (max_steps - 1) / (count - 1)) for i in range(count)}


def embedding_snapshot(batch: StepBatch, step: int, head: torch.nn.Module | None,
                       device: torch.device | str) -> EmbeddingSnapshot:
    """The record ``embeddings/step_XXXXXX.pt`` holds for the report's 2-D projections: pooled states [N, H]
    (fp16), head outputs ``z`` [N, D] when CLIPO is on, correctness, group ids, contrastive rewards and any
    per-rollout extras (the shape is :class:`clipo.training.run_folder.EmbeddingSnapshot`)."""
    snapshot: EmbeddingSnapshot = {
        "step": step, "pooled": batch.pooled.half().cpu(), "correct": batch.correct.cpu(),
        "group_ids": batch.rollouts.group_ids.cpu(), "contrastive_reward": batch.contrastive.cpu(),
        "extras": {k: torch.as_tensor(v).cpu() for k, v in batch.extras.items()}}
    if head is not None:
        with torch.no_grad():
            snapshot["z"] = head(batch.pooled.to(device)).cpu()
    return snapshot


def sample_records(batch: StepBatch, count: int) -> list[SampleRecord]:
    """The first ``count`` rollouts of ``batch`` as ``samples.jsonl`` records (the logger adds ``step``)."""
    out: list[SampleRecord] = []
    for i in range(min(count, batch.rollouts.num_rollouts)):
        example = batch.examples[i]
        out.append({"group": int(batch.rollouts.group_ids[i]), "prompt": example.user_text(),
                    "ground_truth": example.ground_truth, "response": batch.rollouts.response_texts[i],
                    "score": float(batch.scores[i]), "contrastive_reward": float(batch.contrastive[i]),
                    "advantage": float(batch.advantages[i])})
    return out
