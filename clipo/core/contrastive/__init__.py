"""CLIPO: the contrastive head, its losses, and its rewards (docs/algorithms.md, CLIPO); the head's optimiser lives in clipo.training.head."""
from clipo.core.contrastive.diagnostics import DIAGNOSTIC_STATS, embedding_diagnostics, length_quartiles
from clipo.core.contrastive.head import HEAD_KINDS, ContrastiveHead, HeadConfig
from clipo.core.contrastive.losses import (
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
from clipo.core.contrastive.rewards import contrastive_reward, similarity_gap_reward

__all__ = [
    "CONTRASTIVE_KINDS", "CONTRASTIVE_LEVELS", "DIAGNOSTIC_STATS", "DISTANCES", "HEAD_KINDS", "SEED_CONTRASTIVE",
    "ContrastiveHead", "ContrastiveMasks", "HeadConfig",
    "anchor_mask", "contrastive_loss", "contrastive_masks", "contrastive_reward", "embedding_diagnostics",
    "embedding_separation", "length_quartiles", "sample_positives", "similarity_gap_reward", "similarity_matrix",
]
