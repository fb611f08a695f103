"""Attention in float32 on CPU under bf16 autocast (``trainer.precision=bf16-mixed`` on a CPU).

PyTorch's CPU kernel for ``scaled_dot_product_attention`` is much slower in bfloat16 than in float32 at the
shapes RL training runs: one decode step (64 rows, 1 query, 77 keys, GQA 4/2 heads of 64) takes ~2.3 ms in bf16
and ~0.35 ms in fp32; a training forward + backward (64 × 77 × 77) ~68 ms against ~31 ms (torch 2.13, one thread
of an AVX-512-BF16 CPU). The matrix products around it are the other way round (bf16 ~2.5× faster), so the
fast recipe is bf16 for the linear layers and fp32 for the attention kernel: the cast of q, k, v to fp32 and
of the output back costs far less than the kernel saves.

:func:`fp32_attention_on_cpu` switches a Hugging Face model that uses SDPA attention to the attention
implementation :data:`CPU_FP32_SDPA` (registered here in transformers' ``AttentionInterface``): transformers'
own SDPA forward, called on float32 copies of q, k, v when they are 16-bit CPU tensors, its output cast back.
Everywhere else (fp32 tensors, GPUs) it is transformers' SDPA forward unchanged. The switch lasts only while
the context is open, so a saved checkpoint or the caller's model keeps ``sdpa``.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from clipo.models.compat import base_model

__all__ = ["CPU_FP32_SDPA", "fp32_attention_on_cpu", "sdpa_fp32_on_cpu"]

#: The name under which :func:`sdpa_fp32_on_cpu` is registered in transformers' attention registry.
CPU_FP32_SDPA = "clipo_sdpa_fp32_on_cpu"


def sdpa_fp32_on_cpu(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' ``sdpa_attention_forward`` on CPU with q [B, Hq, Lq, D] and k/v [B, Hkv, Lk, D] in float32
    and autocast off, whenever the kernel would otherwise run in 16 bits: under CPU autocast (which casts SDPA's
    inputs to bf16, even the float32 q and k that rotary embeddings produce) or with 16-bit inputs. The output
    [B, Lq, Hq, D] gets the dtype the plain call would have given (the autocast dtype, else the inputs' 16-bit
    dtype). Any other call (GPU, fp32 without autocast) goes through unchanged."""
    autocast = query.device.type == "cpu" and torch.is_autocast_enabled("cpu")
    low = [t.dtype for t in (query, key, value) if t.dtype in (torch.bfloat16, torch.float16)]
    if query.device.type != "cpu" or not (autocast or low):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    dtype = torch.get_autocast_dtype("cpu") if autocast else low[0]
    if attention_mask is not None and attention_mask.is_floating_point():
        attention_mask = attention_mask.float()  # an additive mask must match the fp32 query
    with torch.autocast(device_type="cpu", enabled=False):
        out, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(), attention_mask,
                                              **kwargs)
    return out.to(dtype), weights


AttentionInterface.register(CPU_FP32_SDPA, sdpa_fp32_on_cpu)
AttentionMaskInterface.register(CPU_FP32_SDPA, sdpa_mask)  # the same boolean masks as "sdpa"


@contextlib.contextmanager
def fp32_attention_on_cpu(model: torch.nn.Module) -> Iterator[None]:
    """While open: ``model`` (a DDP / peft wrapper too) computes SDPA attention through :func:`sdpa_fp32_on_cpu`.

    Only a model on the CPU whose attention implementation is ``sdpa`` is switched (eager, flash or a
    user's own implementation are left alone); the previous implementation comes back on exit."""
    base = base_model(model)
    config = getattr(base, "config", None)
    switch = (config is not None and getattr(config, "_attn_implementation", None) == "sdpa"
              and _on_cpu(base))
    if not switch:
        yield
        return
    config._attn_implementation = CPU_FP32_SDPA
    try:
        yield
    finally:
        config._attn_implementation = "sdpa"


def _on_cpu(model: torch.nn.Module) -> bool:
    param = next(model.parameters(), None)
    return param is not None and param.device.type == "cpu"
