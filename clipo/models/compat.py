"""Shims over the transformers versions clipo supports (4.45 to 5.x), shared by the forward and the rollout code.

One place knows how this transformers names the KV-cache and dtype arguments, whether a model takes
``logits_to_keep``, and how to prefill each distinct prompt of a group once (``shared_prompt_cache``, used
by both the teacher-forced forward and generation).
"""
from __future__ import annotations

import inspect

import torch
import transformers
from packaging.version import Version
from torch.nn.parallel import DistributedDataParallel
from transformers import DynamicCache


def dtype_kwarg() -> str:
    """Name of the dtype argument of `from_pretrained`/`from_config`: "dtype" since transformers 4.56
    (where "torch_dtype" became a deprecated alias), "torch_dtype" before."""
    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def new_dynamic_cache(model: torch.nn.Module):
    """An empty `DynamicCache` for `model` (transformers 5 wants the config; older versions take no arguments)."""
    try:
        return DynamicCache(config=model.config)
    except TypeError:  # pragma: no cover - transformers < 4.56
        return DynamicCache()


def base_model(model: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face model under a ``DistributedDataParallel`` and/or peft wrapper (``model`` itself if none)."""
    model = unwrap(model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def cache_kwarg(model: torch.nn.Module) -> str:
    """Name of the KV-cache argument of the model's forward: `cache` (transformers >= 5.x) or `past_key_values`."""
    base = base_model(model)
    try:
        return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
    except (TypeError, ValueError):  # pragma: no cover
        return "past_key_values"


def accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    """Whether the underlying HF causal LM's forward takes `logits_to_keep` (transformers >= 4.50 models)."""
    base = base_model(model)
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


def checkpointing_active(model: torch.nn.Module) -> bool:
    """Whether activation checkpointing will run in this forward (transformers then drops the KV cache)."""
    if not (torch.is_grad_enabled() and model.training):
        return False
    return any(getattr(m, "gradient_checkpointing", False) for m in model.modules())


def shared_prompt_cache(model: torch.nn.Module, ids: torch.Tensor, attention: torch.Tensor, positions: torch.Tensor,
                         repeats: int):
    """Run the distinct prompt prefixes [g, p-1] once into a KV cache and repeat it to [g*repeats, p-1].

    Under grad the repeat is part of the graph, so each prompt's gradient is the sum over its rows. Returns
    None if the model did not fill the cache (then the caller computes every row in full).
    """
    cache = new_dynamic_cache(model)
    kwargs = {"logits_to_keep": 1} if accepts_logits_to_keep(model) else {}
    model(input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=True,
          **{cache_kwarg(model): cache}, **kwargs)
    if cache.get_seq_length() != ids.shape[1]:
        return None
    cache.batch_repeat_interleave(repeats)
    return cache


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks of a Hugging Face causal LM (the units FSDP shards one by one).

    Found by the class names the model lists in ``_no_split_modules`` (the blocks transformers itself never
    splits across devices); a model that lists none has no recognisable blocks and gets an error.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or ())
    layers = [m for m in base.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"{type(base).__name__}: cannot find its decoder layers (no _no_split_modules); "
                         "FSDP needs them to shard layer by layer")
    return layers


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (``model`` itself otherwise)."""
    return model.module if isinstance(model, DistributedDataParallel) else model
