"""The paper recipes against the official scripts' values (typed here from scripts/train_*.sh of
Qwen-Applications/CLIPO and the verl defaults they rely on, not read from the recipes), and docs/paper_recipes.md
naming only keys that exist."""
import re
from pathlib import Path

import pytest

from clipo.training.config import Config, load_config
from clipo.training.pipeline import per_process_prompts

DOC = Path(__file__).resolve().parents[2] / "docs" / "paper_recipes.md"

GSM8K_SETS = ["gsm8k", "gsm_p1", "gsm_p2", "gsm_symbolic", "theoremqa", "mmlu2k", "truthfulqa", "commonsense_qa"]
MATH_SETS = ["math", "aime", "aime2025", "amc", "math_perturb_simple", "math_perturb_hard"]

OFFICIAL = {
    "clipo_gsm8k_qwen2.5-3b": dict(train="gsm8k", sets=GSM8K_SETS, batch=512, mini_batch=256, n=16, response=2048,
                                   eval_n=1, greedy_eval=True, test_freq=7, epochs=6, rows=7473, warmup=14,
                                   head_size=512),
    "clipo_math_qwen2.5-7b": dict(train="math75", sets=MATH_SETS, batch=128, mini_batch=128, n=16, response=4096,
                                  eval_n=16, greedy_eval=False, test_freq=29, epochs=10, rows=7500, warmup=58,
                                  head_size=2048),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_recipe_matches_the_official_script(name):
    o, c = OFFICIAL[name], load_config(name)
    assert Path(c.data.train).stem == o["train"]
    assert [Path(p).stem for p in c.data.eval] == o["sets"]
    assert c.data.max_prompt_tokens == 512
    for gpus in (1, 8):  # the global batch is the official one on any number of GPUs
        assert per_process_prompts(c, gpus) * gpus == o["batch"]
    assert o["batch"] // c.trainer.mini_batches == o["mini_batch"]
    assert (c.rollout.n, c.rollout.max_new_tokens, c.rollout.temperature, c.rollout.top_p) == (o["n"], o["response"], 1.0, 1.0)
    assert c.rollout.eval_n == o["eval_n"]
    if o["greedy_eval"]:
        assert c.rollout.eval_temperature == 0.0
    else:
        assert (c.rollout.eval_temperature, c.rollout.eval_top_p) == (0.6, 0.95)
    assert (c.trainer.eval_every, c.trainer.eval_at_start) == (o["test_freq"], True)
    assert c.trainer.max_steps == (o["rows"] // o["batch"]) * o["epochs"]
    assert (c.trainer.lr, c.trainer.weight_decay, c.trainer.grad_clip, c.trainer.ppo_epochs) == (1e-6, 0.01, 1.0, 1)
    assert c.trainer.precision == "bf16-mixed" and c.model.gradient_checkpointing
    assert (c.algorithm.name, c.algorithm.kl_coef, c.algorithm.kl_kind) == ("grpo", 0.001, "k3")
    assert (c.algorithm.eps_low, c.algorithm.eps_high, c.algorithm.dual_clip, c.algorithm.loss_agg) == (0.2, 0.2, 3.0, "token-mean")
    assert c.reward.mode == "official"
    cl = c.clipo
    assert cl.enabled and (cl.head_kind, cl.head_size, cl.loss_kind, cl.level) == ("linear", o["head_size"], "infonce", "group")
    assert (cl.temperature, cl.lam, cl.constant, cl.floor, cl.masked_label) == (0.05, 0.2, 0.0, -0.5, 0)
    assert (cl.head_lr, cl.head_weight_decay, cl.skip_trivial, cl.pooling) == (1e-3, 0.01, True, "official")
    assert cl.warmup_steps == o["warmup"] - 1  # verl freezes the actor while step < critic_warmup


def valid_keys() -> set[str]:
    return {f"{section}.{key}" for section, fields in Config().to_dict().items() for key in fields}


def clipo_key_cells(text: str) -> list[str]:
    """The cells of every table's ``clipo key`` column."""
    cells, column = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            column = None
            continue
        row = [c.strip() for c in line.strip("|").split("|")]
        if "clipo key" in row:
            column = row.index("clipo key")
        elif column is not None and not set(line) <= set("|- "):
            cells.append(row[column])
    return cells


def test_every_clipo_key_named_in_the_recipes_doc_exists():
    cells = clipo_key_cells(DOC.read_text())
    named = set()
    for cell in cells:
        for token in re.findall(r"`([a-z]+\.[a-z_/]+)`", cell):
            section, keys = token.split(".", 1)
            named |= {f"{section}.{key}" for key in keys.split("/")}
    assert len(named) > 30
    assert not named - valid_keys(), sorted(named - valid_keys())
