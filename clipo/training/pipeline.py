"""The glue the trainer and `clipo eval` share: prompt rendering, sampling settings and scoring from a config."""
from __future__ import annotations

import logging
import statistics
from typing import Any, Sequence

from clipo.data import PromptDataset, render_prompt
from clipo.rewards import score_batch
from clipo.rollout import SamplingParams
from clipo.training.config import Config, ConfigError

_log = logging.getLogger("clipo.training")


def render_fn(config: Config, tokenizer: Any):
    """``example -> prompt text`` (chat template or raw text, optional system prompt)."""
    m = config.model

    def render(example: Any) -> str:
        return render_prompt(example, tokenizer, use_chat_template=m.use_chat_template, system_prompt=m.system_prompt)

    return render


def per_process_prompts(config: Config, world_size: int) -> int:
    """Prompts per step on each process: ``trainer.prompts_per_step``, or ``global_prompts_per_step / world_size``
    when a global batch is set (verl's ``data.train_batch_size`` counts all processes, clipo's B counts one)."""
    t = config.trainer
    if not t.global_prompts_per_step:
        per_process = t.prompts_per_step
    elif t.global_prompts_per_step % world_size:
        raise ConfigError(
            f"trainer.global_prompts_per_step={t.global_prompts_per_step} does not divide over {world_size} processes; "
            f"use a multiple of {world_size}")
    else:
        per_process = t.global_prompts_per_step // world_size
    if t.mini_batches > per_process:
        raise ConfigError(
            f"trainer.mini_batches={t.mini_batches} exceeds the {per_process} prompts per step and process; mini-batches "
            "split whole prompt groups, so use at most one per prompt")
    return per_process


