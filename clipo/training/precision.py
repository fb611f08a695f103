"""Training precision (``trainer.precision``): which dtype the policy's weights live in, and which dtype it computes in.

* ``auto`` (default): ``bf16-mixed`` where the hardware computes bf16 matrix products natively (a CUDA GPU
  that supports bf16; a CPU with AVX512-BF16 or AMX-BF16 instructions, for models of hidden size >= 256), else
  ``fp32``
  (:func:`resolve_precision`; the trainer logs its choice and saves the resolved value in the run's config).
* ``fp32``: no autocast; the weights stay in the dtype they were loaded in (``model.dtype``, float32
  by default).
* ``bf16-mixed``: float32 master weights, float32 gradients and float32 AdamW state; every forward pass
  (rollout generation, the no-grad log-prob / embedding forward, the training forward, the reference model,
  evaluation) runs under ``torch.autocast(device_type, dtype=torch.bfloat16)``. Log-probs, entropies and the
  pooled embedding are computed in float32 from the bf16 logits / states (:mod:`clipo.models.forward`), and
  the loss math after the forward stays outside autocast. This is how verl (FSDP ``param_dtype=bf16`` over an
  fp32 actor) and TRL/accelerate (``bf16=True`` over an fp32 model) train.
* ``bf16``: pure bfloat16 weights and AdamW state, no autocast. An AdamW step moves a weight by about ``lr``;
  bf16 keeps 8 significant bits, so a step below half an ulp (``2^-9`` to ``2^-8`` of ``|w|``: 6e-5 for
  ``|w| = 0.02``) rounds away, and at ``lr = 1e-6`` almost every weight never changes. It warns.

``model.dtype`` is the dtype a checkpoint is *loaded* in. The master weights follow the precision
(:func:`master_dtype`): ``bf16-mixed`` holds float32 whatever ``model.dtype`` says (a bfloat16 checkpoint is
upcast exactly), ``bf16`` holds bfloat16, ``fp32`` keeps ``model.dtype`` (a 16-bit ``model.dtype`` there is
pure 16-bit training as before, and warns like ``bf16``). See docs/algorithms.md#precision.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import torch

from clipo.models import fp32_attention_on_cpu, resolve_dtype
from clipo.models.compat import base_model

__all__ = ["PRECISIONS", "PurePrecisionWarning", "autocast_context", "cpu_bf16_flags", "master_dtype",
           "prepare_master_weights", "resolve_precision", "CPU_BF16_MIN_HIDDEN"]

#: The values of ``trainer.precision``.
PRECISIONS = ("auto", "fp32", "bf16-mixed", "bf16")
#: CPU flags (``/proc/cpuinfo``) of native bf16 matrix instructions, which make bf16 autocast pay on a CPU.
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: Smallest hidden size for which ``auto`` picks bf16-mixed on a CPU. Below it the matrix products are too small
#: for bf16 to pay for autocast's casts: on this project's AVX512-BF16 CPU the demo's model (hidden 96) trained
#: 60 RL steps in 73 s under bf16-mixed against 61 s in fp32, while the benchmark model (hidden 256) took 0.78x
#: the fp32 step (README, "Performance").
CPU_BF16_MIN_HIDDEN = 256

_log = logging.getLogger("clipo.training")


class PurePrecisionWarning(UserWarning):
    """The policy is trained with 16-bit master weights: small AdamW updates round away."""


def _check(precision: str, *, resolved: bool = False) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"trainer.precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    if resolved and precision == "auto":
        raise ValueError("trainer.precision=auto: resolve it for the device first (clipo.training.precision."
                         "resolve_precision)")


def cpu_bf16_flags(cpuinfo: str = "/proc/cpuinfo") -> list[str]:
    """The :data:`CPU_BF16_FLAGS` this machine's CPU lists (empty where ``cpuinfo`` cannot be read)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [flag for flag in CPU_BF16_FLAGS if flag in flags]
    except OSError:
        pass
    return []


def resolve_precision(precision: str, device: torch.device | str, *, model: torch.nn.Module | None = None,
                      cpu_flags: list[str] | None = None) -> str:
    """``trainer.precision`` with ``auto`` replaced by what pays on ``device``: ``bf16-mixed`` on a CUDA GPU that
    supports bf16, or on a CPU with native bf16 matrix instructions (``cpu_flags``, default
    :func:`cpu_bf16_flags`) for a ``model`` whose ``config.hidden_size`` is at least
    :data:`CPU_BF16_MIN_HIDDEN` (or unknown); else ``fp32``. Other values come back unchanged.

    Why bf16-mixed on such a CPU: the benchmark model's training step takes ~0.78x the fp32 time (SmolLM2-135M ~0.83x;
    matrix products ~2.5x faster, attention kept in fp32: :mod:`clipo.models.attention`) and trains the same
    (README, "Performance")."""
    _check(precision)
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    if device.type != "cpu" or not (_this_cpu_bf16_flags() if cpu_flags is None else cpu_flags):
        return "fp32"
    hidden = getattr(getattr(base_model(model), "config", None), "hidden_size", None) if model is not None else None
    return "fp32" if isinstance(hidden, int) and hidden < CPU_BF16_MIN_HIDDEN else "bf16-mixed"


