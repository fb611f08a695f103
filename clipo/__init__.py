"""clipo: RLVR post-training with GRPO, Dr. GRPO, DAPO, GSPO, GMPO and CLIPO.

The math layer (this module's eager imports) needs torch alone; verifiers, data loading, models and the
trainer load their heavier dependencies on first use.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from clipo.advantages import group_advantages, informative_groups, overlong_penalty
from clipo.contrastive import (
    ContrastiveHead,
    HeadStepResult,
    HeadTrainer,
    contrastive_loss,
    contrastive_reward,
    embedding_separation,
    similarity_gap_reward,
)
from clipo.kl import kl_estimate
from clipo.ops import AGGREGATION_MODES, aggregate, masked_mean, masked_sum
from clipo.policy_losses import PolicyLoss, gmpo_loss, gspo_loss, ppo_clip_loss

__version__ = "0.1.0"

# Public names that live in modules with heavy imports; resolved on first access (PEP 562).
_LAZY = {
    "score_answer": "clipo.rewards",
    "score_batch": "clipo.rewards",
    "register_reward": "clipo.rewards",
    "get_reward": "clipo.rewards",
    "VerifierStats": "clipo.rewards",
    "load_prompts": "clipo.data",
    "render_prompt": "clipo.data",
    "PromptExample": "clipo.data",
    "PromptDataset": "clipo.data",
    "DataError": "clipo.data",
    "Config": "clipo.config",
    "ConfigError": "clipo.config",
    "load_config": "clipo.config",
    "RLTrainer": "clipo.trainer",
    "HFGenerateEngine": "clipo.rollout",
    "RolloutBatch": "clipo.rollout",
    "SamplingParams": "clipo.rollout",
    "policy_forward": "clipo.forward",
    "load_policy": "clipo.models",
    "load_tokenizer": "clipo.models",
    "make_report": "clipo.report",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'clipo' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


__all__ = [*_LAZY,
    "AGGREGATION_MODES", "ContrastiveHead", "HeadStepResult", "HeadTrainer", "PolicyLoss",
    "aggregate", "contrastive_loss", "contrastive_reward", "embedding_separation", "gmpo_loss",
    "group_advantages", "gspo_loss", "informative_groups", "kl_estimate", "masked_mean", "masked_sum",
    "overlong_penalty", "ppo_clip_loss", "similarity_gap_reward",
]
