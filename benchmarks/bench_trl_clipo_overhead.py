"""Step-time overhead of ``CLIPOGRPOTrainer`` over TRL's plain ``GRPOTrainer`` on the same workload.

Run from the repository root (needs ``pip install 'clipo[trl]'``)::

    python benchmarks/bench_trl_clipo_overhead.py                            # 8 rounds x 7 steps, single pass
    python benchmarks/bench_trl_clipo_overhead.py --embedding-forward extra  # one extra no-grad forward
    python benchmarks/bench_trl_clipo_overhead.py --num-iterations 2         # TRL runs its old-log-prob forward

Two trainers, identical except CLIPO (the benchmark's tiny model, 256 wide and 4 layers, EOS never sampled so
every completion has exactly ``--tokens`` tokens; B=4 prompts x G=8, one optimizer step per generation, no
KL, 1 torch thread). Each round runs ``train()`` for ``--steps`` steps on each trainer, the order flipping every
round so machine noise hits both alike; TRL's own ``step_time`` (generation + rewards + update) is read from the
logs, the first step of each ``train()`` dropped, and averaged per round. Reported:

* the median over rounds of the ratio CLIPO / plain of the mean step time (goal: <= 1.05), with its spread;
* the direct cost, far less noisy: the time of CLIPO's own additions (the embedding forward when one is needed,
  the head step with its gather, in single pass also the advantages redone) per generation batch as a share of
  the CLIPO step time per generation batch (the hook's pooling inside TRL's forward is not in it).

Three regimes, as ``CLIPOGRPOTrainer`` picks them (docs/trl.md):

* single pass (the default here: ``--num-iterations 1``, ``gradient_accumulation_steps=1`` so each generation
  batch is one micro-batch, HF generation): the states are read from TRL's own training forward, no extra forward;
* ``--embedding-forward extra`` with ``--num-iterations 1``: TRL runs no no-grad forward of the policy, so CLIPO
  adds one (``pooled_embeddings``) -- the fallback whenever a generation batch spans several micro-batches;
* ``--num-iterations 2`` (or vLLM with its importance-sampling correction, TRL's default there): TRL runs its
  old-log-prob forward and CLIPO reads the states from it.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings

from _common import build, command_line, iqr, machine_line, median, n_params, prompt_rows

warnings.filterwarnings("ignore")


def mean(xs: list[float]) -> float:
    return statistics.fmean(xs)


def parity_reward(prompts, completions, **_):
    """~50% correct on random text, so groups mix right and wrong completions (as _common.parity_reward)."""
    return [1.0 if sum(map(ord, c)) % 2 == 0 else 0.0 for c in completions]


def make(clipo_on: bool, args) -> object:
    from datasets import Dataset
    from transformers import PrinterCallback
    from transformers.utils import logging as hf_logging
    from trl import GRPOConfig, GRPOTrainer

    from clipo.integrations.trl import CLIPOConfig, CLIPOGRPOTrainer

    hf_logging.set_verbosity_error()
    tok, model = build(0)
    rows = prompt_rows(256)
    dataset = Dataset.from_dict({"prompt": [r["prompt"] for r in rows]})
    config = GRPOConfig(output_dir=tempfile.mkdtemp(prefix="clipo_bench_trl_"), per_device_train_batch_size=32,
                        num_generations=8, max_completion_length=args.tokens, max_steps=args.steps, logging_steps=1,
                        bf16=False, use_cpu=True, report_to="none", save_strategy="no", learning_rate=1e-5, beta=0.0,
                        gradient_checkpointing=False, disable_tqdm=True, seed=0, num_iterations=args.num_iterations)
    common = dict(model=model, reward_funcs=[parity_reward], args=config, train_dataset=dataset, processing_class=tok)
    if not clipo_on:
        trainer = GRPOTrainer(**common)
        trainer.remove_callback(PrinterCallback)
        return trainer
    trainer = CLIPOGRPOTrainer(**common, clipo_config=CLIPOConfig(head_size=args.head_size),
                               embedding_forward=args.embedding_forward)
    trainer.remove_callback(PrinterCallback)
    # Time CLIPO's own additions; _single_pass_step (single pass) includes its contrastive_step.
    trainer.clipo_seconds = {"pooled_embeddings": [], "contrastive_step": [], "_single_pass_step": []}
    for name in trainer.clipo_seconds:
        original = getattr(trainer, name)

        def timed(*a, _original=original, _name=name, **k):
            start = time.perf_counter()
            out = _original(*a, **k)
            trainer.clipo_seconds[_name].append(time.perf_counter() - start)
            return out

        setattr(trainer, name, timed)
    return trainer


def regime(trainer, extra_forwards: int) -> str:
    """Where the embeddings came from in the last round."""
    if extra_forwards:
        return "one extra no-grad forward"
    if trainer.single_pass_applies():
        return "single pass (read from TRL's training forward)"
    return "read from TRL's old-log-prob forward"


def run(trainer) -> list[float]:
    trainer.train()  # each train() starts a fresh TrainerState (and optimizer); the weights carry on
    times = [e["step_time"] for e in trainer.state.log_history if "step_time" in e]
    return times[1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=7, help="train() steps per trainer and round (the first dropped)")
    ap.add_argument("--tokens", type=int, default=32, help="completion tokens (all completions reach it)")
    ap.add_argument("--num-iterations", type=int, default=1, help="GRPOConfig.num_iterations (updates per generation)")
    ap.add_argument("--head-size", type=int, default=512, help="CLIPOConfig.head_size (paper: 512 on GSM8K)")
    ap.add_argument("--embedding-forward", choices=("auto", "extra"), default="auto",
                    help="CLIPOGRPOTrainer(embedding_forward=...): auto = single pass when it applies")
    args = ap.parse_args()

    plain, clipo = make(False, args), make(True, args)
    ratios, t_plain, t_clipo, direct = [], [], [], []
    for r in range(args.rounds):
        order = [("plain", plain), ("clipo", clipo)] if r % 2 == 0 else [("clipo", clipo), ("plain", plain)]
        got = {}
        for name, trainer in order:
            if name == "clipo":
                for times in trainer.clipo_seconds.values():
                    times.clear()
            got[name] = run(trainer)
        step_plain, step_clipo = mean(got["plain"]), mean(got["clipo"])
        t_plain.append(step_plain)
        t_clipo.append(step_clipo)
        ratios.append(step_clipo / step_plain)
        seconds = clipo.clipo_seconds
        generations = len(seconds["contrastive_step"])  # one head step per generation batch
        extra_forwards = len(seconds["pooled_embeddings"])
        head = sum(seconds["_single_pass_step"]) if seconds["_single_pass_step"] else sum(seconds["contrastive_step"])
        per_generation = (sum(seconds["pooled_embeddings"]) + head) / max(generations, 1)
        direct.append(per_generation / (step_clipo * args.num_iterations))
        print(f"round {r}: plain {step_plain * 1e3:.1f} ms  clipo {step_clipo * 1e3:.1f} ms  "
              f"ratio {ratios[-1]:.3f}  direct {direct[-1]:.1%}", flush=True)

    lo, hi = iqr(ratios)
    dlo, dhi = iqr(direct)
    print(f"\nmodel: tiny Qwen2 {n_params(plain.model) / 1e6:.1f}M params; B=4 x G=8, {args.tokens} completion tokens, "
          f"head_size={args.head_size}, num_iterations={args.num_iterations}; {args.rounds} rounds x {args.steps - 1} "
          f"measured steps per trainer; embedding_forward={args.embedding_forward}: {regime(clipo, extra_forwards)}")
    print(f"step time: plain GRPOTrainer {median(t_plain) * 1e3:.1f} ms, CLIPOGRPOTrainer {median(t_clipo) * 1e3:.1f} ms")
    print(f"overhead (median ratio - 1): {median(ratios) - 1:+.1%}  (IQR {lo - 1:+.1%} .. {hi - 1:+.1%}; goal <= +5%)")
    print(f"direct cost (CLIPO's additions per generation batch) / CLIPO time per generation batch: {median(direct):.1%} (IQR {dlo:.1%} .. {dhi:.1%})")
    print(machine_line())
    print("command:", command_line())


if __name__ == "__main__":
    main()
