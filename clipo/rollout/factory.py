"""The one place a rollout engine is built: ``make_engine`` reads ``config.rollout.engine``.

Engines are registered by name (one registry, like verifiers and algorithms). A new backend (vLLM, SGLang,
a remote server) subclasses :class:`clipo.rollout.RolloutEngine` and registers a builder
``(rollout_config, model, tokenizer) -> RolloutEngine``; the trainer, ``clipo eval`` and the demo then use it
through ``rollout.engine=<name>`` without any other change.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from clipo.rollout.base import RolloutEngine
from clipo.rollout.hf import HFGenerateEngine

__all__ = ["ENGINES", "make_engine", "register_engine"]

EngineBuilder = Callable[[Any, Any, Any], RolloutEngine]


def _build_hf(rollout: Any, model: Any, tokenizer: Any) -> RolloutEngine:
    return HFGenerateEngine(model, tokenizer, micro_batch_size=rollout.micro_batch_size)


#: name -> builder ``(rollout_config, model, tokenizer) -> RolloutEngine``.
ENGINES: dict[str, EngineBuilder] = {"hf": _build_hf}


def register_engine(name: str, builder: EngineBuilder, *, overwrite: bool = False) -> None:
    """Make ``rollout.engine=name`` build engines with ``builder``."""
    if name in ENGINES and not overwrite:
        raise ValueError(f"rollout engine {name!r} is already registered; pass overwrite=True to replace it")
    ENGINES[name] = builder


def make_engine(config: Any, model: Any, tokenizer: Any, *, micro_batch_size: int | None = None) -> RolloutEngine:
    """The engine named by ``config.rollout.engine`` sampling from ``model``.

    ``config`` is a :class:`clipo.training.config.Config` (only its ``rollout`` section is read);
    ``micro_batch_size`` overrides ``rollout.micro_batch_size`` (the demo measures with larger batches).
    """
    rollout = config.rollout
    if micro_batch_size is not None:
        rollout = replace(rollout, micro_batch_size=micro_batch_size)
    builder = ENGINES.get(rollout.engine)
    if builder is None:
        raise ValueError(f"rollout.engine={rollout.engine!r}: choose one of {', '.join(sorted(ENGINES))}")
    return builder(rollout, model, tokenizer)
