"""Step time of clipo's ``RLTrainer.train_step`` vs TRL's ``GRPOTrainer`` on identical work (CPU, fp32).

Run from the repository root (needs ``pip install trl``)::

    python benchmarks/bench_vs_trl.py                  # 12 measured steps each after 2 warm-up steps
    python benchmarks/bench_vs_trl.py --steps 20 --prompts 4 --n 8 --max-new 32
    python benchmarks/bench_vs_trl.py --whatif         # + clipo with the old-log-prob forward skipped
    python benchmarks/bench_vs_trl.py --unshared       # + clipo with both prompt-sharing options off

Identical settings on both sides: the same tiny Qwen2-style model (same config, same seed, so the same initial
weights; hidden 256, 4 layers, 2.4M params, char-level tokenizer from ``clipo.models.tiny``), the same chat-rendered prompts,
B=4 prompts x G=8 samples = 32 rollouts per step, exactly ``--max-new`` response tokens for every rollout (EOS
and pad get a -1e4 logit bias, so neither ever stops early), sampling at T=1, top_p=1, top_k=0, all 32 rollouts
generated in one ``generate`` call, one optimizer step per RL step (one mini-batch, one micro-batch of 32, no
gradient accumulation, no gradient checkpointing: TRL's GRPOConfig turns it on by default since 1.x and
this benchmark turns it off; figures measured before 2026-12-01 evening had it on), no KL (beta=0, no reference model), no CLIPO, AdamW lr 1e-5 wd 0, grad clip 1.0, same
parity reward, no logging/eval/checkpoints, fp32 on CPU, same process and same torch thread count.

Known asymmetries (part of what is compared): with one update per batch TRL skips the separate no-grad "old
log-prob" forward (it uses ``logp.detach()``); clipo reuses that forward as the training forward when the update
is on-policy (``trainer.fuse_on_policy_forward``). clipo computes each group's prompt once, in generation
(``HFGenerateEngine(share_prompt_prefill=True)``) and in the teacher-forced forward
(``trainer.share_prompt_forward``); ``--unshared`` adds a third contender with both off.

Interleaving: TRL's training loop drives the run, and a TRL callback runs one clipo step after every TRL step,
so the two alternate A B A B ... and machine noise hits both alike. TRL's step time is the wall time between
the end of the previous callback and the start of the next one (data loading, generation, scoring, forward,
backward, optimizer, TRL bookkeeping); clipo's is the wall time of ``train_step()``. Reported: medians and the
median of the per-pair ratios clipo/TRL. Goal (issue): ratio <= 0.70.
"""
from __future__ import annotations

import argparse
import tempfile
import time
import warnings

from _common import (
    build,
    clipo_trainer,
    command_line,
    iqr,
    machine_line,
    median,
    n_params,
    parity_reward,
    prompt_rows,
    prompts_file,
)

warnings.filterwarnings("ignore")


def trl_reward(prompts=None, completions=None, **kwargs):
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [parity_reward(t) for t in texts]


