"""The interface between the trainer and whatever samples completions (HF generate today, vLLM later)."""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch

from clipo.rollout.types import RolloutBatch, SamplingParams

__all__ = ["RolloutEngine"]


class RolloutEngine(abc.ABC):
    """Samples `params.n` completions for each already chat-rendered prompt.

    Contract of `generate` (what the trainer relies on):
    * rows are grouped contiguously: prompt b gives rows b·n … b·n+n−1, `group_ids[row] = b`;
    * `prompt_ids` are the prompts tokenized without adding special tokens (the chat template already put
      in whatever the model needs), left-padded; `response_ids` are right-padded;
    * `response_mask` covers exactly the tokens the policy generated, up to and including EOS or the token
      that completed a stop string, so a teacher-forced forward over them reproduces the sampling
      distribution.
    """

    @abc.abstractmethod
    def generate(self, prompts: Sequence[str], params: SamplingParams) -> RolloutBatch:
        """Sample completions; see the class docstring for the layout of the result."""

    def update_weights(self, model: torch.nn.Module) -> None:
        """Make the engine sample from `model`'s current weights (called after every optimizer step).

        Engines that share the policy module with the trainer have nothing to copy; engines with their own
        copy of the weights (vLLM) must override this and load the new weights.
        """
