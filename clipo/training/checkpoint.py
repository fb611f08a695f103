"""Atomic, resumable checkpoints.

Layout of ``<output_dir>/checkpoints`` (names owned by :mod:`clipo.training.run_folder`; docs/architecture.md)::

    step_000010/            policy (save_pretrained, safetensors), tokenizer, head/, trainer_state.pt
                            (FSDP: sharded/ holds the policy and optimizer shards, written by every process)
    step_000020/
    latest                  text file naming the newest complete checkpoint

A checkpoint is written into a temporary folder and renamed into place only when complete, and ``latest``
is replaced atomically after that, so a crash or kill at any moment leaves the previous checkpoint usable.
``trainer_state.pt`` holds only tensors, numbers, strings and containers of them and is read with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from safetensors.torch import load_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)

from clipo.training.distributed import broadcast_object
from clipo.training.parallel import is_sharded
from clipo.training.run_folder import (
    CHECKPOINT_HEAD,
    CHECKPOINT_POLICY,
    CHECKPOINT_SHARDED,
    CHECKPOINT_STATE,
    LATEST,  # noqa: F401 - re-exported under its old name
    RunFolder,
    write_text_atomic,
)

STATE_FILE = CHECKPOINT_STATE  # the old name, kept for callers


def checkpoint_root(output_dir: str | Path) -> Path:
    return RunFolder(output_dir).checkpoints


def rng_state() -> dict[str, Any]:
    """The global RNG states (torch CPU and CUDA, numpy, python) as weights_only-loadable objects."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": np_state[0], "pos": int(np_state[2]), "state": torch.from_numpy(np_state[1].astype(np.int64)),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": _python_state_to_tensor(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state((np_state["key"], np_state["state"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    random.setstate(_python_state_from_tensor(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_tensor(state: tuple) -> dict[str, Any]:
    version, internal, gauss = state
    return {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss}


def _python_state_from_tensor(state: dict[str, Any]) -> tuple:
    return (state["version"], tuple(int(x) for x in state["internal"].tolist()), state["gauss"])


