"""Turn ``model.name_or_path`` and ``data.*`` specs into objects: Hugging Face checkpoints, files, or built-ins.

``builtin:`` names refer to the CPU demo (:mod:`clipo.apps.demo`): a tiny model warm-started on a synthetic
task, and that task's prompt splits. Everything else is a Hugging Face model id / local path, or a data file.
The trainer itself only ever sees the resulting objects.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from clipo.apps.demo.data import builtin_dataset
from clipo.apps.demo.warmstart import load_builtin_model
from clipo.data import DATA_DIR_ENV, PromptDataset, data_root, load_prompts, resolve_data_path
from clipo.data.render import chooses_chat_template
from clipo.models import LoraSpec, load_policy, load_tokenizer
from clipo.training.config import Config, ConfigError
from clipo.training.precision import master_dtype
from clipo.training.trainer import RLTrainer

BUILTIN_PREFIX = "builtin:"
DEMO_MODEL_HINT = ("set model.name_or_path=... (a Hugging Face id or a local folder); "
                   "the built-in demo model is builtin:tiny")
_log = logging.getLogger("clipo.apps")


def looks_local(name_or_path: str) -> bool:
    """Whether ``model.name_or_path`` is written as a file-system path rather than a hub id (``org/name``):
    it starts with ``/``, ``./``, ``../`` or ``~``, or has a path separator a hub id cannot have
    (a backslash, or more than one ``/``)."""
    name = name_or_path.replace(os.sep, "/")
    if os.altsep:
        name = name.replace(os.altsep, "/")
    return (name.startswith(("/", "./", "../", "~")) or name in (".", "..") or "\\" in name_or_path
            or name.count("/") > 1)


def check_model_path(config: Config) -> None:
    """Refuse, before anything loads, a local-looking ``model.name_or_path`` that does not exist (it would be
    sent to the hub and fail after minutes of retries), and a ``model.gguf_file`` missing from the folder."""
    m = config.model
    if m.name_or_path.startswith(BUILTIN_PREFIX):
        return
    path = Path(m.name_or_path).expanduser()
    if not path.exists() and looks_local(m.name_or_path):
        raise ConfigError(f"model.name_or_path: {m.name_or_path} does not exist (looked from {Path.cwd()}); "
                          "pass an existing model folder or a Hugging Face id such as Qwen/Qwen2.5-0.5B-Instruct")
    if m.gguf_file is not None and path.is_dir() and not (path / m.gguf_file).is_file():
        found = ", ".join(sorted(p.name for p in path.glob("*.gguf"))) or "none"
        raise ConfigError(f"model.gguf_file: {m.gguf_file} not found in {path} (.gguf files there: {found}); "
                          "name one of them, or unset model.gguf_file for a safetensors folder")


def check_output_dir(config: Config) -> None:
    """Refuse an unusable ``trainer.output_dir`` (a file, or not writable) before the model loads; creates nothing."""
    out = Path(config.trainer.output_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"trainer.output_dir: {out} is a file, not a folder; set trainer.output_dir to a folder")
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ConfigError(f"trainer.output_dir: {existing} (a parent of {out}) is a file; set trainer.output_dir "
                          "to a folder path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"trainer.output_dir: {existing} is not writable; set trainer.output_dir to a folder "
                          "you can write to")


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
    check_model_path(config)
    tokenizer = load_tokenizer(m.name_or_path, trust_remote_code=m.trust_remote_code, gguf_file=m.gguf_file)
    if m.use_chat_template == "auto":
        _log.info("clipo: prompts use %s (model.use_chat_template=auto; set true/false to choose)",
                  "the tokenizer's chat template" if chooses_chat_template(tokenizer)
                  else "raw text: the tokenizer has no chat template")
    # 'auto' is bf16-mixed or fp32 (never pure 16-bit): either way the trained weights are float32
    precision = "bf16-mixed" if config.trainer.precision == "auto" else config.trainer.precision
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
    # Data, output folder and model path first: a user error is reported before minutes of model loading.
    check_output_dir(config)
    if kwargs.get("train_data") is None:
        kwargs["train_data"] = resolve_data(config.data.train, config)
    if kwargs.get("eval_data") is None:
        kwargs["eval_data"] = load_eval_sets(config)
    if kwargs.get("model") is None or kwargs.get("tokenizer") is None:
        check_model_path(config)
        kwargs["model"], kwargs["tokenizer"] = resolve_model(config)
    out = Path(config.trainer.output_dir)
    created = not out.exists()
    try:
        return RLTrainer(config, **kwargs)
    except BaseException:
        # RLTrainer creates the output folder; a run that fails while setting up leaves none behind.
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
