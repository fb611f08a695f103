"""Peak memory of one clipo training step, in total and per phase (rollout, prepare, update).

Run from the repository root::

    python benchmarks/bench_memory.py                     # hidden 256, 4 layers; CLIPO off and on; 32 rollouts x 32 tokens
    python benchmarks/bench_memory.py --hidden 128 --layers 2 --max-new 64

Method: before each phase freed heap is returned to the OS (glibc ``malloc_trim(0)``), then Linux's peak-RSS counter (VmHWM in /proc/self/status) is reset before each phase by writing "5" to
/proc/self/clear_refs, and read after it; "delta" is peak RSS during the phase minus RSS before it. Each
configuration runs in a fresh trainer after one warm-up step (so one-time allocations such as the AdamW state
and lazily imported modules are excluded and the numbers are per steady-state step). torch has no CPU
caching-allocator statistics (``torch.cuda.max_memory_allocated`` is CUDA only), so the tensor-level view is
``torch.profiler`` with ``profile_memory=True``: the operators that allocated the most CPU memory in one step.
On a CUDA machine the same script also prints ``torch.cuda.max_memory_allocated`` per phase.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import warnings

import torch
from _common import clipo_trainer, command_line, machine_line, n_params, prompts_file

warnings.filterwarnings("ignore")


def rss_kib(field: str = "VmRSS") -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def trim() -> None:
    """Give freed heap back to the OS (glibc ``malloc_trim``), so the next phase's RSS growth is its real peak
    and not hidden by memory the allocator kept from an earlier phase."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PhaseMeter:
    def __init__(self):
        self.rows = {}

    def wrap(self, obj, attr, name):
        fn = getattr(obj, attr)

        def wrapped(*a, **k):
            trim()
            before = rss_kib()
            reset_peak()
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            out = fn(*a, **k)
            peak = rss_kib("VmHWM")
            cuda = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
            self.rows[name] = (before, peak, cuda)
            return out

        setattr(obj, attr, wrapped)


def measure(data, clipo_on: bool, model_kw: dict, max_new: int, show_ops: int) -> None:
    trainer = clipo_trainer(data, clipo_on=clipo_on, max_new=max_new, model_kw=model_kw)
    trainer.train_step()  # warm-up: optimizer state, lazy imports
    meter = PhaseMeter()
    meter.wrap(trainer, "collect", "rollout (collect)")
    meter.wrap(trainer, "prepare", "prepare (fwd + head)")
    meter.wrap(trainer, "update", "update (fwd+bwd+opt)")
    trim()
    before = rss_kib()
    reset_peak()
    trainer.train_step()
    whole_peak = max(rss_kib("VmHWM"), *(p for _, p, _ in meter.rows.values()))
    params_mib = n_params(trainer.model) * 4 / 2**20
    print(f"\nCLIPO {'on ' if clipo_on else 'off'}: params {n_params(trainer.model)/1e6:.2f}M ({params_mib:.1f} MiB fp32); "
          f"RSS before step {before/1024:.1f} MiB; peak during step {whole_peak/1024:.1f} MiB; "
          f"step delta {(whole_peak - before)/1024:.1f} MiB")
    for name, (b, p, cuda) in meter.rows.items():
        extra = f"  cuda max_allocated {cuda/2**20:.1f} MiB" if cuda is not None else ""
        print(f"  {name:24s} peak delta {(p - b)/1024:7.1f} MiB  (peak RSS {p/1024:.1f} MiB){extra}")
    if show_ops:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            trainer.train_step()
        print(f"  torch.profiler: top {show_ops} ops by CPU memory allocated (self) in one step")
        table = prof.key_averages().table(sort_by="self_cpu_memory_usage", row_limit=show_ops,
                                          max_name_column_width=40)
        print("\n".join("    " + line for line in table.splitlines()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--max-new", type=int, default=32)
    ap.add_argument("--ops", type=int, default=8, help="profiler rows to show (0: skip the profiler)")
    args = ap.parse_args()
    print(f"command: {command_line()}")
    print(f"machine: {machine_line()}")
    print(f"peak-RSS reset via /proc/self/clear_refs: {'available' if reset_peak() else 'NOT available (deltas are lifetime peaks)'}")
    data = prompts_file()
    model_kw = dict(hidden_size=args.hidden, num_layers=args.layers, intermediate=2 * args.hidden)
    measure(data, False, model_kw, args.max_new, args.ops)
    measure(data, True, model_kw, args.max_new, 0)


if __name__ == "__main__":
    main()
