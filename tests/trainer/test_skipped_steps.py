"""A step without a batch logs nothing as its own; RLOO, the registry's newest entry, trains end to end."""
import json

import torch

from clipo.core.advantages import rloo_advantages
from clipo.rewards import register_reward
from clipo.testing import build_tiny_trainer, even_length_reward
from clipo.training.tracking import read_metrics


def test_a_skipped_dapo_step_logs_no_samples_and_no_embeddings(prompts_file, tmp_path):
    # Step 1 scores as usual (mixed groups); from step 2 on every rollout scores the same, so DAPO finds no
    # informative group within max_gen_batches=1 and skips the step. The skipped step must not log step 1's
    # batch under its own number.
    constant = {"on": False}

    def switchable(response, ground_truth, **row):
        return 1.0 if constant["on"] else even_length_reward(response, ground_truth, **row)

    register_reward("test_switchable", switchable, overwrite=True)
    trainer = build_tiny_trainer([
        f"data.train={prompts_file}", "data.eval=[]", f"trainer.output_dir={tmp_path}", "reward.verifier=test_switchable",
        "algorithm.name=dapo", "algorithm.max_gen_batches=1", "trainer.max_steps=2", "trainer.log_samples=3",
        "trainer.embedding_snapshots=2", "trainer.tensorboard=false"])
    original_step = trainer.train_step

    def step():
        metrics = original_step()
        constant["on"] = True  # every step after the first gets one score for all rollouts
        return metrics

    trainer.train_step = step
    trainer.fit()

    rows = read_metrics(tmp_path)
    assert [r["actor/update_skipped"] for r in rows] == [0.0, 1.0]
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert samples and {s["step"] for s in samples} == {1}
    snapshots = sorted(p.name for p in (tmp_path / "embeddings").glob("*.pt"))
    assert snapshots == ["step_000001.pt"]
    assert trainer._last_batch is None


def test_rloo_trains_and_changes_every_parameter(prompts_file, tmp_path):
    trainer = build_tiny_trainer([f"data.train={prompts_file}", "data.eval=[]", f"trainer.output_dir={tmp_path}",
                                  "algorithm.name=rloo", "trainer.max_steps=2", "trainer.tensorboard=false"])
    assert trainer.reference is None and trainer.knobs.dual_clip == 0.0 and trainer.knobs.scale_by_std is False
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["actor/skipped_nonfinite"] == 0.0 and r["actor/update_skipped"] == 0.0 for r in rows)
    unchanged = [k for k, v in trainer.model.state_dict().items() if torch.equal(v, before[k])]
    assert not unchanged, f"policy parameters that did not change: {unchanged}"
    batch = trainer._last_batch  # the advantages of the last step are RLOO's leave-one-out ones
    torch.testing.assert_close(batch.advantages, rloo_advantages(batch.rewards, batch.rollouts.group_ids))
