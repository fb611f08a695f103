"""RLTrainer with trainer.share_prompt_forward on (default) vs off: the same training, up to fp rounding."""
import json
import random

import pytest

import clipo.models.forward as forward_module
from clipo.testing import build_tiny_trainer
from clipo.training.tracking import read_metrics


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    rng = random.Random(1)
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    rows = [{"prompt": f"{a}+{b}=?" + "!" * rng.randint(0, 6), "answer": str(a + b)}
            for a, b in ((rng.randint(0, 9), rng.randint(0, 9)) for _ in range(32))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _run(prompts_file, output_dir, share, *overrides):
    trainer = build_tiny_trainer([
        f"data.train={prompts_file}", "data.eval=[]", f"trainer.output_dir={output_dir}", "trainer.micro_batch_size=16",
        "trainer.tensorboard=false", f"trainer.share_prompt_forward={str(share).lower()}", *overrides])
    trainer.fit()
    return trainer, read_metrics(output_dir)


@pytest.mark.parametrize("overrides", [
    ("trainer.micro_batch_size=8",),  # 2 groups per micro-batch
    ("trainer.micro_batch_size=6", "algorithm.name=dapo"),  # rounded down to 4 rows = 1 group when shared
    ("trainer.micro_batch_size=16",),  # fused on-policy forward, one micro-batch
    ("trainer.micro_batch_size=8", "trainer.mini_batches=2", "trainer.ppo_epochs=2", "algorithm.kl_coef=0.1"),
    ("trainer.micro_batch_size=3",),  # a group does not fit: no sharing, same as off
], ids=["mb8", "mb6-dapo", "fused", "minibatches-kl", "mb3"])
def test_share_prompt_forward_trains_the_same(prompts_file, tmp_path, monkeypatch, overrides, assert_state_dicts_equal):
    calls = []
    real = forward_module.shared_prompt_cache
    monkeypatch.setattr(forward_module, "shared_prompt_cache",
                        lambda model, ids, *args: calls.append(ids.shape[0]) or real(model, ids, *args))
    off, off_rows = _run(prompts_file, tmp_path / "off", False, *overrides)
    assert not calls
    on, on_rows = _run(prompts_file, tmp_path / "on", True, *overrides)
    assert bool(calls) == ("trainer.micro_batch_size=3" not in overrides)
    assert [r["step"] for r in off_rows] == [r["step"] for r in on_rows] and off_rows
    for a, b in zip(off_rows, on_rows):
        assert a["response/length_mean"] == b["response/length_mean"]  # same rollouts
        for key in ("reward/accuracy", "actor/pg_loss", "actor/grad_norm", "contrastive/loss", "actor/entropy"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), (a["step"], key)
    assert_state_dicts_equal(on.model.state_dict(), off.model.state_dict(), rtol=0.0, atol=1e-4)
