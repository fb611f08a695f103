"""Cost of the per-step embedding diagnostics (``clipo.diagnostics``, on by default).

Run from the repository root::

    python benchmarks/bench_embedding_diagnostics.py                      # CPU, 1 thread (CLIPO_BENCH_THREADS)
    python benchmarks/bench_embedding_diagnostics.py --run /tmp/diagrun   # also: the share of that run's steps

Times :func:`clipo.core.contrastive.embedding_diagnostics` (pooled states, head outputs, per-rollout loss and
reward; everything the trainer passes) on random inputs at

* the demo's size: 16 prompts × 8 samples, pooled width 96 (the demo model), head width 512;
* the paper's sizes: 128 prompts × 8 samples, width 3584 (Qwen2.5-7B), head width 512 (GSM8K) and 2048 (MATH).

``--device cuda`` times on a GPU (synchronised). With ``--run RUN_DIR`` it also prints the median
``time/diagnostics_s`` and ``time/step_s`` that run logged, i.e. the cost measured inside real steps.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from _common import command_line, machine_line

from clipo.core.contrastive import embedding_diagnostics

SIZES = [  # (label, prompts, samples, pooled width, head width)
    ("demo", 16, 8, 96, 512),
    ("paper GSM8K", 128, 8, 3584, 512),
    ("paper MATH", 128, 8, 3584, 2048),
]


def inputs(prompts: int, samples: int, width: int, head: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n = prompts * samples
    pooled = torch.randn(width, generator=g) + 0.5 * torch.randn(n, width, generator=g)
    z = torch.nn.functional.normalize(torch.randn(n, head, generator=g), dim=-1)
    correct = torch.rand(n, generator=g) < 0.5
    groups = torch.arange(prompts).repeat_interleave(samples)
    lengths = torch.randint(50, 4000, (n,), generator=g)
    losses = torch.rand(n, generator=g) * correct
    rewards = -0.2 * losses
    return [t.to(device) for t in (pooled, correct, groups, lengths, z, losses, rewards)]


def time_call(args: list[torch.Tensor], device: str, repeats: int) -> list[float]:
    pooled, correct, groups, lengths, z, losses, rewards = args
    times = []
    for _ in range(repeats + 1):  # the first call warms up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = embedding_diagnostics(pooled, correct, groups, lengths, head_out=z, losses=losses, rewards=rewards)
        times.append(time.perf_counter() - start)  # the result is already on the host (floats): no sync needed
    assert out
    return times[1:]


def run_folder_costs(run_dir: Path) -> tuple[float, float, int]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    diag = [r["time/diagnostics_s"] for r in rows if r.get("time/diagnostics_s") is not None]
    step = [r["time/step_s"] for r in rows if r.get("time/step_s") is not None]
    return statistics.median(diag), statistics.median(step), len(diag)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--run", type=Path, default=None, help="a run folder whose logged costs to summarise")
    args = ap.parse_args()
    print(command_line())
    print(machine_line())
    print()
    print("| size | rollouts | pooled width | head width | keys | median s / step | min s |")
    print("|---|---|---|---|---|---|---|")
    for label, prompts, samples, width, head in SIZES:
        batch = inputs(prompts, samples, width, head, args.device)
        keys = len(embedding_diagnostics(batch[0], batch[1], batch[2], batch[3], head_out=batch[4],
                                         losses=batch[5], rewards=batch[6]))
        times = time_call(batch, args.device, args.repeats)
        print(f"| {label} | {prompts * samples} | {width} | {head} | {keys} | {statistics.median(times):.4f} | "
              f"{min(times):.4f} |")
    if args.run is not None:
        diag, step, n = run_folder_costs(args.run)
        print(f"\n{args.run}: median over {n} steps: time/diagnostics_s {diag:.4f} s, time/step_s {step:.2f} s "
              f"({100 * diag / step:.2f}% of a step)")


if __name__ == "__main__":
    main()
