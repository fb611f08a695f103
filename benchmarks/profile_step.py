"""Where one clipo training step spends its time, by phase and by function / operator.

Run from the repository root::

    python benchmarks/profile_step.py                 # CLIPO on, 5 measured steps after 1 warm-up
    python benchmarks/profile_step.py --clipo off --steps 8 --top 25

Same tiny model and step as the other benchmarks (GRPO, no KL, B=4 x G=8, 32 forced response tokens, one
update). Phases, medians over ``--steps`` steps:

* rollout  = ``engine.generate`` (tokenize, ``model.generate``, decode)     [timed by wrapping it]
* verify   = ``trainer.score`` (the reward function)                         [timed by wrapping it]
* collect other = the rest of the trainer's ``time/rollout_s`` (group filtering, batching)
* forward  = the trainer's ``time/forward_s`` (no-grad old-log-prob + entropy + pooled forward)
* head     = the trainer's ``time/head_s`` (CLIPO head step + contrastive reward)
* prepare other = the rest of ``prepare`` (advantages, batch assembly)
* update   = the trainer's ``time/update_s`` (training forward + backward + clip + AdamW)
* step other = wall time of ``train_step`` not in the above (step metrics)

Then one more step under ``cProfile`` (top functions by cumulative and by own time) and one under
``torch.profiler`` (top operators by self CPU time).
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
import warnings

from _common import clipo_trainer, command_line, machine_line, median, n_params, prompts_file

warnings.filterwarnings("ignore")


def timed(store: list, fn):
    def wrapped(*a, **k):
        t0 = time.perf_counter()
        out = fn(*a, **k)
        store.append(time.perf_counter() - t0)
        return out
    return wrapped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clipo", choices=("on", "off"), default="on")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()

    trainer = clipo_trainer(prompts_file(), clipo_on=args.clipo == "on")
    gen, ver, prep = [], [], []
    trainer.engine.generate = timed(gen, trainer.engine.generate)
    trainer.score = timed(ver, trainer.score)
    trainer.prepare = timed(prep, trainer.prepare)
    trainer.train_step()
    gen.clear(); ver.clear(); prep.clear()
    rows = {k: [] for k in ("rollout", "verify", "collect other", "forward", "head", "prepare other", "update",
                            "step other", "step total")}
    for _ in range(args.steps):
        t0 = time.perf_counter()
        m = trainer.train_step()
        total = time.perf_counter() - t0
        g, v, p = gen.pop(), ver.pop(), prep.pop()
        fwd, head = float(m["time/forward_s"]), float(m.get("time/head_s", 0.0))
        rows["rollout"].append(g)
        rows["verify"].append(v)
        rows["collect other"].append(float(m["time/rollout_s"]) - g - v)
        rows["forward"].append(fwd)
        rows["head"].append(head)
        rows["prepare other"].append(p - fwd - head)
        rows["update"].append(float(m["time/update_s"]))
        rows["step other"].append(total - float(m["time/rollout_s"]) - p - float(m["time/update_s"]))
        rows["step total"].append(total)
    print(f"command: {command_line()}")
    print(f"machine: {machine_line()}")
    print(f"model: qwen2 {n_params(trainer.model)/1e6:.2f}M params; CLIPO {args.clipo}; 32 rollouts x 32 tokens; "
          f"medians of {args.steps} steps after 1 warm-up")
    step = median(rows["step total"])
    for name, xs in rows.items():
        print(f"  {name:14s} {1000 * median(xs):8.1f} ms  {100 * median(xs) / step:5.1f}% of median step")

    prof = cProfile.Profile()
    prof.enable()
    trainer.train_step()
    prof.disable()
    for key in ("cumulative", "tottime"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(args.top)
        print(f"\ncProfile, one step, top {args.top} by {key}:")
        print("\n".join(line for line in buf.getvalue().splitlines()[4:] if line.strip()))

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as tprof:
        trainer.train_step()
    print(f"\ntorch.profiler, one step, top {args.top} operators by self CPU time:")
    print(tprof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=45))


if __name__ == "__main__":
    main()