@functools.lru_cache(maxsize=1)
def _this_cpu_bf16_flags() -> tuple[str, ...]:
    """:func:`cpu_bf16_flags` of this machine, read once per process (autocast_context resolves ``auto`` per call)."""
    return tuple(cpu_bf16_flags())


def master_dtype(precision: str, model_dtype: str | torch.dtype = "float32") -> torch.dtype:
    """The dtype the trainable weights (and so their gradients and AdamW state) are held in.

    ``bf16-mixed`` → float32, ``bf16`` → bfloat16, ``fp32`` → ``model_dtype`` (the load dtype, unchanged);
    ``auto`` must be resolved first (:func:`resolve_precision`).
    """
    _check(precision, resolved=True)
    if precision == "bf16-mixed":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    dtype = resolve_dtype(model_dtype)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"model.dtype={model_dtype!r}: trainer.precision=fp32 needs an explicit dtype")
    return dtype


def autocast_context(precision: str, device: torch.device | str,
                     model: torch.nn.Module | None = None) -> contextlib.AbstractContextManager[Any]:
    """The context every forward pass runs in: bf16 autocast on ``device``'s type under ``bf16-mixed``, else a no-op.

    On a CPU, ``model``'s SDPA attention also runs in float32 inside it (:func:`clipo.models.fp32_attention_on_cpu`:
    PyTorch's CPU attention kernel is 2-7x slower in bf16 than in fp32, while the matrix products are ~2.5x
    faster in bf16). Backward must run outside the context (as PyTorch's autocast recipe says); the trainer only
    wraps forwards, and the attention's backward follows the dtype its forward recorded.
    """
    precision = resolve_precision(precision, device, model=model)
    if precision != "bf16-mixed":
        return contextlib.nullcontext()
    return _bf16_mixed(torch.device(device).type, model)


@contextlib.contextmanager
def _bf16_mixed(device_type: str, model: torch.nn.Module | None) -> Iterator[None]:
    """bf16 autocast on ``device_type``, plus fp32 SDPA attention for ``model`` on a CPU (entered by ``with``)."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.autocast(device_type=device_type, dtype=torch.bfloat16))
        if model is not None and device_type == "cpu":
            stack.enter_context(fp32_attention_on_cpu(model))
        yield


def prepare_master_weights(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """Cast ``model``'s parameters in place to the precision's master dtype; warn when trainable ones end up 16-bit.

    ``bf16-mixed``: trainable parameters that are not float32 are upcast to float32 (bf16 → fp32 is exact);
    frozen ones (a LoRA base model) keep their dtype, autocast computes in bf16 either way. ``bf16``: every
    floating parameter is cast to bfloat16. ``fp32``: nothing changes. Buffers are never cast (transformers
    keeps e.g. the rotary ``inv_freq`` in float32 whatever the load dtype). ``auto`` is resolved for the device
    of ``model``'s first parameter. Returns ``model``.
    """
    if precision == "auto":
        first = next(model.parameters(), None)
        precision = resolve_precision(precision, first.device if first is not None else "cpu", model=model)
    _check(precision)
    trainable = [p for p in model.parameters() if p.requires_grad and p.is_floating_point()]
    if precision == "bf16-mixed":
        _cast(trainable, torch.float32)
    elif precision == "bf16":
        _cast([p for p in model.parameters() if p.is_floating_point()], torch.bfloat16)
    low = sorted({str(p.dtype).removeprefix("torch.") for p in trainable if p.dtype in (torch.bfloat16, torch.float16)})
    if low:
        message = (f"training with {'/'.join(low)} master weights (trainer.precision={precision}): an AdamW step "
                   f"smaller than half a {low[0]} ulp of the weight (for bfloat16 2^-9..2^-8 of |w|, 6e-5 at |w|=0.02) "
                   "rounds away, so at small learning rates most weights never change; set "
                   "trainer.precision=bf16-mixed for float32 master weights with bf16 compute")
        warnings.warn(message, PurePrecisionWarning, stacklevel=2)
        _log.warning(message)
    return model


def _cast(params: list[torch.nn.Parameter], dtype: torch.dtype) -> None:
    """Change the dtype of each parameter in place (the Parameter objects, and so weight ties, stay the same)."""
    with torch.no_grad():
        for p in params:
            if p.dtype != dtype:
                p.data = p.data.to(dtype)
