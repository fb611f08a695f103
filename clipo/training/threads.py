"""How many torch CPU threads to use when ``trainer.num_threads=0`` (auto).

Why it matters: torch's default is one intra-op thread per logical CPU. Every parallel op then ends in an OpenMP
barrier that waits for the slowest thread; when other work occupies a core, a descheduled thread stalls every op.
Measured on this project's 2-core machine: the demo took 682 s with the default and 121 s with one thread while
another job ran beside it (issue 14); on the idle machine two threads were faster than one even for the demo's
0.3M-parameter model (median step 0.45–0.60 s against 0.63–0.70 s) and no slower for an 88K-parameter test model,
so model size does not enter the rule; only cores that are free do.

The rule (:func:`choose_threads`):

    cores   = physical cores the process may run on (affinity ∩ cgroup quota; hyper-thread siblings count once)
    other   = CPUs kept busy by other processes, sampled over 0.3 s from /proc/stat minus this process's own
              time (/proc/self/stat); where /proc is missing, max(0, 1-minute load average − 1)
    threads = clamp(cores − round(other), 1, cores)

The load average alone misleads: it trails by a minute, so right after another job (or this process's own
warm-start) it still counts work that has stopped.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

_log = logging.getLogger("clipo.training")
_announced: dict[str, tuple[int, str]] = {}
_decided: dict[str, tuple[int, str]] = {}

@dataclass(frozen=True)
class CpuInfo:
    """What :func:`choose_threads` needs to know about the machine."""

    logical: int  # CPUs this process may run on
    physical: int  # of those, distinct physical cores
    quota: float | None  # cgroup CPU quota in CPUs (None: no limit)
    other: float  # CPUs busy with other processes' work (see the module docstring)


def choose_threads(cpu: CpuInfo) -> tuple[int, str]:
    """``(threads, why)`` on ``cpu`` (see the module docstring for the rule)."""
    cores = max(1, min(cpu.physical, cpu.logical))
    if cpu.quota is not None:
        cores = max(1, min(cores, math.floor(cpu.quota)))
    threads = max(1, min(cores, cores - round(cpu.other)))
    why = f"{cores} physical core(s) available"
    if threads < cores:
        why += f", {cpu.other:.1f} busy with other work"
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


def _busy_jiffies() -> tuple[int, int, int]:
    """(busy, total) CPU time of the whole machine from ``/proc/stat`` and this process's own (``/proc/self/stat``),
    in clock ticks."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return sum(fields[:8]) - idle, sum(fields[:8]), int(own[11]) + int(own[12])  # utime + stime


def other_busy_cpus(interval: float = 0.3) -> float:
    """How many CPUs other processes keep busy, sampled over ``interval`` seconds (this process's time excluded);
    the 1-minute load average minus one where ``/proc`` cannot be read."""
    try:
        busy0, total0, own0 = _busy_jiffies()
        time.sleep(interval)
        busy1, total1, own1 = _busy_jiffies()
    except (OSError, ValueError, IndexError):
        try:
            return max(0.0, os.getloadavg()[0] - 1.0)
        except OSError:
            return 0.0
    cpus = os.cpu_count() or 1
    elapsed = (total1 - total0) / cpus  # ticks of one CPU
    return max(0.0, (busy1 - busy0 - (own1 - own0)) / elapsed) if elapsed > 0 else 0.0


def detect_cpu() -> CpuInfo:
    """This process's :class:`CpuInfo` (affinity, sysfs topology, cgroup quota, other processes' CPU use)."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    return CpuInfo(logical=len(cpus), physical=_physical_cores(cpus), quota=_cgroup_quota(), other=other_busy_cpus())


def set_threads(requested: int, *, announce: bool) -> int:
    """Apply ``trainer.num_threads`` (``-1`` torch's default, ``0`` :func:`choose_threads`, ``N``) and return the
    count; when ``announce``, log the choice and how to override it."""
    if requested > 0:
        torch.set_num_threads(requested)
    elif requested == 0:
        # Decided once per process, so that every phase (warm-start, training, evaluation) uses the same count.
        if "choice" not in _decided:
            _decided["choice"] = choose_threads(detect_cpu())
        threads, why = _decided["choice"]
        torch.set_num_threads(threads)
        if announce and _announced.get("choice") != (threads, why):  # once per process and choice
            _announced["choice"] = (threads, why)
            _log.info("clipo: %d torch thread(s) (%s; trainer.num_threads=N to override, -1 for torch's default %d)",
                      threads, why, os.cpu_count() or 1)
    return torch.get_num_threads()
