"""CLIPO: the contrastive head, its losses, its rewards and its trainer (ALGORITHMS.md §10)."""
from clipo.contrastive.head import HEAD_KINDS, ContrastiveHead, HeadConfig
from clipo.contrastive.losses import (
    CONTRASTIVE_KINDS,
    CONTRASTIVE_LEVELS,
    DISTANCES,
    SEED_CONTRASTIVE,
    ContrastiveMasks,
    anchor_mask,
    contrastive_loss,
    contrastive_masks,
    embedding_separation,
    sample_positives,
    similarity_matrix,
)
from clipo.contrastive.rewards import contrastive_reward, similarity_gap_reward
from clipo.contrastive.trainer import HeadStepResult, HeadTrainer

__all__ = [
    "CONTRASTIVE_KINDS", "CONTRASTIVE_LEVELS", "DISTANCES", "HEAD_KINDS", "SEED_CONTRASTIVE",
    "ContrastiveHead", "ContrastiveMasks", "HeadConfig", "HeadStepResult", "HeadTrainer",
    "anchor_mask", "contrastive_loss", "contrastive_masks", "contrastive_reward", "embedding_separation",
    "sample_positives", "similarity_gap_reward", "similarity_matrix",
]
