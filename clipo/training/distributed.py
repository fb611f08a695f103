"""Data parallelism helpers: each process owns whole prompt groups; CLIPO's head sees the global batch.

With P processes, every process draws the same global batch of ``P·B`` prompts and keeps its own slice of
``B`` (so a prompt's group never spans processes). The contrastive head is replicated: every process gathers
the pooled embeddings, correctness and (offset) group ids of all processes, takes the *same* head step on the
*same* global batch (so the copies stay identical without any parameter synchronisation, and the batch and
cross levels see every rollout), and keeps the rewards of its own rows. The policy's gradients are summed
over processes after each mini-batch (:func:`sync_gradients`). On one process all of this is the identity.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch import Tensor


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, or ``(0, 1)`` without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def shard(items: Sequence[Any], rank: int, world_size: int) -> list[Any]:
    """This process's contiguous share of a global batch (``len(items)`` must divide by ``world_size``)."""
    if len(items) % world_size:
        raise ValueError(f"a global batch of {len(items)} does not split over {world_size} processes")
    size = len(items) // world_size
    return list(items[rank * size:(rank + 1) * size])


def all_gather_rows(tensor: Tensor) -> tuple[Tensor, slice]:
    """Concatenate every process's ``tensor`` ``[n_p, ...]`` along dim 0 (row counts may differ).

    Returns the global tensor and the slice of it that holds this process's rows.
    """
    rank, size = world()
    if size == 1:
        return tensor, slice(0, tensor.shape[0])
    counts = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(size)]
    torch.distributed.all_gather(counts, torch.tensor([tensor.shape[0]], device=tensor.device))
    counts = [int(c.item()) for c in counts]
    width = max(counts)
    padded = torch.zeros((width, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in range(size)]
    torch.distributed.all_gather(parts, padded)
    start = sum(counts[:rank])
    return torch.cat([part[:count] for part, count in zip(parts, counts)]), slice(start, start + tensor.shape[0])


def global_group_ids(group_ids: Tensor) -> Tensor:
    """Group ids made unique across processes (offset by rank · 2^40), so gathered groups never collide."""
    rank, _ = world()
    return group_ids + rank * (1 << 40)


def all_reduce_sum(value: Tensor) -> Tensor:
    """The sum of ``value`` over processes (a copy; the identity on one process)."""
    _, size = world()
    if size == 1:
        return value
    total = value.clone()
    torch.distributed.all_reduce(total)
    return total


def all_reduce_min(value: Tensor) -> Tensor:
    """The minimum of ``value`` over processes (a copy; the identity on one process)."""
    _, size = world()
    if size == 1:
        return value
    smallest = value.clone()
    torch.distributed.all_reduce(smallest, op=torch.distributed.ReduceOp.MIN)
    return smallest


def sync_gradients(parameters: Iterable[Tensor], finite: bool) -> bool:
    """Sum the gradients of ``parameters`` over processes; False (and nothing summed) if any process saw a NaN/inf.

    Each process's loss is its share of the global mean (the losses divide by denominators summed over
    processes, :func:`clipo.core.loss.mini_batch_denominators`), so the summed gradient is the gradient of the
    whole global mini-batch. ``finite`` says whether this process's loss was finite; one non-finite loss
    anywhere skips the update everywhere, so the replicas stay identical. A parameter that got no gradient
    here contributes zeros. Returns whether the update goes ahead (``finite`` itself on one process).
    """
    _, size = world()
    if size == 1:
        return finite
    params = [p for p in parameters if p.requires_grad]
    device = params[0].device if params else torch.device("cpu")
    finite = bool(all_reduce_sum(torch.tensor(0.0 if finite else 1.0, device=device)) == 0)
    if finite:
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            torch.distributed.all_reduce(p.grad)
    return finite
