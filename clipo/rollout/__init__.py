"""Rollout engines: turn chat-rendered prompts into grouped, padded, masked completions.

`RolloutEngine` is the interface the trainer talks to; `HFGenerateEngine` implements it with
`transformers`' `generate`; `make_engine` (the only place an engine is built) picks one by
`rollout.engine`. A vLLM engine is not provided yet; it would subclass `RolloutEngine`, override
`update_weights` to load the trainer's weights after each optimizer step, and be registered with
`register_engine`.

Layer: above `clipo.models`; below `clipo.training`.
"""

from clipo.rollout.base import RolloutEngine
from clipo.rollout.factory import ENGINES, make_engine, register_engine
from clipo.rollout.hf import HFGenerateEngine, eos_token_ids
from clipo.rollout.types import FINISH_REASONS, RolloutBatch, SamplingParams

__all__ = ["ENGINES", "FINISH_REASONS", "HFGenerateEngine", "RolloutBatch", "RolloutEngine", "SamplingParams", "eos_token_ids",
           "make_engine", "register_engine"]
