"""The policy on torch's own parallel engines: ``trainer.parallel`` = ``none`` | ``ddp`` | ``fsdp``.

* ``ddp``: :class:`torch.nn.parallel.DistributedDataParallel`. Every process holds the whole model; the
  gradients are all-reduced by DDP's buckets during the last micro-batch's backward.
* ``fsdp``: FSDP2 (:func:`torch.distributed.fsdp.fully_shard`) on every decoder layer and then the root, so
  parameters, gradients and AdamW state are sharded over the processes; each layer's full weights exist only
  while it runs. Optional CPU offload of the sharded parameters and optimizer state (``trainer.fsdp_offload``).

Both engines SUM the gradients over processes instead of averaging them: each process's loss is already its
share of the global mini-batch mean (the loss denominators are summed over processes,
:func:`clipo.core.loss.mini_batch_denominators`), so the sum is the gradient of the whole global batch — the
update one process would take on it.

Generation and evaluation run on the full weights: :func:`full_weights` all-gathers every FSDP unit once for
the rollout phase (processes generate different numbers of tokens, so per-layer all-gathers inside
``generate`` would deadlock) and reshards afterwards. ``ddp`` and ``none`` hold full weights already.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, fully_shard
from torch.nn.parallel import DistributedDataParallel

from clipo.models.compat import decoder_layers

__all__ = ["PARALLEL_MODES", "full_weights", "gradient_sync", "is_sharded", "wrap_policy"]

PARALLEL_MODES = ("auto", "none", "ddp", "fsdp")


def resolve_mode(mode: str, world_size: int) -> str:
    """``auto`` is ``ddp`` on several processes and ``none`` on one; ``none`` on several processes is an error
    (nothing would keep the replicas in sync)."""
    if mode == "auto":
        return "ddp" if world_size > 1 else "none"
    if mode in ("ddp", "fsdp") and world_size == 1:
        # A recipe written for a cluster, run as one process (debugging, a single-process launcher): train plainly.
        warnings.warn(f"trainer.parallel={mode} in a single process: nothing to distribute, training without it "
                      "(launch with torchrun --nproc_per_node N, or accelerate launch --multi_gpu --num_processes N)",
                      stacklevel=2)
        return "none"
    if mode == "none" and world_size > 1:
        raise ValueError(f"trainer.parallel=none with {world_size} processes: the replicas would drift apart; "
                         "use trainer.parallel=ddp or fsdp")
    return mode


def _sum_allreduce_hook(process_group, bucket):  # no annotations: DDP checks them against real classes
    """DDP communication hook: all-reduce a gradient bucket (a ``dist.GradBucket``) as a SUM; DDP's default
    divides by the world size."""
    group = process_group if process_group is not None else dist.group.WORLD
    work = dist.all_reduce(bucket.buffer(), group=group, async_op=True)
    return work.get_future().then(lambda future: future.value()[0])


def wrap_policy(model: torch.nn.Module, mode: str, device: torch.device, *, offload: bool = False) -> torch.nn.Module:
    """The module the training forward and backward go through.

    ``none``: ``model`` itself. ``ddp``: a ``DistributedDataParallel`` around it (``model`` stays the module
    to generate with and to save). ``fsdp``: ``model`` itself, sharded in place (decoder layers, then the root);
    build the optimizer AFTER this call, on the sharded parameters.
    """
    if mode == "none":
        return model
    if mode == "ddp":
        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        ddp.register_comm_hook(None, _sum_allreduce_hook)
        return ddp
    if mode == "fsdp":
        mesh = init_device_mesh(device.type, (dist.get_world_size(),))
        kwargs: dict[str, Any] = {"mesh": mesh}
        if offload:
            kwargs["offload_policy"] = CPUOffloadPolicy()
        for layer in decoder_layers(model):
            fully_shard(layer, **kwargs)
        fully_shard(model, **kwargs)
        # Sum, not mean (see the module docstring); a plain SUM reduction, since a divide factor of 1 would otherwise
        # use PREMUL_SUM, which gloo (CPU) lacks.
        for unit in (m for m in model.modules() if isinstance(m, FSDPModule)):  # each call sets one unit
            unit.set_gradient_divide_factor(1.0)
            unit.set_force_sum_reduction_for_comms(True)
        return model
    raise ValueError(f"trainer.parallel={mode!r}: choose one of {', '.join(PARALLEL_MODES)}")


def is_sharded(model: torch.nn.Module) -> bool:
    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def gradient_sync(train_module: torch.nn.Module, enabled: bool) -> Iterator[None]:
    """Inside, a backward reduces gradients over processes only when ``enabled`` (the last micro-batch of a
    mini-batch); the other micro-batches accumulate locally."""
    if enabled:
        yield
    elif isinstance(train_module, DistributedDataParallel):
        with train_module.no_sync():
            yield
    elif isinstance(train_module, FSDPModule):
        train_module.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            train_module.set_requires_gradient_sync(True)
    else:
        yield


@contextlib.contextmanager
def full_weights(model: torch.nn.Module) -> Iterator[None]:
    """Hold every FSDP unit's full parameters for the duration (a no-op for unsharded models).

    All processes must enter together (the all-gather is a collective); inside, forwards run without any
    communication, so each process may run as many as it likes (generation, evaluation on one process).
    """
    units = [m for m in model.modules() if isinstance(m, FSDPModule)]
    if not units:
        yield
        return
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
        unit.unshard()
    try:
        yield
    finally:
        for unit in units:
            unit.reshard()
            unit.set_reshard_after_forward(True, recurse=False)
