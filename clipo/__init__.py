"""clipo: RLVR post-training with GRPO, Dr. GRPO, DAPO, GSPO, GMPO, RLOO and CLIPO.

The package is layered (docs/architecture.md): ``core`` (the math, torch only) ← ``rewards``, ``data``,
``models`` ← ``rollout`` ← ``training`` ← ``apps``. This facade imports the math layer and the head trainer
eagerly (torch alone); every other public name is resolved from its layer on first access, so
``import clipo`` stays light.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from clipo.core.advantages import group_advantages, informative_groups, overlong_penalty, rloo_advantages
from clipo.core.algorithms import ALGORITHMS, Algorithm, AlgorithmKnobs, get_algorithm, register_algorithm
from clipo.core.contrastive import (
    ContrastiveHead,
    contrastive_loss,
    contrastive_reward,
    embedding_separation,
    similarity_gap_reward,
)
from clipo.core.kl import kl_estimate
from clipo.core.loss import loss_denominator, micro_batch_loss, mini_batch_denominators
from clipo.core.ops import AGGREGATION_MODES, aggregate, masked_mean, masked_sum
from clipo.core.policy_losses import PolicyLoss, gmpo_loss, gspo_loss, ppo_clip_loss
from clipo.training.head import HeadStepResult, HeadTrainer

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
    "Config": "clipo.training.config",
    "ConfigError": "clipo.training.config",
    "load_config": "clipo.training.config",
    "RLTrainer": "clipo.training.trainer",
    "HFGenerateEngine": "clipo.rollout",
    "RolloutBatch": "clipo.rollout",
    "SamplingParams": "clipo.rollout",
    "policy_forward": "clipo.models",
    "load_policy": "clipo.models",
    "load_tokenizer": "clipo.models",
    "make_engine": "clipo.rollout",
    "build_trainer": "clipo.apps.specs",
    "run_evaluation": "clipo.apps.evaluate",
    "make_report": "clipo.apps.report",
    # the TRL integration; needs the optional extra (pip install 'clipo[trl]')
    "CLIPOConfig": "clipo.integrations.trl",
    "CLIPOGRPOTrainer": "clipo.integrations.trl",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'clipo' has no attribute {name!r}")
    try:
        imported = import_module(module)
    except ModuleNotFoundError as error:
        if error.name != "trl":
            raise
        raise ImportError(f"clipo.{name} needs TRL: pip install 'clipo[trl]'") from error
    value = getattr(imported, name)
    globals()[name] = value
    return value


__all__ = [*_LAZY,
    "AGGREGATION_MODES", "ALGORITHMS", "Algorithm", "AlgorithmKnobs", "ContrastiveHead", "HeadStepResult",
    "HeadTrainer", "PolicyLoss", "aggregate", "contrastive_loss", "contrastive_reward", "embedding_separation",
    "get_algorithm", "gmpo_loss", "group_advantages", "gspo_loss", "informative_groups", "kl_estimate",
    "loss_denominator", "masked_mean", "masked_sum", "micro_batch_loss", "mini_batch_denominators",
    "overlong_penalty", "ppo_clip_loss", "register_algorithm", "rloo_advantages", "similarity_gap_reward",
]
