"""Resolve ``model.name_or_path`` and ``data.*`` specs into objects: Hugging Face checkpoints, files, or built-ins.

``builtin:`` names refer to the CPU demo (``clipo.demo``): a tiny model warm-started on a synthetic task and
that task's prompts. Everything else is a Hugging Face model id / local path, or a data file.
"""
from __future__ import annotations

from typing import Any

from clipo.config import Config, ConfigError

BUILTIN_PREFIX = "builtin:"


def resolve_model(config: Config) -> tuple[Any, Any]:
    """The policy and its tokenizer for ``config.model``."""
    m = config.model
    if m.name_or_path.startswith(BUILTIN_PREFIX):
        from clipo import demo

        return demo.load_builtin_model(m.name_or_path[len(BUILTIN_PREFIX):], config)
    from clipo.models import LoraSpec, load_policy, load_tokenizer

    lora = None
    if m.lora_r > 0:
        lora = LoraSpec(r=m.lora_r, alpha=m.lora_alpha, dropout=m.lora_dropout, target_modules=tuple(m.lora_target_modules))
    tokenizer = load_tokenizer(m.name_or_path, trust_remote_code=m.trust_remote_code, gguf_file=m.gguf_file)
    model = load_policy(m.name_or_path, dtype=m.dtype, trust_remote_code=m.trust_remote_code, gguf_file=m.gguf_file,
                        gradient_checkpointing=m.gradient_checkpointing, lora=lora)
    return model, tokenizer


def resolve_data(spec: str, config: Config) -> Any:
    """A :class:`clipo.data.PromptDataset` for a file path or a ``builtin:`` task split."""
    if spec.startswith(BUILTIN_PREFIX):
        from clipo import demo

        return demo.builtin_dataset(spec[len(BUILTIN_PREFIX):], config)
    from clipo.data import load_prompts

    d = config.data
    try:
        return load_prompts(spec, prompt_field=d.prompt_field,
                            answer_field=None if d.answer_field == "answer" else d.answer_field, on_bad_row=d.on_bad_row)
    except FileNotFoundError as error:
        raise ConfigError(f"data file not found: {spec} ({error}); pass an existing parquet/JSONL/CSV path") from error
