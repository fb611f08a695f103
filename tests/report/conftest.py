"""A synthetic run folder, as :class:`clipo.training.trainer.RLTrainer` writes one, for the report tests."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

CLIPO_KEYS = ("contrastive/", "reward/contrastive_")


def write_synthetic_run(root: Path, *, steps: int = 300, clipo: bool = True, kl: bool = True, snapshots: int = 2,
                        eval_every: int = 50, summary: bool = True, seed: int = 0) -> Path:
    """Write metrics.jsonl (NaNs, missing keys), eval.jsonl (two datasets), embeddings/ and config.yaml."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for step in range(1, steps + 1):
        t = step / steps
        acc = float(np.clip(0.3 + 0.45 * t + rng.normal(0, 0.08), 0, 1))
        row = {
            "step": step,
            "reward/mean": acc - 0.05 + rng.normal(0, 0.03),
            "reward/std": 0.45 + rng.normal(0, 0.03),
            "reward/accuracy": acc,
            "reward/verifier_mean": acc,
            "actor/pg_loss": rng.normal(0, 0.1),
            "actor/pg_clipfrac": abs(rng.normal(0.02, 0.01)),
            "actor/entropy": 1.2 - 0.6 * t + rng.normal(0, 0.05),
            "actor/grad_norm": abs(rng.lognormal(0, 0.5)),
            "response/length_mean": 180 + 60 * t + rng.normal(0, 15),
            "response/truncated_rate": abs(rng.normal(0.05, 0.02)),
            "rollout/zero_variance_groups": abs(rng.normal(0.2, 0.05)),
            "time/step_s": 20 + rng.normal(0, 2),
            "time/rollout_s": 12 + rng.normal(0, 1.5),
            "time/update_s": 7 + rng.normal(0, 1),
            "perf/tokens_per_s": 900 + rng.normal(0, 60),
            "task/right_answer_wrong_reasoning": float(np.clip(0.3 - 0.15 * t + rng.normal(0, 0.04), 0, 1)),
        }
        if kl:
            row["actor/kl"] = 0.002 * step ** 0.5 * abs(1 + rng.normal(0, 0.2))
        if clipo:
            skipped = step % 37 == 0
            cc, ci = 0.5 + 0.4 * t, 0.5 - 0.1 * t
            row.update({
                "contrastive/loss": None if skipped else 3.0 * math.exp(-2 * t) + 0.8 + rng.normal(0, 0.1),
                "contrastive/num_anchors": 0.0 if skipped else float(rng.integers(8, 40)),
                "contrastive/skipped": 1.0 if skipped else 0.0,
                "contrastive/cos_correct_correct": cc + rng.normal(0, 0.03),
                "contrastive/cos_correct_incorrect": None if step % 23 == 0 else ci + rng.normal(0, 0.03),
                "contrastive/reward_correct": -0.2 + 0.1 * t + rng.normal(0, 0.02),
                "contrastive/reward_incorrect": -0.3 + rng.normal(0, 0.02),
                "reward/contrastive_correct": -0.2 + 0.1 * t,
                "reward/contrastive_incorrect": -0.3,
            })
        if step % 10 == 0:
            row["actor/entropy"] = None  # a null in the middle of a key
        if step % 17 == 0:
            del row["time/rollout_s"]  # a key absent from some lines
        if step == 5:
            row["actor/grad_norm"] = float("nan")  # a NaN literal, as json.dumps(nan) writes it
        lines.append(json.dumps(row))
    (root / "metrics.jsonl").write_text("\n".join(lines) + "\n")

    with open(root / "eval.jsonl", "w") as handle:
        for step in range(0, steps + 1, eval_every):
            t = step / steps
            results = {
                "gsm8k_test": {"num_prompts": 200, "samples_per_prompt": 4, "accuracy": 0.35 + 0.3 * t, "pass@4": 0.6 + 0.2 * t},
                "math500": {"num_prompts": 500, "samples_per_prompt": 4, "accuracy": 0.2 + 0.15 * t, "pass@4": 0.4 + 0.1 * t},
            }
            handle.write(json.dumps({"step": step, "results": results}) + "\n")

    if snapshots:
        folder = root / "embeddings"
        folder.mkdir(exist_ok=True)
        n, groups, hidden, dim = 64, 8, 32, 16
        for step in np.linspace(1, steps, snapshots).round().astype(int):
            sep = 3.0 * step / steps
            correct = torch.from_numpy(rng.random(n) < 0.5)
            process_ok = correct & torch.from_numpy(rng.random(n) < 0.8)
            base = torch.from_numpy(rng.normal(size=(n, dim))).float()
            z = torch.nn.functional.normalize(base + sep * correct.float()[:, None] * torch.ones(dim), dim=-1)
            snap = {"step": int(step), "pooled": torch.from_numpy(rng.normal(size=(n, hidden))).half(),
                    "correct": correct, "group_ids": torch.arange(n) // (n // groups),
                    "contrastive_reward": torch.where(correct, -0.1, -0.3).float(),
                    "extras": {"process_ok": process_ok}}
            if clipo:
                snap["z"] = z
            torch.save(snap, folder / f"step_{int(step):06d}.pt")

    clipo_section = ("  enabled: true\n  head_kind: mlp\n  head_size: 128\n  loss_kind: infonce\n  level: group\n"
                     "  temperature: 0.05\n  lam: 0.2\n  reward: clipo\n" if clipo else "  enabled: false\n")
    (root / "config.yaml").write_text(
        "model:\n  name_or_path: Qwen/Qwen2.5-Math-1.5B\n  dtype: bfloat16\n  lora_r: 0\n"
        "data:\n  train: data/math_train.parquet\n  eval:\n  - data/gsm8k_test.parquet\n  - data/math500.parquet\n"
        "reward:\n  verifier: math\n  mode: robust\n"
        f"algorithm:\n  name: grpo\n  eps_low: 0.2\n  eps_high: 0.28\n  loss_agg: token-mean\n  kl_coef: {0.001 if kl else 0.0}\n"
        "  kl_kind: k3\n"
        f"clipo:\n{clipo_section}"
        "rollout:\n  engine: hf\n  n: 8\n  max_new_tokens: 1024\n  temperature: 1.0\n"
        f"trainer:\n  prompts_per_step: 8\n  max_steps: {steps}\n  lr: 1.0e-06\n  lr_schedule: constant\n  grad_clip: 1.0\n  seed: 0\n")
    if summary:
        (root / "summary.json").write_text(json.dumps({
            "accuracy_before": 0.312, "accuracy_after": 0.655, "wall_seconds": 6123.4,
            "shifted": {"accuracy_before": 0.25, "accuracy_after": 0.5},
            "right_answer_wrong_reasoning_before": 0.31, "right_answer_wrong_reasoning_after": 0.14}))
    return root


@pytest.fixture
def synthetic_run(tmp_path):
    """Factory: ``synthetic_run(name="run", **options)`` writes a run folder under tmp_path and returns it."""

    def make(name: str = "run", **options) -> Path:
        return write_synthetic_run(tmp_path / name, **options)

    return make


@pytest.fixture(scope="module")
def clipo_run_report(tmp_path_factory):
    """A 300-step CLIPO run with its report made once per module: ``(run_dir, ReportPaths, seconds)``."""
    import time

    from clipo.apps.report import make_report

    run = write_synthetic_run(tmp_path_factory.mktemp("clipo") / "run", steps=300, clipo=True)
    start = time.perf_counter()
    paths = make_report(run)
    return run, paths, time.perf_counter() - start
