"""GRPO + CLIPO with TRL on the CLIPO paper's GSM8K training set, scored by clipo's math verifier.

Needs ``pip install 'clipo[trl]'`` and the paper's ``train/gsm8k.parquet`` (verl's format: a chat ``prompt``,
``data_source`` and ``reward_model.ground_truth``), from the data folder of github.com/Qwen-Applications/CLIPO.

    # a couple of steps on a CPU with clipo's tiny random model (a smoke run: it learns nothing)
    python examples/trl_grpo_clipo.py --data path/to/train/gsm8k.parquet --tiny --max-steps 2

    # the paper's GSM8K setting on a GPU (G = 8, head 512, λ = 0.2), generation with vLLM
    accelerate launch examples/trl_grpo_clipo.py --data path/to/train/gsm8k.parquet \\
        --model Qwen/Qwen2.5-3B-Instruct --use-vllm --max-steps 500

``CLIPO_DATA_DIR=<folder>`` works instead of ``--data`` (the file is then ``<folder>/train/gsm8k.parquet``).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from datasets import load_dataset
from trl import GRPOConfig

from clipo.integrations.trl import CLIPOConfig, CLIPOGRPOTrainer, math_reward


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="the paper's train/gsm8k.parquet (default: $CLIPO_DATA_DIR/train/gsm8k.parquet)")
    ap.add_argument("--model", default="Qwen/Qwen2.5-0.5B-Instruct", help="Hugging Face model id or folder")
    ap.add_argument("--tiny", action="store_true", help="clipo's tiny random model on the CPU (a smoke run)")
    ap.add_argument("--max-steps", type=int, default=500)
    ap.add_argument("--output-dir", default="runs/trl_grpo_clipo")
    ap.add_argument("--prompts-per-step", type=int, default=8, help="prompts per process and step")
    ap.add_argument("--num-generations", type=int, default=8, help="completions per prompt (the group size G)")
    ap.add_argument("--max-completion-length", type=int, default=1024)
    ap.add_argument("--learning-rate", type=float, default=1e-6)
    ap.add_argument("--use-vllm", action="store_true", help="generate with vLLM (colocated on the training GPUs)")
    ap.add_argument("--head-size", type=int, default=512, help="CLIPO head output size (paper: 512 on GSM8K)")
    ap.add_argument("--lam", type=float, default=0.2, help="CLIPO λ: reward = max(−λ·loss·1[correct], −0.5)")
    ap.add_argument("--no-clipo", action="store_true", help="plain GRPO (the baseline), same trainer and data")
    return ap.parse_args(argv)


def data_file(args: argparse.Namespace) -> str:
    path = args.data or (os.path.join(os.environ["CLIPO_DATA_DIR"], "train", "gsm8k.parquet")
                         if os.environ.get("CLIPO_DATA_DIR") else None)
    if path is None or not Path(path).is_file():
        sys.exit(f"--data: {path or '(not given)'} is not a file; pass the CLIPO paper's train/gsm8k.parquet "
                 "(github.com/Qwen-Applications/CLIPO, data folder) or set CLIPO_DATA_DIR to that data folder")
    return path


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    dataset = load_dataset("parquet", data_files=data_file(args), split="train")
    # TRL renders the chat `prompt` with the tokenizer's template; math_reward reads `reward_model` and
    # `data_source`, which TRL passes to reward functions as keyword columns.
    dataset = dataset.remove_columns([c for c in ("ability", "extra_info") if c in dataset.column_names])

    if args.tiny:
        from clipo.models.tiny import build_tiny_model, build_tiny_tokenizer

        torch.set_num_threads(1)
        tokenizer = build_tiny_tokenizer()
        model, processing_class = build_tiny_model(tokenizer, seed=0), tokenizer
        sizes = dict(per_device_train_batch_size=4, num_generations=4, max_completion_length=16)
        head_size = 16
    else:
        model, processing_class = args.model, None  # TRL loads both from the hub id or folder
        batch = args.prompts_per_step * args.num_generations
        sizes = dict(per_device_train_batch_size=batch, num_generations=args.num_generations,
                     max_completion_length=args.max_completion_length)
        head_size = args.head_size
    gpu = torch.cuda.is_available() and not args.tiny
    config = GRPOConfig(
        output_dir=args.output_dir, max_steps=args.max_steps, learning_rate=args.learning_rate, beta=0.0,
        temperature=1.0, logging_steps=1, save_steps=max(args.max_steps // 5, 1), save_total_limit=2,
        bf16=gpu, use_cpu=not gpu, gradient_checkpointing=gpu, report_to="none", seed=0,
        use_vllm=args.use_vllm, vllm_mode="colocate", **sizes)
    trainer = CLIPOGRPOTrainer(
        model=model, reward_funcs=[math_reward], args=config, train_dataset=dataset,
        processing_class=processing_class,
        clipo_config=CLIPOConfig(enabled=not args.no_clipo, head_size=head_size, lam=args.lam))
    trainer.train()
    trainer.save_model(args.output_dir)  # the policy, and the head in <output_dir>/clipo_head


if __name__ == "__main__":
    main()
