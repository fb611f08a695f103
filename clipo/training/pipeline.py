"""The glue the trainer and `clipo eval` share: prompt rendering, sampling settings and scoring from a config."""
from __future__ import annotations

from typing import Any, Sequence

from clipo.data import render_prompt
from clipo.rewards import score_batch
from clipo.rollout import SamplingParams
from clipo.training.config import Config


def render_fn(config: Config, tokenizer: Any):
    """``example -> prompt text`` (chat template or raw text, optional system prompt)."""
    m = config.model

    def render(example: Any) -> str:
        return render_prompt(example, tokenizer, use_chat_template=m.use_chat_template, system_prompt=m.system_prompt)

    return render


def sampling_params(config: Config, *, n: int, temperature: float, seed: int | None) -> SamplingParams:
    """:class:`clipo.rollout.SamplingParams` from ``config.rollout`` with the given group size and temperature."""
    r = config.rollout
    return SamplingParams(n=n, max_new_tokens=r.max_new_tokens, temperature=temperature, top_p=r.top_p,
                          top_k=r.top_k, stop=tuple(r.stop), seed=seed)


def score_responses(config: Config, responses: Sequence[str], examples: Sequence[Any]) -> tuple[list[float], dict[str, float]]:
    """Verifier scores (None counts as 0) for ``responses`` to ``examples``, and the verifier's counters."""
    r = config.reward
    result = score_batch(
        list(responses), [e.ground_truth for e in examples], data_sources=[e.data_source or None for e in examples],
        prompts=[e.user_text() for e in examples], rows=[e.to_row() for e in examples], mode=r.mode,
        format_policy=r.format_policy, reward=None if r.verifier == "auto" else r.verifier,
        num_workers=r.num_workers, timeout_s=r.timeout_s)
    return [float(s) if s is not None else 0.0 for s in result.scores], result.stats.as_dict()
