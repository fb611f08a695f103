"""Step-time overhead of CLIPO (contrastive head step + reward) over the same trainer with CLIPO off.

Run from the repository root::

    python benchmarks/bench_clipo_overhead.py               # 12 measured pairs after 2 warm-up pairs
    python benchmarks/bench_clipo_overhead.py --steps 20

Two ``RLTrainer``s, identical except ``clipo.enabled`` (same tiny model and seed, GRPO, no KL, B=4 x G=8,
32 forced response tokens, one update per step). Their ``train_step()`` calls alternate (off, on, on, off, ...
the order flips every pair) so machine noise hits both alike. Reported:

* median of the paired ratios on/off of the whole step (goal: <= 1.03), which on a shared 2-core machine is
  noisy at the percent level;
* the direct cost: the trainer's own ``time/head_s`` (head step + contrastive reward, the only extra work
  CLIPO adds) as a share of the CLIPO-on step, which is far less sensitive to noise.
"""
from __future__ import annotations

import argparse
import time
import warnings

from _common import clipo_trainer, command_line, iqr, machine_line, median, n_params, prompts_file

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--head-size", type=int, default=512, help="clipo.head_size (paper: 512 on GSM8K)")
    args = ap.parse_args()

    data = prompts_file()
    off = clipo_trainer(data, clipo_on=False)
    on = clipo_trainer(data, clipo_on=True, extra=(f"clipo.head_size={args.head_size}",))
    t_off, t_on, head_s, head_share = [], [], [], []
    for i in range(args.warmup + args.steps):
        order = [("off", off), ("on", on)] if i % 2 == 0 else [("on", on), ("off", off)]
        for name, trainer in order:
            t0 = time.perf_counter()
            m = trainer.train_step()
            dt = time.perf_counter() - t0
            if i < args.warmup:
                continue
            if name == "off":
                t_off.append(dt)
            else:
                t_on.append(dt)
                head_s.append(float(m["time/head_s"]))
                head_share.append(float(m["time/head_s"]) / dt)
    ratios = [b / a for a, b in zip(t_off, t_on)]
    print(f"command: {command_line()}")
    print(f"machine: {machine_line()}")
    print(f"model: qwen2 {n_params(off.model)/1e6:.2f}M params; 32 rollouts x 32 tokens/step; head {on.config.clipo.head_kind} "
          f"D={args.head_size} loss={on.config.clipo.loss_kind}; {args.steps} pairs after {args.warmup} warm-up")
    print(f"CLIPO off step: median {median(t_off):.3f}s  IQR {iqr(t_off)[0]:.3f}-{iqr(t_off)[1]:.3f}")
    print(f"CLIPO on  step: median {median(t_on):.3f}s  IQR {iqr(t_on)[0]:.3f}-{iqr(t_on)[1]:.3f}")
    print(f"on/off paired ratio: median {median(ratios):.4f}  (IQR {iqr(ratios)[0]:.3f}-{iqr(ratios)[1]:.3f}) "
          f"-> overhead {100 * (median(ratios) - 1):+.1f}%")
    print(f"direct CLIPO cost time/head_s: median {1000 * median(head_s):.1f} ms = {100 * median(head_share):.2f}% "
          f"of the CLIPO-on step")
    ok = median(head_share) <= 0.03
    print(f"goal overhead <= 3%: direct cost {'MET' if ok else 'NOT MET'}; whole-step paired ratio "
          f"{'MET' if median(ratios) <= 1.03 else 'NOT MET (see IQR: noise)'}")


if __name__ == "__main__":
    main()