def begin_checkpoint(output_dir: str | Path, step: int) -> Path:
    """Create (empty) the temporary folder checkpoint ``step`` is assembled in, and return it."""
    run = RunFolder(output_dir)
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    tmp = run.checkpoint_tmp(step)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def finish_checkpoint(output_dir: str | Path, step: int, tmp: Path, *, tokenizer: Any, state: dict[str, Any],
                      head: Any = None, keep: int = 2) -> Path:
    """Add the tokenizer, head and trainer state to ``tmp``, then rename it into place atomically, point
    ``latest`` at it and prune all but the newest ``keep``; return the checkpoint folder."""
    run = RunFolder(output_dir)
    final = run.checkpoint(step)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp / CHECKPOINT_POLICY)
    if head is not None:
        head.save_pretrained(tmp / CHECKPOINT_HEAD)
    torch.save(state, tmp / CHECKPOINT_STATE)
    _fsync_tree(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_text_atomic(run.latest_pointer, final.name)
    _prune(run, keep)
    return final


def save_checkpoint(
    output_dir: str | Path,
    step: int,
    *,
    model: Any,
    tokenizer: Any,
    state: dict[str, Any],
    head: Any = None,
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` atomically (the policy with ``save_pretrained``); prune all but the newest ``keep``."""
    tmp = begin_checkpoint(output_dir, step)
    model.save_pretrained(tmp / CHECKPOINT_POLICY, safe_serialization=True)
    return finish_checkpoint(output_dir, step, tmp, tokenizer=tokenizer, state=state, head=head, keep=keep)


def save_sharded(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Every process writes its shards of the policy and its optimizer state to ``folder/sharded``
    (``torch.distributed.checkpoint``; a collective: all processes call it)."""
    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=str(folder / CHECKPOINT_SHARDED))


def load_sharded(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load what :func:`save_sharded` wrote into the (identically sharded) ``model`` and ``optimizer``."""
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=str(folder / CHECKPOINT_SHARDED))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def full_model_state(model: torch.nn.Module, *, every_process: bool = False) -> dict[str, torch.Tensor]:
    """The whole policy's state dict on CPU, gathered from the shards under FSDP (a collective: all processes
    call it). The main process receives it; the others get ``{}`` unless ``every_process``."""
    if every_process:
        return {k: v.cpu() for k, v in get_model_state_dict(model, options=StateDictOptions(full_state_dict=True)).items()}
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_run_checkpoint(output_dir: str | Path, step: int, *, model: torch.nn.Module,
                        optimizer: torch.optim.Optimizer, tokenizer: Any, state: Callable[[], dict[str, Any]],
                        head: Any, keep: int, is_main: bool, barrier: Callable[[], None]) -> Path | None:
    """The trainer's checkpoint, on every process; returns the folder on the main process (None elsewhere).

    Unsharded policies (``none``/``ddp``): the main process writes everything, the policy with
    ``save_pretrained`` and the optimizer inside ``state()``. FSDP: the main process creates the temporary
    folder, every process writes its shards of the policy and optimizer into it (:func:`save_sharded`), then the
    main process adds the rest (``state()`` has ``optimizer: None``) and renames it into place.
    """
    barrier()
    if is_sharded(model):
        tmp = broadcast_object(begin_checkpoint(output_dir, step) if is_main else None)
        save_sharded(tmp, model, optimizer)
        barrier()
        path = finish_checkpoint(output_dir, step, tmp, tokenizer=tokenizer, state=state(), head=head,
                                 keep=keep) if is_main else None
        barrier()
        return path
    if not is_main:
        return None
    return save_checkpoint(output_dir, step, model=model, tokenizer=tokenizer, state=state(), head=head, keep=keep)


def load_run_checkpoint(checkpoint: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Load the policy and optimizer of a :func:`save_run_checkpoint` folder in place; return its trainer state
    (step, scheduler, head, data position, RNG) for the trainer to restore."""
    state = load_state(checkpoint)
    if is_sharded(model) != (state["optimizer"] is None):
        raise RuntimeError(f"{checkpoint}: written with{'out' if state['optimizer'] is not None else ''} "
                           "trainer.parallel=fsdp; resume with the same trainer.parallel")
    if is_sharded(model):
        load_sharded(checkpoint, model, optimizer)
        return state
    missing, unexpected = model.load_state_dict(load_policy_weights(checkpoint), strict=False)
    # Tied embeddings are saved once; anything else missing means a different model.
    real_missing = [k for k in missing if "lm_head" not in k]
    if real_missing or unexpected:
        raise RuntimeError(f"{checkpoint}: checkpoint does not match the model (missing {real_missing[:3]}, "
                           f"unexpected {unexpected[:3]}); resume with the same model.name_or_path")
    optimizer.load_state_dict(state["optimizer"])
    return state


def save_final(run: RunFolder, *, model: torch.nn.Module, tokenizer: Any, head: Any, save_dtype: str | None,
               is_main: bool) -> None:
    """``final/``: one consolidated Hugging Face model (gathered from the shards under FSDP: all processes call
    this), its tokenizer and the CLIPO head, written by the main process. ``save_dtype`` casts a copy of the
    weights (``bfloat16`` halves the folder); None keeps the trained master weights' dtype."""
    weights = full_model_state(model) if is_sharded(model) else None
    if not is_main:
        return
    if save_dtype is not None:  # cast a copy; the trained weights stay as they are
        dtype = getattr(torch, save_dtype)
        weights = {k: v.to(dtype) if v.is_floating_point() else v
                   for k, v in (weights if weights is not None else model.state_dict()).items()}
    model.save_pretrained(run.final, state_dict=weights)
    tokenizer.save_pretrained(run.final)
    if head is not None:
        head.save_pretrained(run.final_head)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder, or None. Falls back to scanning when ``latest`` is missing."""
    run = RunFolder(output_dir)
    pointer = run.latest_pointer
    if pointer.is_file():
        candidate = run.checkpoints / pointer.read_text().strip()
        if run.is_complete_checkpoint(candidate):
            return candidate
    complete = [p for p in run.checkpoint_folders() if run.is_complete_checkpoint(p)]
    return complete[-1] if complete else None


def load_policy_weights(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    """The policy tensors a checkpoint holds (its safetensors shards merged), for resume."""
    weights: dict[str, torch.Tensor] = {}
    for shard in sorted((Path(checkpoint) / CHECKPOINT_POLICY).glob("*.safetensors")):
        weights.update(load_file(str(shard)))
    return weights


def load_state(checkpoint: str | Path) -> dict[str, Any]:
    """Read ``trainer_state.pt`` with ``weights_only=True`` (no arbitrary code runs on load)."""
    return torch.load(Path(checkpoint) / CHECKPOINT_STATE, map_location="cpu", weights_only=True)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def _prune(run: RunFolder, keep: int) -> None:
    complete = run.checkpoint_folders()
    for old in complete[: max(0, len(complete) - max(keep, 1))]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in run.stale_checkpoint_tmps():
        shutil.rmtree(stale, ignore_errors=True)
