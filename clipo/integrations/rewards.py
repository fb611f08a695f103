"""clipo's verifiers as TRL reward functions (no TRL import: the signature is all TRL needs).

TRL calls each reward function as ``f(prompts=..., completions=..., completion_ids=..., **columns)`` where
``columns`` are the dataset's other columns, one value per completion, plus trainer-supplied keywords
(``trainer_state``, ``log_metric``, ...). It expects one float (or None) per completion.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from clipo.rewards import DEFAULT_TIMEOUT_S, score_answer

__all__ = ["make_math_reward", "math_reward", "message_text"]

#: Dataset columns read for the ground truth, in this order: a plain column, or verl's ``reward_model`` dict.
GROUND_TRUTH_COLUMNS = ("ground_truth", "answer", "solution")


def message_text(item: Any) -> str:
    """The text of a prompt or completion as TRL passes it: a string, or chat messages (the last message's
    ``content``; a content list of ``{"type": "text", "text": ...}`` parts is joined)."""
    if isinstance(item, str):
        return item
    if isinstance(item, Sequence) and item and isinstance(item[-1], dict):
        content = item[-1].get("content", "")
        if isinstance(content, list):
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return str(content)
    return "" if item is None else str(item)


def _ground_truths(n: int, columns: dict[str, Any]) -> list[str]:
    """One ground-truth string per completion from the dataset columns TRL forwarded."""
    for name in GROUND_TRUTH_COLUMNS:
        if columns.get(name) is not None:
            return [str(value) for value in columns[name]]
    if columns.get("reward_model") is not None:
        values = columns["reward_model"]
        if all(isinstance(v, dict) and "ground_truth" in v for v in values):
            return [str(v["ground_truth"]) for v in values]
        raise ValueError("math_reward: the 'reward_model' column must hold dicts with a 'ground_truth' key "
                         "(verl's format); or add a 'ground_truth' column")
    raise ValueError(f"math_reward: the dataset has no ground-truth column; add one named one of "
                     f"{GROUND_TRUTH_COLUMNS} or a verl-style 'reward_model' column with 'ground_truth' (got "
                     f"columns {sorted(k for k in columns if not k.startswith(('trainer_', 'log_')))})")


def make_math_reward(*, mode: str = "robust", format_policy: str = "strict",
                     timeout_s: float | None = DEFAULT_TIMEOUT_S) -> Callable[..., list[float]]:
    """A TRL reward function scoring each completion with :func:`clipo.rewards.score_answer` (1.0 / 0.0).

    The ground truth comes from a ``ground_truth`` / ``answer`` / ``solution`` column or verl's
    ``reward_model["ground_truth"]`` (the CLIPO parquet files); ``data_source`` (when present) picks the
    answer type, and the prompt text is passed along (multiple choice reads option letters from it). Each
    verification runs under ``timeout_s`` (a timeout scores 0; enforced on the main thread, where TRL calls
    synchronous reward functions). ``mode="official"`` is the paper's scorer, bugs included.
    """

    def math_reward(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        truths = _ground_truths(len(completions), columns)
        sources = columns.get("data_source") or [None] * len(completions)
        return [
            score_answer(message_text(completion), truth, data_source=source, mode=mode,
                         format_policy=format_policy, prompt=message_text(prompt), timeout_s=timeout_s)
            for prompt, completion, truth, source in zip(prompts, completions, truths, sources, strict=True)
        ]

    return math_reward


#: ``make_math_reward()`` with the defaults: robust mode, strict format, 5 s per verification.
math_reward = make_math_reward()
