"""CPU step time of trainer.precision=bf16-mixed vs fp32 (the same trainer otherwise).

Run from the repository root::

    python benchmarks/bench_precision.py               # 12 measured pairs after 2 warm-up pairs
    python benchmarks/bench_precision.py --steps 20

Two ``RLTrainer``s on the benchmark workload of ``_common.py`` (tiny Qwen2, hidden 256, 4 layers, GRPO, no KL,
B=4 x G=8, 32 forced response tokens, one update per step, 1 torch thread), identical except
``trainer.precision``. Their ``train_step()`` calls alternate (fp32, mixed, mixed, fp32, ... the order flips every
pair). Reported: the median step and phase times of each (rollout = generation under autocast, forward = the
no-grad log-prob/embedding pass, update = training forward + backward + AdamW), and the median of the paired
ratios mixed/fp32. On CPU, bf16 autocast only pays where the CPU has bf16 matrix instructions (AMX, or
avx512_bf16), and the casts of the weights at every autocast region cost time of their own. On a CPU, bf16-mixed
computes the attention kernel in float32 (clipo.models.attention): PyTorch's CPU attention is slower in bf16.
"""
from __future__ import annotations

import argparse
import time
import warnings

from _common import clipo_trainer, command_line, iqr, machine_line, median, n_params, prompts_file

warnings.filterwarnings("ignore")

PHASES = ("time/rollout_s", "time/forward_s", "time/update_s")


def cpu_bf16_flags() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return " ".join(sorted(f for f in flags if f.startswith("amx") or f.endswith("bf16"))) or "none"
    except OSError:
        pass
    return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()

    data = prompts_file()
    # both pinned: the default, trainer.precision=auto, is one of the two depending on the CPU
    trainers = {"fp32": clipo_trainer(data, extra=("trainer.precision=fp32",)),
                "bf16-mixed": clipo_trainer(data, extra=("trainer.precision=bf16-mixed",))}
    times: dict[str, list[float]] = {name: [] for name in trainers}
    phases: dict[str, dict[str, list[float]]] = {name: {p: [] for p in PHASES} for name in trainers}
    for i in range(args.warmup + args.steps):
        names = list(trainers) if i % 2 == 0 else list(trainers)[::-1]
        for name in names:
            t0 = time.perf_counter()
            metrics = trainers[name].train_step()
            dt = time.perf_counter() - t0
            if i < args.warmup:
                continue
            times[name].append(dt)
            for p in PHASES:
                phases[name][p].append(float(metrics[p]))
    ratios = [m / f for f, m in zip(times["fp32"], times["bf16-mixed"])]
    print(f"command: {command_line()}")
    print(f"machine: {machine_line()}; cpu bf16 flags: {cpu_bf16_flags()}")
    print(f"model: qwen2 {n_params(trainers['fp32'].model)/1e6:.2f}M params; 32 rollouts x 32 tokens/step; "
          f"{args.steps} pairs after {args.warmup} warm-up")
    for name, ts in times.items():
        parts = "  ".join(f"{p.split('/')[1][:-2]} {1000 * median(phases[name][p]):.0f} ms" for p in PHASES)
        print(f"{name:>10} step: median {median(ts):.3f}s  IQR {iqr(ts)[0]:.3f}-{iqr(ts)[1]:.3f}   ({parts})")
    phase_ratios = "  ".join(f"{p.split('/')[1][:-2]} {median(phases['bf16-mixed'][p]) / median(phases['fp32'][p]):.2f}"
                             for p in PHASES)
    verdict = "faster" if median(ratios) < 1 else "slower"
    print(f"bf16-mixed/fp32 paired step ratio: median {median(ratios):.3f}  (IQR {iqr(ratios)[0]:.3f}-{iqr(ratios)[1]:.3f}) "
          f"-> bf16-mixed is {verdict} on this CPU; per phase (ratio of medians): {phase_ratios}")


if __name__ == "__main__":
    main()