def skip_old_logp_forward(trainer) -> None:
    """What-if patch (CLIPO off, ppo_epochs = mini_batches = 1 only): drop the no-grad old-log-prob forward in
    ``prepare`` and use ``logp.detach()`` as the old log-probs in the loss, as TRL does. Same loss value and
    gradient (the policy is unchanged between rollout and update; Qwen2 has no dropout)."""
    import torch

    from clipo.models.forward import ForwardOutput

    real_forward, real_loss = trainer._forward, trainer.loss_fn

    def forward(model, rollouts, *, with_grad=False, rows=None, compute_entropy=False):
        if with_grad:
            return real_forward(model, rollouts, with_grad=True, rows=rows, compute_entropy=compute_entropy)
        n, width = rollouts.response_ids.shape
        zeros = torch.zeros(n, width)
        return ForwardOutput(logp=zeros, entropy=zeros, pooled=torch.zeros(n, 1))

    trainer._forward = forward
    trainer.loss_fn = lambda logp, old, adv, mask, count: real_loss(logp, logp.detach(), adv, mask, count)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12, help="measured steps per contender")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-new", type=int, default=32)
    ap.add_argument("--unshared", action="store_true",
                    help="also time clipo with share_prompt_prefill and trainer.share_prompt_forward off")
    ap.add_argument("--whatif", action="store_true",
                    help="also time clipo with the old-log-prob forward skipped (see skip_old_logp_forward)")
    args = ap.parse_args()

    import trl
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    rows = prompt_rows()
    data = prompts_file(rows)
    clipo = clipo_trainer(data, prompts=args.prompts, n=args.n, max_new=args.max_new, clipo_on=False)
    patched = None
    if args.whatif:
        patched = clipo_trainer(data, prompts=args.prompts, n=args.n, max_new=args.max_new, clipo_on=False)
        skip_old_logp_forward(patched)
    unshared = None
    if args.unshared:
        unshared = clipo_trainer(data, prompts=args.prompts, n=args.n, max_new=args.max_new, clipo_on=False,
                                 extra=("trainer.share_prompt_forward=false",))
        unshared.engine.share_prompt_prefill = False
    tok, model = build(0)
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}], "answer": r["answer"]}
                                 for r in rows])
    total = args.steps + args.warmup
    n_rollouts = args.prompts * args.n
    trl_args = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="trl_bench_"), per_device_train_batch_size=n_rollouts,
        gradient_accumulation_steps=1, steps_per_generation=1, num_generations=args.n, num_iterations=1,
        max_completion_length=args.max_new, temperature=1.0, top_p=1.0, top_k=0, beta=0.0,
        learning_rate=1e-5, weight_decay=0.0, lr_scheduler_type="constant", max_grad_norm=1.0, optim="adamw_torch",
        max_steps=total, logging_steps=10**9, save_strategy="no", eval_strategy="no", report_to="none",
        disable_tqdm=True, use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False, seed=0, log_completions=False,
        dataloader_num_workers=0)

    trl_times, clipo_times, patched_times, unshared_times, tokens = [], [], [], [], {"trl": [], "clipo": []}
    state = {"t_end": None}

    class Interleave(TrainerCallback):
        def on_step_end(self, _args, st, control, **kw):
            now = time.perf_counter()
            if state["t_end"] is not None:
                trl_times.append(now - state["t_end"])
            lengths = trainer._metrics["train"].get("completions/mean_length", [])
            tokens["trl"].append(lengths[-1] if lengths else float("nan"))
            runs = [(name, tr) for name, tr in (("clipo", clipo), ("patched", patched), ("unshared", unshared))
                    if tr is not None]
            if st.global_step % 2 == 0:
                runs = runs[::-1]
            for name, tr in runs:
                t0 = time.perf_counter()
                m = tr.train_step()
                {"clipo": clipo_times, "patched": patched_times, "unshared": unshared_times}[name].append(
                    time.perf_counter() - t0)
                if name == "clipo":
                    tokens["clipo"].append(float(m["response/length_mean"]))
            state["t_end"] = time.perf_counter()

    trainer = GRPOTrainer(model=model, reward_funcs=trl_reward, args=trl_args, train_dataset=dataset,
                          processing_class=tok, callbacks=[Interleave()])
    # The first TRL step has no start mark (before the loop): measure from train() entry.
    state["t_end"] = time.perf_counter()
    trainer.train()

    # Pair TRL step k with the clipo step run right after it; drop warm-up pairs.
    pairs = list(zip(trl_times, clipo_times))[args.warmup:]
    ratios = [c / t for t, c in pairs]
    trl_m, clipo_m = [t for t, _ in pairs], [c for _, c in pairs]
    print(f"command: {command_line()}")
    print(f"machine: {machine_line()} trl={trl.__version__}")
    print(f"model: qwen2 {n_params(model)/1e6:.2f}M params; B={args.prompts} G={args.n} -> {n_rollouts} rollouts x "
          f"{args.max_new} new tokens/step; {len(pairs)} measured pairs after {args.warmup} warm-up")
    print(f"response length mean (tokens): trl={median(tokens['trl'][args.warmup:]):.1f} "
          f"clipo={median(tokens['clipo'][args.warmup:]):.1f}")
    print(f"TRL   step: median {median(trl_m):.3f}s  IQR {iqr(trl_m)[0]:.3f}-{iqr(trl_m)[1]:.3f}")
    print(f"clipo step: median {median(clipo_m):.3f}s  IQR {iqr(clipo_m)[0]:.3f}-{iqr(clipo_m)[1]:.3f}")
    print(f"clipo/TRL step-time ratio: median of paired ratios {median(ratios):.3f}  "
          f"(IQR {iqr(ratios)[0]:.3f}-{iqr(ratios)[1]:.3f}); goal <= 0.70 -> "
          f"{'MET' if median(ratios) <= 0.70 else 'NOT MET'}")
    if unshared_times:
        u = unshared_times[args.warmup:]
        ur = [c / t for (t, _), c in zip(pairs, u)]
        print(f"clipo with prompt sharing off: median {median(u):.3f}s; ratio to TRL {median(ur):.3f} "
              f"(IQR {iqr(ur)[0]:.3f}-{iqr(ur)[1]:.3f}); clipo (shared) / clipo (unshared): median of paired ratios "
              f"{median([a / b for a, b in zip(clipo_m, u)]):.3f}")
    if patched_times:
        p = patched_times[args.warmup:]
        pr = [c / t for (t, _), c in zip(pairs, p)]
        print(f"what-if clipo without the old-log-prob forward: median {median(p):.3f}s; ratio to TRL "
              f"{median(pr):.3f} (IQR {iqr(pr)[0]:.3f}-{iqr(pr)[1]:.3f}); ratio to stock clipo "
              f"{median([a / b for a, b in zip(p, clipo_m)]):.3f}")


if __name__ == "__main__":
    main()
