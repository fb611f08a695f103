"""Models: loading Hugging Face causal LMs (LoRA, GGUF), the teacher-forced forward with pooling, the
transformers-version shims shared with the rollout code, and the download-free tiny model and tokenizer.

Layer: above ``clipo.core``; below ``clipo.rollout`` and ``clipo.training``. Imports transformers.
"""
from clipo.models.attention import CPU_FP32_SDPA, fp32_attention_on_cpu
from clipo.models.compat import dtype_kwarg
from clipo.models.forward import (
    POOLING_MODES,
    ForwardOutput,
    plan_micro_batches,
    policy_forward,
    pool_hidden,
    token_logp,
)
from clipo.models.loading import (
    LoraSpec,
    adapters_disabled,
    apply_lora,
    enable_gradient_checkpointing,
    find_smollm2_gguf,
    freeze,
    load_policy,
    load_reference,
    load_tokenizer,
    make_reference_model,
    resolve_dtype,
)

__all__ = [
    "CPU_FP32_SDPA", "POOLING_MODES", "ForwardOutput", "LoraSpec", "adapters_disabled", "apply_lora", "dtype_kwarg",
    "enable_gradient_checkpointing", "find_smollm2_gguf", "fp32_attention_on_cpu", "freeze", "load_policy", "load_reference", "load_tokenizer",
    "make_reference_model", "plan_micro_batches", "policy_forward", "pool_hidden", "resolve_dtype", "token_logp",
]
