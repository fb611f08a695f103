"""Rollout engines: turn chat-rendered prompts into grouped, padded, masked completions.

`RolloutEngine` is the interface the trainer talks to; `HFGenerateEngine` implements it with
`transformers`' `generate`. A vLLM engine is not provided yet; it would subclass `RolloutEngine` and
override `update_weights` to load the trainer's weights after each optimizer step.
"""

from clipo.rollout.base import RolloutEngine
from clipo.rollout.hf import HFGenerateEngine, eos_token_ids
from clipo.rollout.types import FINISH_REASONS, RolloutBatch, SamplingParams

__all__ = ["FINISH_REASONS", "HFGenerateEngine", "RolloutBatch", "RolloutEngine", "SamplingParams", "eos_token_ids"]
