"""Sampling settings and the rollout container that every rollout engine returns.

Letters: B prompts, n samples per prompt, N = B·n rollouts, P padded prompt length, L padded response length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import torch

__all__ = ["FINISH_REASONS", "RolloutBatch", "SamplingParams"]

#: Why a rollout ended: it generated EOS, it produced a stop string, or it hit `max_new_tokens`.
FINISH_REASONS = ("eos", "stop", "length")


@dataclass(frozen=True)
class SamplingParams:
    """How to sample completions. Every field is applied explicitly: a checkpoint's `generation_config.json`
    (e.g. Qwen's repetition_penalty 1.05, top_k 20) never leaks into RL sampling, whose log-probs must be
    those of the plain (temperature-scaled) policy."""

    n: int = 1
    """Completions per prompt (the group size G)."""
    max_new_tokens: int = 256
    """Hard cap on generated tokens; a rollout that reaches it without EOS/stop is `truncated`."""
    temperature: float = 1.0
    """Softmax temperature; 0 means greedy decoding (argmax)."""
    top_p: float = 1.0
    """Nucleus sampling mass; 1.0 disables it."""
    top_k: int = 0
    """Keep the k most likely tokens; 0 disables it."""
    min_p: float = 0.0
    """Drop tokens whose probability is below min_p × the top probability; 0.0 disables it."""
    stop: tuple[str, ...] = ()
    """Strings that end a completion (matched on the decoded response text, special tokens skipped)."""
    include_stop_str_in_output: bool = True
    """Keep the stop string in `response_texts` (the tokens that produced it are always in the mask)."""
    seed: int | None = None
    """Seed for sampling. None: draw from the global torch RNG. Given: the global RNG is seeded inside a
    fork (`torch.random.fork_rng`), so the caller's RNG stream is not disturbed."""

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):  # a lone string would otherwise be split into characters
            object.__setattr__(self, "stop", (self.stop,))
        object.__setattr__(self, "stop", tuple(self.stop))
        checks = [
            (self.n >= 1, f"n={self.n}: need at least one completion per prompt"),
            (self.max_new_tokens >= 1, f"max_new_tokens={self.max_new_tokens}: must be >= 1"),
            (self.temperature >= 0.0, f"temperature={self.temperature}: must be >= 0 (0 = greedy)"),
            (0.0 < self.top_p <= 1.0, f"top_p={self.top_p}: must be in (0, 1]"),
            (self.top_k >= 0, f"top_k={self.top_k}: must be >= 0 (0 = off)"),
            (0.0 <= self.min_p < 1.0, f"min_p={self.min_p}: must be in [0, 1)"),
            (all(self.stop), "stop: empty stop strings are not allowed"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"SamplingParams.{message}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class RolloutBatch:
    """N = B·n rollouts, grouped contiguously: prompt b owns rows b·n … b·n+n−1.

    Token layout for a teacher-forced forward: `cat([prompt_ids, response_ids], 1)` is every rollout's
    full sequence, prompts left-padded and responses right-padded, so the response always starts at
    column P.
    """

    prompt_ids: torch.Tensor  # [N, P] int64, left-padded with pad_token_id
    prompt_mask: torch.Tensor  # [N, P] int64, 1 on real prompt tokens
    response_ids: torch.Tensor  # [N, L] int64, right-padded with pad_token_id
    response_mask: torch.Tensor  # [N, L] int64, 1 on generated tokens up to and including EOS / the stop token
    truncated: torch.Tensor  # [N] bool, no EOS or stop string within max_new_tokens
    group_ids: torch.Tensor  # [N] int64, rollouts of the same prompt share one id
    prompt_index: torch.Tensor  # [N] int64, index of the prompt in the list given to `generate`
    response_texts: list[str]  # [N] decoded response (special tokens skipped), cut at the stop string
    finish_reasons: list[str]  # [N] "eos" | "stop" | "length"
    pad_token_id: int = 0  # the id used for padding above (needed to pad again when concatenating)
    extras: dict = field(default_factory=dict)  # engine-specific per-batch data (timings, ...)

    def __post_init__(self) -> None:
        n = self.prompt_ids.shape[0]
        for name in ("prompt_mask", "response_ids", "response_mask", "truncated", "group_ids", "prompt_index"):
            if getattr(self, name).shape[0] != n:
                raise ValueError(f"RolloutBatch.{name} has {getattr(self, name).shape[0]} rows, expected {n}")
        if len(self.response_texts) != n or len(self.finish_reasons) != n:
            raise ValueError(f"RolloutBatch: response_texts/finish_reasons must have {n} entries")

    @property
    def num_rollouts(self) -> int:
        return self.prompt_ids.shape[0]

    @property
    def response_lengths(self) -> torch.Tensor:  # [N] int64, tokens in each response (incl. EOS)
        return self.response_mask.sum(-1)

    def to(self, device: torch.device | str) -> RolloutBatch:
        """The same batch with every tensor on `device`."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[name] = value.to(device)
        return RolloutBatch(**moved)

    def select(self, rows: Sequence[int] | torch.Tensor) -> RolloutBatch:
        """The rollouts at `rows` (e.g. the groups kept by DAPO dynamic sampling), in that order."""
        index = torch.as_tensor(rows, dtype=torch.long)
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                out[f.name] = value[index.to(value.device)]
            elif isinstance(value, list):
                out[f.name] = [value[i] for i in index.tolist()]
            else:
                out[f.name] = value
        return RolloutBatch(**out)

    @staticmethod
    def concat(batches: Sequence[RolloutBatch]) -> RolloutBatch:
        """Stack batches (re-padding prompts on the left and responses on the right).

        Group ids are offset so that groups from different batches never share an id; `prompt_index` is
        kept as is (it indexes each batch's own prompt list).
        """
        if not batches:
            raise ValueError("RolloutBatch.concat: nothing to concatenate")
        pad = batches[0].pad_token_id
        width_p = max(b.prompt_ids.shape[1] for b in batches)
        width_l = max(b.response_ids.shape[1] for b in batches)
        group_ids, offset = [], 0
        for b in batches:
            group_ids.append(b.group_ids + offset)
            offset += int(b.group_ids.max()) + 1 if b.num_rollouts else 0
        return RolloutBatch(
            prompt_ids=torch.cat([_pad_to(b.prompt_ids, width_p, pad, left=True) for b in batches]),
            prompt_mask=torch.cat([_pad_to(b.prompt_mask, width_p, 0, left=True) for b in batches]),
            response_ids=torch.cat([_pad_to(b.response_ids, width_l, pad, left=False) for b in batches]),
            response_mask=torch.cat([_pad_to(b.response_mask, width_l, 0, left=False) for b in batches]),
            truncated=torch.cat([b.truncated for b in batches]),
            group_ids=torch.cat(group_ids),
            prompt_index=torch.cat([b.prompt_index for b in batches]),
            response_texts=[t for b in batches for t in b.response_texts],
            finish_reasons=[r for b in batches for r in b.finish_reasons],
            pad_token_id=pad,
        )


def _pad_to(x: torch.Tensor, width: int, value: int, *, left: bool) -> torch.Tensor:
    """Pad the last dim of `x` [N, W] to `width` columns with `value`, on the left or the right."""
    missing = width - x.shape[1]
    if missing == 0:
        return x
    filler = x.new_full((x.shape[0], missing), value)
    return torch.cat([filler, x] if left else [x, filler], dim=1)
