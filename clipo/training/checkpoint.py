"""Atomic, resumable checkpoints.

Layout of ``<output_dir>/checkpoints`` (names owned by :mod:`clipo.training.run_folder`; docs/architecture.md)::

    step_000010/            policy (save_pretrained, safetensors), tokenizer, head/, trainer_state.pt, run_id
                            (FSDP: sharded/ holds the policy and optimizer shards, written by every process)
    step_000020/
    latest                  text file naming the newest complete checkpoint

A checkpoint is written into a temporary folder and renamed into place only when complete, and ``latest``
is replaced atomically after that, so a crash or kill at any moment leaves the previous checkpoint usable.
A write that fails (disk full, read-only folder) removes what it wrote and raises
:class:`CheckpointWriteError`; the previous checkpoint stays the latest. Each checkpoint records the id of the
run that wrote it, and pruning deletes only the current run's older checkpoints, never the newest. Temporary
files of killed writers are removed at the next save or resume (:func:`clean_stale_tmps`).
``trainer_state.pt`` holds only tensors, numbers, strings and containers of them and is read with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import logging
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

log = logging.getLogger(__name__)


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (disk full, read-only folder, ...); the previous one is intact."""


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
                      head: Any = None, keep: int = 2, run_id: str | None = None) -> Path:
    """Add the tokenizer, head, trainer state and ``run_id`` to ``tmp``, then rename it into place atomically,
    point ``latest`` at it and prune the run's checkpoints but the newest ``keep``; return the checkpoint folder.

    An ``OSError`` on the way removes ``tmp`` (and the new folder) and raises :class:`CheckpointWriteError`;
    ``latest`` and the previous checkpoint are left as they were."""
    run = RunFolder(output_dir)
    final = run.checkpoint(step)
    with _write_guard(run, step, tmp):
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp / CHECKPOINT_POLICY)
        if head is not None:
            head.save_pretrained(tmp / CHECKPOINT_HEAD)
        torch.save(state, tmp / CHECKPOINT_STATE)
        if run_id is not None:
            run.write_checkpoint_run_id(tmp, run_id)
        _fsync_tree(tmp)
        # A checkpoint of the same step (a resumed run saving it again) is moved aside, not deleted, until the new
        # one and the pointer are in place; a kill in between leaves it as a stale temporary folder.
        aside = run.checkpoints / f"{tmp.name}_old" if final.exists() else None
        if aside is not None:
            os.replace(final, aside)
        os.replace(tmp, final)
        try:
            write_text_atomic(run.latest_pointer, final.name)
        except OSError:
            shutil.rmtree(final, ignore_errors=True)
            if aside is not None:
                os.replace(aside, final)
            raise
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    _prune(run, keep, run_id=run_id, newest=final)
    return final


def is_write_fault(error: BaseException) -> bool:
    """An ``OSError``, or safetensors' own error for one: safetensors writes from Rust and reports a full disk
    as ``SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")``."""
    if isinstance(error, OSError):
        return True
    from safetensors import SafetensorError  # a dependency of transformers; deferred like the other heavy imports

    return isinstance(error, SafetensorError) and "I/O error" in str(error)


class _write_guard:
    """Turn an ``OSError`` while writing checkpoint ``step`` into one :class:`CheckpointWriteError` line, after
    removing the half-written temporary folder."""

    def __init__(self, run: RunFolder, step: int, tmp: Path | None):
        self.run, self.step, self.tmp = run, step, tmp

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> bool:
        if error is None or not is_write_fault(error):
            return False
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        previous = latest_checkpoint(self.run.root, warn=False)
        if isinstance(error, OSError):
            cause = f"{error.strerror} ({error.filename})" if error.strerror and error.filename else (error.strerror or error)
        else:
            cause = str(error).rsplit("I/O error: ", 1)[-1]
        raise CheckpointWriteError(
            f"could not write checkpoint step {self.step} in {self.run.checkpoints}: {cause}; "
            f"{'the previous checkpoint ' + previous.name + ' is intact' if previous else 'no earlier checkpoint'}"
        ) from error


def save_checkpoint(
    output_dir: str | Path,
    step: int,
    *,
    model: Any,
    tokenizer: Any,
    state: dict[str, Any],
    head: Any = None,
    keep: int = 2,
    run_id: str | None = None,
) -> Path:
    """Write checkpoint ``step`` atomically (the policy with ``save_pretrained``); prune all but the newest ``keep``."""
    with _write_guard(RunFolder(output_dir), step, None):
        tmp = begin_checkpoint(output_dir, step)
    with _write_guard(RunFolder(output_dir), step, tmp):
        model.save_pretrained(tmp / CHECKPOINT_POLICY, safe_serialization=True)
    return finish_checkpoint(output_dir, step, tmp, tokenizer=tokenizer, state=state, head=head, keep=keep,
                             run_id=run_id)


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
                        head: Any, keep: int, is_main: bool, barrier: Callable[[], None],
                        run_id: str | None = None) -> Path | None:
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
                                 keep=keep, run_id=run_id) if is_main else None
        barrier()
        return path
    if not is_main:
        return None
    return save_checkpoint(output_dir, step, model=model, tokenizer=tokenizer, state=state(), head=head, keep=keep,
                           run_id=run_id)


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


def latest_checkpoint(output_dir: str | Path, *, warn: bool = True) -> Path | None:
    """The checkpoint ``latest`` names, verified complete; else (``latest`` missing, or naming a missing or
    incomplete folder: a warning) the newest complete checkpoint folder; None when there is none."""
    run = RunFolder(output_dir)
    pointer = run.latest_pointer
    named = None
    if pointer.is_file():
        try:
            named = pointer.read_text().strip()
        except OSError:
            named = None
        if named and "/" not in named and named not in (".", ".."):
            candidate = run.checkpoints / named
            if run.is_complete_checkpoint(candidate):
                return candidate
    complete = [p for p in run.checkpoint_folders() if run.is_complete_checkpoint(p)]
    fallback = complete[-1] if complete else None
    if warn and named is not None:
        log.warning("%s names %r, which is missing or incomplete; using %s", pointer, named,
                    fallback.name if fallback is not None else "no checkpoint")
    return fallback


def clean_stale_tmps(output_dir: str | Path) -> None:
    """Remove the temporary checkpoint folders, ``latest`` pointers and ``run.json`` files of writers that were
    killed (call it only while holding the run folder's lock: no other writer is at work)."""
    run = RunFolder(output_dir)
    for stale in run.stale_checkpoint_tmps():
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    for stale in (*run.stale_latest_tmps(), *run.stale_run_info_tmps()):
        stale.unlink(missing_ok=True)


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


def _prune(run: RunFolder, keep: int, *, run_id: str | None = None, newest: Path | None = None) -> None:
    """Delete the checkpoints of run ``run_id`` but its newest ``keep`` (never ``newest``, never another run's),
    and the temporary files of killed writers."""
    ours = [p for p in run.checkpoint_folders() if run.checkpoint_run_id(p) == run_id]
    for old in ours[: max(0, len(ours) - max(keep, 1))]:
        if newest is None or old.resolve() != newest.resolve():
            shutil.rmtree(old, ignore_errors=True)
    clean_stale_tmps(run.root)
