"""How many torch CPU threads to use when ``trainer.num_threads=0`` (auto).

Why it matters: torch's default is one intra-op thread per logical CPU. Every parallel op then ends in an OpenMP
barrier that waits for the slowest thread; when the machine is busy, a descheduled thread stalls every op, and on
small matrices the barrier costs more than the arithmetic saves. Measured on this project's 2-core machine: the
demo took 682 s with the default and 121 s with one thread while another job ran beside it (issue 14).

The rule (:func:`choose_threads`):

    cores  = physical cores the process may run on (affinity ∩ cgroup quota; hyper-thread siblings count once)
    idle   = cores − round(other load)        other load = 1-minute load average − 1 (this process), ≥ 0
    small  = parameters < SMALL_MODEL_PARAMETERS
    threads = 1 if small else clamp(idle, 1, cores)
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

_log = logging.getLogger("clipo.training")

#: Below this many parameters one thread is used: the matrices are too small for a second thread to pay for its
#: synchronisation (the 2.4M-parameter benchmark model and the demo's model are far below; SmolLM2-135M is above).
SMALL_MODEL_PARAMETERS = 20_000_000


@dataclass(frozen=True)
class CpuInfo:
    """What :func:`choose_threads` needs to know about the machine."""

    logical: int  # CPUs this process may run on
    physical: int  # of those, distinct physical cores
    quota: float | None  # cgroup CPU quota in CPUs (None: no limit)
    load: float  # 1-minute load average of the machine


def choose_threads(parameters: int, cpu: CpuInfo) -> tuple[int, str]:
    """``(threads, why)`` for a model of ``parameters`` on ``cpu`` (see the module docstring for the rule)."""
    cores = max(1, min(cpu.physical, cpu.logical))
    if cpu.quota is not None:
        cores = max(1, min(cores, math.floor(cpu.quota)))
    if parameters < SMALL_MODEL_PARAMETERS:
        return 1, f"{parameters / 1e6:.1f}M parameters: too small to gain from more threads"
    other = max(0.0, cpu.load - 1.0)
    threads = max(1, min(cores, cores - round(other)))
    why = f"{cores} physical core(s) available"
    if threads < cores:
        why += f", {cores - threads} busy (load average {cpu.load:.1f})"
    return threads, why


def _physical_cores(cpus: set[int]) -> int:
    """Distinct hyper-thread sibling groups among ``cpus`` (Linux sysfs; ``len(cpus)`` where unknown)."""
    groups = set()
    for cpu in cpus:
        siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            groups.add(siblings.read_text().strip())
        except OSError:
            return len(cpus)
    return len(groups) or len(cpus)


def _cgroup_quota() -> float | None:
    """The cgroup v2 CPU quota in CPUs (``cpu.max`` = "quota period"), None when unlimited or unknown."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def detect_cpu() -> CpuInfo:
    """This process's :class:`CpuInfo` (affinity, sysfs topology, cgroup quota, load average)."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return CpuInfo(logical=len(cpus), physical=_physical_cores(cpus), quota=_cgroup_quota(), load=load)


def set_threads(requested: int, parameters: int, *, announce: bool) -> int:
    """Apply ``trainer.num_threads`` (``-1`` torch's default, ``0`` :func:`choose_threads` for a model of
    ``parameters``, ``N``) and return the count; when ``announce``, log the choice and how to override it."""
    if requested > 0:
        torch.set_num_threads(requested)
    elif requested == 0:
        threads, why = choose_threads(parameters, detect_cpu())
        torch.set_num_threads(threads)
        if announce:
            _log.info("clipo: %d torch thread(s) (%s; trainer.num_threads=N to override, -1 for torch's default %d)",
                      threads, why, os.cpu_count() or 1)
    return torch.get_num_threads()
