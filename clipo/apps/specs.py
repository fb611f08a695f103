"""Turn ``model.name_or_path`` and ``data.*`` specs into objects: Hugging Face checkpoints, files, or built-ins.

``builtin:`` names refer to the CPU demo (:mod:`clipo.apps.demo`): a tiny model warm-started on a synthetic
task, and that task's prompt splits. Everything else is a Hugging Face model id / local path, or a data file.
The trainer itself only ever sees the resulting objects.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from clipo.apps.demo.data import builtin_dataset
from clipo.apps.demo.warmstart import load_builtin_model
from clipo.data import DATA_DIR_ENV, PromptDataset, data_root, load_prompts, resolve_data_path
from clipo.models import LoraSpec, load_policy, load_tokenizer
from clipo.training.config import Config, ConfigError
from clipo.training.precision import master_dtype
from clipo.training.trainer import RLTrainer

BUILTIN_PREFIX = "builtin:"


def resolve_model(config: Config) -> tuple[Any, Any]:
    """The policy and its tokenizer for ``config.model``.

    The checkpoint is loaded straight in the dtype ``trainer.precision`` trains it in
    (:func:`clipo.training.precision.master_dtype`): ``bf16-mixed`` float32 (a bfloat16 checkpoint read as float32
    is exact), ``bf16`` bfloat16, ``fp32`` ``model.dtype``. With LoRA under ``bf16-mixed`` only the adapters are
    trained, so the frozen base is loaded in ``model.dtype`` (peft keeps the adapters float32). The ``builtin:``
    demo model is float32; the trainer casts it if the precision asks for bfloat16.
    """
    m = config.model
    if m.name_or_path.startswith(BUILTIN_PREFIX):
        return load_builtin_model(m.name_or_path[len(BUILTIN_PREFIX):])
    lora = None
    if m.lora_r > 0:
        lora = LoraSpec(r=m.lora_r, alpha=m.lora_alpha, dropout=m.lora_dropout, target_modules=tuple(m.lora_target_modules))
    tokenizer = load_tokenizer(m.name_or_path, trust_remote_code=m.trust_remote_code, gguf_file=m.gguf_file)
    precision = config.trainer.precision
    dtype = m.dtype if lora is not None and precision == "bf16-mixed" else master_dtype(precision, m.dtype)
    model = load_policy(m.name_or_path, dtype=dtype, trust_remote_code=m.trust_remote_code, gguf_file=m.gguf_file,
                        gradient_checkpointing=m.gradient_checkpointing, lora=lora)
    return model, tokenizer


def resolve_data(spec: str, config: Config) -> PromptDataset:
    """A :class:`clipo.data.PromptDataset` for a file path or a ``builtin:`` task split."""
    if spec.startswith(BUILTIN_PREFIX):
        return builtin_dataset(spec[len(BUILTIN_PREFIX):])
    d = config.data
    path = resolve_data_path(spec, d.root)
    if not path.exists():
        root = data_root(d.root)
        where = f"the working directory ({Path.cwd()}) or {root}" if root is not None else \
            f"the working directory ({Path.cwd()}); data.root and ${DATA_DIR_ENV} are unset"
        raise ConfigError(f"data file not found: {spec} (looked in {where}); pass an existing parquet/JSONL/CSV path, "
                          f"or set data.root or {DATA_DIR_ENV} to the folder that holds it")
    return load_prompts(str(path), prompt_field=d.prompt_field,
                        answer_field=None if d.answer_field == "answer" else d.answer_field, on_bad_row=d.on_bad_row)


def eval_set_name(spec: str) -> str:
    """The name an eval set is reported under: the built-in split, or the file stem."""
    return spec[len(BUILTIN_PREFIX):] if spec.startswith(BUILTIN_PREFIX) else Path(spec).stem


def load_eval_sets(config: Config) -> dict[str, PromptDataset]:
    """``{name: PromptDataset}`` for every spec in ``config.data.eval``."""
    return {eval_set_name(spec): resolve_data(spec, config) for spec in config.data.eval}


def build_trainer(config: Config, **kwargs: Any) -> RLTrainer:
    """An :class:`clipo.training.RLTrainer` with the model, tokenizer and datasets the config names.

    Anything passed in ``kwargs`` (``model``/``tokenizer``, ``train_data``, ``eval_data``,
    ``rollout_metrics``) is used as given instead of being resolved.
    """
    # Data first: a missing or malformed file is reported before minutes of model loading.
    if kwargs.get("train_data") is None:
        kwargs["train_data"] = resolve_data(config.data.train, config)
    if kwargs.get("eval_data") is None:
        kwargs["eval_data"] = load_eval_sets(config)
    if kwargs.get("model") is None or kwargs.get("tokenizer") is None:
        kwargs["model"], kwargs["tokenizer"] = resolve_model(config)
    return RLTrainer(config, **kwargs)
