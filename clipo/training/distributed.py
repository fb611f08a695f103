"""Data parallelism helpers: each process owns whole prompt groups; CLIPO's head sees the global batch.

With P processes, every process draws the same global batch of ``P·B`` prompts and keeps its own slice of
``B`` (so a prompt's group never spans processes). The contrastive head is replicated: every process gathers
the pooled embeddings, correctness and (offset) group ids of all processes, takes the *same* head step on the
*same* global batch (so the copies stay identical without any parameter synchronisation, and the batch and
cross levels see every rollout), and keeps the rewards of its own rows. The policy's gradients are summed
over processes by torch's DDP or FSDP (:mod:`clipo.training.parallel`). On one process all of this is the
identity.
"""
from __future__ import annotations

from typing import Any, Sequence

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


def all_agree(flag: bool) -> bool:
    """True when ``flag`` is True on every process (``flag`` itself on one process)."""
    _, size = world()
    if size == 1:
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if torch.distributed.get_backend() == "nccl" \
        else torch.device("cpu")
    return bool(all_reduce_sum(torch.tensor(0.0 if flag else 1.0, device=device)) == 0)


def broadcast_object(obj: Any) -> Any:
    """The main process's ``obj`` on every process (picklable objects; the identity on one process)."""
    _, size = world()
    if size == 1:
        return obj
    holder = [obj]
    torch.distributed.broadcast_object_list(holder, src=0)
    return holder[0]