def prompt_lengths(config: Config, tokenizer: Any, examples: Sequence[Any], *, chunk: int = 1024) -> list[int]:
    """Each example's prompt length in tokens, as the rollout engine sees it: rendered by :func:`render_fn`
    (chat template, system prompt) and tokenized without special tokens (``clipo.rollout.hf`` does the same)."""
    render = render_fn(config, tokenizer)
    examples = list(examples)
    lengths: list[int] = []
    for start in range(0, len(examples), chunk):
        texts = [render(e) for e in examples[start:start + chunk]]
        lengths.extend(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    return lengths


def prepare_train_data(config: Config, tokenizer: Any, train_data: PromptDataset, eval_data: dict[str, Any], *,
                       world_size: int = 1, announce: bool = True) -> tuple[PromptDataset, dict[str, float]]:
    """The training prompts the run will draw from, and the data numbers logged with step 1.

    * ``data.max_prompt_tokens > 0``: training prompts longer than that (:func:`prompt_lengths`) are dropped
      before training (verl's ``filter_overlong_prompts``) and counted in ``data/filtered_long_prompts``. Eval
      sets are not filtered, so their scores stay comparable across runs and with ``clipo eval``; their
      over-long prompts (among the ``data.max_eval_examples`` evaluated) are only counted in a log line.
    * ``data/steps_per_epoch`` = ⌊prompts / (trainer.prompts_per_step × world_size)⌋: batches never mix epochs
      and an epoch's short tail is skipped (``PromptIterator.next_batch``).

    Raises:
        ConfigError: every training prompt is too long, or fewer prompts than one global batch remain.
    """
    d, t = config.data, config.trainer
    limit = d.max_prompt_tokens
    stats: dict[str, float] = {}
    total = len(train_data)
    if limit > 0:
        lengths = prompt_lengths(config, tokenizer, train_data)
        train_data, dropped = train_data.drop_long_prompts(lengths, limit)
        stats["data/filtered_long_prompts"] = float(dropped)
        if len(train_data) == 0:
            raise ConfigError(
                f"data.max_prompt_tokens={limit} drops every one of the {total} training prompts (rendered prompt "
                f"lengths: median {statistics.median(lengths):g}, longest {max(lengths)} tokens); raise "
                "data.max_prompt_tokens, or set it to 0 for no limit")
        if announce and dropped:
            _log.warning("data: %d of %d prompts longer than data.max_prompt_tokens=%d tokens were dropped",
                         dropped, total, limit)
        for name, dataset in eval_data.items() if announce else ():
            examples = list(dataset)[:d.max_eval_examples] if d.max_eval_examples else list(dataset)
            long = sum(length > limit for length in prompt_lengths(config, tokenizer, examples))
            if long:
                _log.warning("data: eval set %r has %d of %d prompts longer than data.max_prompt_tokens=%d tokens; "
                             "they are kept (eval sets are scored whole)", name, long, len(examples), limit)
    batch = t.prompts_per_step * world_size
    steps_per_epoch = len(train_data) // batch
    if steps_per_epoch == 0:
        after = " after data.max_prompt_tokens" if limit > 0 else ""
        raise ConfigError(
            f"trainer.prompts_per_step: {len(train_data)} training prompts{after} cannot fill one batch of "
            f"{batch} (trainer.prompts_per_step={t.prompts_per_step} × {world_size} processes); batches never mix "
            "epochs, so lower trainer.prompts_per_step or add prompts")
    stats["data/steps_per_epoch"] = float(steps_per_epoch)
    if announce:
        _log.info("data: %d training prompts, %d steps per epoch of %d prompts (the last %d of each epoch are skipped)",
                  len(train_data), steps_per_epoch, batch, len(train_data) - steps_per_epoch * batch)
    return train_data, stats


def sampling_params(config: Config, *, n: int, temperature: float, seed: int | None,
                    top_p: float | None = None) -> SamplingParams:
    """:class:`clipo.rollout.SamplingParams` from ``config.rollout`` with the given group size and temperature
    (and ``top_p``: ``rollout.top_p`` when None)."""
    r = config.rollout
    return SamplingParams(n=n, max_new_tokens=r.max_new_tokens, temperature=temperature,
                          top_p=r.top_p if top_p is None else top_p, top_k=r.top_k, stop=tuple(r.stop), seed=seed)


def score_responses(config: Config, responses: Sequence[str], examples: Sequence[Any]) -> tuple[list[float], dict[str, Any]]:
    """Verifier scores (None counts as 0) for ``responses`` to ``examples``, and the verifier's counters (numbers,
    plus ``verifier/example``: a string saying what first went wrong, when something did)."""
    r = config.reward
    result = score_batch(
        list(responses), [e.ground_truth for e in examples], data_sources=[e.data_source or None for e in examples],
        prompts=[e.user_text() for e in examples], rows=[e.to_row() for e in examples], mode=r.mode,
        format_policy=r.format_policy, reward=None if r.verifier == "auto" else r.verifier,
        num_workers=r.num_workers, timeout_s=r.timeout_s)
    stats: dict[str, Any] = result.stats.as_dict()
    if result.stats.example:  # what went wrong first (a string, for check_reward_errors' message)
        stats["verifier/example"] = result.stats.example
    return [float(s) if s is not None else 0.0 for s in result.scores], stats


class RewardFunctionError(RuntimeError):
    """Too many of a step's rollouts got a reward that raised, returned None, NaN/inf or a non-number."""


def check_reward_errors(config: Config, stats: dict[str, Any], example: str = "") -> None:
    """Raise :class:`RewardFunctionError` (one line naming ``reward.verifier`` and what it returned) when the
    failed rewards among ``stats``' ``verify/calls`` (``verify/errors`` + ``verify/bad_values`` +
    ``verify/unscored``) exceed ``reward.max_error_rate``."""
    calls = stats.get("verify/calls", 0.0)
    failed = sum(stats.get(f"verify/{k}", 0.0) for k in ("errors", "bad_values", "unscored"))
    limit = config.reward.max_error_rate
    if calls and min(failed / calls, 1.0) > limit:
        raise RewardFunctionError(
            f"reward.verifier={config.reward.verifier!r} failed on {failed:g} of {calls:g} rollouts this step "
            f"(more than reward.max_error_rate={limit:g}): it {example or 'raised or returned a bad value'}; "
            "a reward must return a finite number (or None when it cannot score)")
