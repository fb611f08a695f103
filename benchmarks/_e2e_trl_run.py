"""One whole TRL ``GRPOTrainer`` run, as a user script would be (used by bench_e2e_vs_trl.py; not a benchmark itself).

    python benchmarks/_e2e_trl_run.py --model DIR [--gguf FILE] --data FILE.jsonl --steps N --out DIR ...
"""
import argparse
import json
import sys
import time
from pathlib import Path

START = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-new", type=int, default=32)
    ap.add_argument("--micro", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 or -1: torch's default)")
    ap.add_argument("--reward", choices=("parity", "math"), default="parity")
    ap.add_argument("--bf16", action="store_true", help="TRL's default bf16=True (autocast) instead of fp32")
    args = ap.parse_args()

    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    import _e2e_reward
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    kwargs = {"gguf_file": args.gguf} if args.gguf else {}
    tokenizer = AutoTokenizer.from_pretrained(args.model, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32, **kwargs)
    if args.gguf:  # transformers de-quantizes GGUF weights but leaves its quantizer attached, which Trainer refuses
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.is_quantized = False
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line.strip()]
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}], "answer": r["answer"]}
                                 for r in rows])
    rollouts = args.prompts * args.n
    config = GRPOConfig(
        output_dir=args.out, per_device_train_batch_size=args.micro, gradient_accumulation_steps=rollouts // args.micro,
        steps_per_generation=rollouts // args.micro, num_generations=args.n, num_iterations=1,
        max_completion_length=args.max_new, temperature=1.0, top_p=1.0, top_k=0, beta=0.0,
        learning_rate=args.lr, weight_decay=0.0, lr_scheduler_type="constant", max_grad_norm=1.0,
        max_steps=args.steps, save_strategy="no", eval_strategy="no", report_to="none",
        use_cpu=True, bf16=args.bf16, fp16=False, gradient_checkpointing=False, seed=0, dataloader_num_workers=0)
    reward = _e2e_reward.trl_math if args.reward == "math" else _e2e_reward.trl_parity
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=dataset,
                          processing_class=tokenizer)
    trainer.train()
    lengths = trainer._metrics["train"].get("completions/mean_length", [])
    print(json.dumps({"wall_s": time.perf_counter() - START,
                      "mean_length": sum(lengths) / len(lengths) if lengths else None}))


if __name__ == "__main__":
    main()
