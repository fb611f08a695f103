"""Helpers for tests and benchmarks: a few-second RL run of a tiny random model, no downloads.

The tiny tokenizer and model themselves live in :mod:`clipo.models.tiny` (the CPU demo builds on them);
they are re-exported here for convenience. Nothing inside the ``clipo`` package imports this module.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from clipo.apps.specs import build_trainer
from clipo.models.tiny import (
    QWEN_STYLE_CHAT_TEMPLATE,
    TINY_SPECIAL_TOKENS,
    TINY_WORD_TOKENS,
    add_logit_bias,
    build_tiny_model,
    build_tiny_tokenizer,
)
from clipo.rewards import register_reward
from clipo.training.config import load_config
from clipo.training.trainer import RLTrainer

__all__ = [
    "QWEN_STYLE_CHAT_TEMPLATE", "TINY_SPECIAL_TOKENS", "TINY_TRAINER_OVERRIDES", "TINY_WORD_TOKENS", "add_logit_bias",
    "build_tiny_model", "build_tiny_tokenizer", "build_tiny_trainer", "even_length_reward", "TimedCalls",
]


class TimedCalls:
    """Calls ``fn`` and keeps the count and the slowest call (wall and CPU time), for fuzz tests that report how
    many inputs a property tried and its worst latency (printed with ``pytest -s``)."""

    def __init__(self, name: str, fn: Callable[..., Any], unit: str = "calls"):
        self.name, self.fn, self.unit = name, fn, unit
        self.count, self.worst, self.worst_cpu = 0, 0.0, 0.0

    def call(self, *args: Any, **kwargs: Any) -> Any:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.count += 1
            self.worst = max(self.worst, time.perf_counter() - t0)
            self.worst_cpu = max(self.worst_cpu, time.process_time() - c0)  # apart from waits for a busy CPU

    def report(self) -> None:
        print(f"\nfuzz {self.name}: {self.count} {self.unit}, worst {self.worst * 1000:.1f} ms "
              f"(CPU {self.worst_cpu * 1000:.1f} ms)")


def even_length_reward(response: str, ground_truth: str, **row: object) -> float:
    """A reward a random tiny model earns about half the time (even response length), so groups mix right and
    wrong rollouts and every algorithm and CLIPO have something to learn from. Registered as ``tiny_even_length``."""
    return 1.0 if len(response) % 2 == 0 else 0.0


#: Settings for a few-second RL run of a tiny model; later overrides win. fp32, not the default ``auto``
#: (bf16-mixed on a CPU with bf16 instructions): tests compare the trainer with float32 references.
TINY_TRAINER_OVERRIDES = (
    "trainer.precision=fp32", "reward.verifier=tiny_even_length", "rollout.n=4", "rollout.max_new_tokens=8", "rollout.micro_batch_size=16",
    "trainer.prompts_per_step=4", "trainer.max_steps=2", "trainer.lr=1e-3", "trainer.micro_batch_size=8",
    "trainer.save_every=0", "trainer.progress=false", "data.max_eval_examples=4", "clipo.head_size=16",
    "clipo.temperature=0.5",
)


def build_tiny_trainer(overrides: Iterable[str] = (), *, eos_bias: float = 3.0, model_seed: int = 0,
                       **trainer_kwargs) -> RLTrainer:
    """An :class:`clipo.training.trainer.RLTrainer` on a fresh tiny Qwen2-style model, configured by
    :data:`TINY_TRAINER_OVERRIDES` plus ``overrides`` (which must set ``data.train`` and ``trainer.output_dir``;
    the data files are loaded as ``clipo train`` loads them). ``eos_bias`` makes the random model stop now
    and then."""
    register_reward("tiny_even_length", even_length_reward, overwrite=True)
    config = load_config(overrides=[*TINY_TRAINER_OVERRIDES, *overrides])
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer, seed=model_seed)
    add_logit_bias(model, {tokenizer.eos_token_id: eos_bias})
    return build_trainer(config, model=model, tokenizer=tokenizer, **trainer_kwargs)
