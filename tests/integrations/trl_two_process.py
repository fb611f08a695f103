"""Run by tests/integrations/test_trl.py under `torchrun --nproc_per_node 2` (CPU, gloo): train CLIPOGRPOTrainer for
2 steps with each prompt's 4 completions split over the 2 processes, once with embedding_forward="auto" (single pass:
the states come from TRL's training forward) and once with "extra" (one extra no-grad forward), and save each
process's heads and policies to <out>/rank<r>.pt with the number of rows each head step saw."""
from __future__ import annotations

import sys

import torch
from datasets import Dataset
from trl import GRPOConfig

from clipo.integrations.trl import CLIPOConfig, CLIPOGRPOTrainer
from clipo.models.tiny import build_tiny_model, build_tiny_tokenizer


def rank_reward(prompts, completions, **_):
    """Row 0 of each process correct, row 1 not: every group (spread over both processes) is mixed."""
    return [float(i % 2 == 0) for i in range(len(completions))]


def train(out: str, embedding_forward: str) -> dict:
    torch.set_num_threads(1)
    tokenizer = build_tiny_tokenizer()
    dataset = Dataset.from_dict({"prompt": ["1+1=", "2+3=", "7*6=", "9-4="] * 4})
    args = GRPOConfig(output_dir=out, per_device_train_batch_size=2, num_generations=4, max_completion_length=6,
                      max_steps=2, logging_steps=1, bf16=False, report_to="none", use_cpu=True, save_strategy="no",
                      seed=0, learning_rate=1e-3, gradient_checkpointing=False, ddp_backend="gloo")
    trainer = CLIPOGRPOTrainer(model=build_tiny_model(tokenizer, seed=0), reward_funcs=[rank_reward], args=args,
                               train_dataset=dataset, processing_class=tokenizer,
                               clipo_config=CLIPOConfig(head_size=16), embedding_forward=embedding_forward)
    initial = {k: v.clone() for k, v in trainer.head_trainer.head.state_dict().items()}
    rows_seen = []
    step = trainer.head_trainer.step

    def counting_step(hidden, *a, **k):
        rows_seen.append(hidden.shape[0])
        return step(hidden, *a, **k)

    trainer.head_trainer.step = counting_step
    trainer.train()
    single_pass = [entry["clipo/single_pass"] for entry in trainer.state.log_history if "clipo/single_pass" in entry]
    return {"head": trainer.head_trainer.head.state_dict(), "initial": initial, "rows_seen": rows_seen,
            "steps_done": trainer.head_trainer.steps_done, "single_pass": single_pass,
            "policy": {k: v.detach().clone() for k, v in trainer.model.named_parameters()},
            "rank": trainer.accelerator.process_index}


def main(out: str) -> None:
    runs = {mode: train(out, mode) for mode in ("auto", "extra")}
    torch.save(runs, f"{out}/rank{runs['auto']['rank']}.pt")


if __name__ == "__main__":
    main(sys.argv[1])
