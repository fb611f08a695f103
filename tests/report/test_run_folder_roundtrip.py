"""The real trainer writes a run folder and the real report reads it back: both sides of the format agree.

The synthetic runs of ``conftest.py`` pin what the report tolerates; this test pins that what
:class:`clipo.training.trainer.RLTrainer` writes (through :class:`clipo.training.run_folder.RunFolder`) is what the
report reads: the same steps and values, the snapshots at the scheduled steps with the same rows, the evaluations.
"""
from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from clipo.apps.report import load_run, make_report
from clipo.testing import build_tiny_trainer
from clipo.training.checkpoint import latest_checkpoint
from clipo.training.run_folder import RunFolder, read_jsonl
from clipo.training.tracking import MetricsLogger, read_metrics

MAX_STEPS, SNAPSHOTS, SAMPLES = 3, 2, 2


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """Train a tiny CLIPO run for 3 steps (eval at step 2 and at the end), recording what the trainer logged."""
    rng = random.Random(0)
    root = tmp_path_factory.mktemp("roundtrip")
    prompts = root / "train.jsonl"
    rows = [{"prompt": f"{a}+{b}=?", "answer": str(a + b)} for a, b in ((rng.randint(0, 9), rng.randint(0, 9)) for _ in range(32))]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_dir = root / "run"
    logged: dict[str, list] = {"metrics": [], "evals": [], "snapshots": []}
    with pytest.MonkeyPatch.context() as mp:
        original_log, original_eval, original_snapshot = MetricsLogger.log, MetricsLogger.log_eval, RunFolder.write_snapshot

        def log(self, step, metrics):
            values = original_log(self, step, metrics)
            logged["metrics"].append((step, dict(values)))
            return values

        def log_eval(self, step, results):
            logged["evals"].append((step, json.loads(json.dumps(results))))
            return original_eval(self, step, results)

        def write_snapshot(self, snapshot):
            logged["snapshots"].append({k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in snapshot.items()})
            return original_snapshot(self, snapshot)

        mp.setattr(MetricsLogger, "log", log)
        mp.setattr(MetricsLogger, "log_eval", log_eval)
        mp.setattr(RunFolder, "write_snapshot", write_snapshot)
        trainer = build_tiny_trainer([
            f"data.train={prompts}", f"data.eval={prompts}", f"trainer.output_dir={run_dir}", "algorithm.name=grpo",
            "clipo.enabled=true", f"trainer.max_steps={MAX_STEPS}", f"trainer.embedding_snapshots={SNAPSHOTS}",
            f"trainer.log_samples={SAMPLES}", "trainer.eval_every=2", "trainer.tensorboard=false"])
        result = trainer.fit()
    return run_dir, trainer, result, logged


def test_report_reads_what_the_trainer_wrote(trained_run):
    run_dir, trainer, result, logged = trained_run
    data = load_run(run_dir)
    assert data.notes == []  # nothing unreadable, nothing missing that the report wanted

    # metrics.jsonl: every logged step, every logged value (non-finite ones read back as NaN)
    steps = [step for step, _ in logged["metrics"]]
    assert steps == list(range(1, MAX_STEPS + 1)) and list(data.steps) == steps
    assert [row["step"] for row in read_metrics(run_dir)] == steps
    for i, (step, values) in enumerate(logged["metrics"]):
        for key, value in values.items():
            read = data.metrics[key][i]
            assert (read == value) if math.isfinite(value) else math.isnan(read), (step, key, value, read)
    assert set(data.metrics) == set().union(*(values for _, values in logged["metrics"]))
    assert any(key.startswith("contrastive/") for key in data.metrics)

    # eval.jsonl: the in-loop evaluation at step 2 and the final one
    assert [step for step, _ in logged["evals"]] == [2, MAX_STEPS]
    assert data.evals == logged["evals"]
    assert data.evals[-1][1] == json.loads(json.dumps(result["eval"]))

    # embeddings/: the first and the last step, each with every rollout of its step
    rollouts_per_step = trainer.config.trainer.prompts_per_step * trainer.config.rollout.n
    assert [s["step"] for s in logged["snapshots"]] == [1, MAX_STEPS]
    assert [s.step for s in data.snapshots] == [1, MAX_STEPS]
    assert [p.name for p in RunFolder(run_dir).embedding_snapshots()] == ["step_000001.pt", "step_000003.pt"]
    for snap, written in zip(data.snapshots, logged["snapshots"]):
        assert snap.source == "z" and snap.embedding.shape == (rollouts_per_step, trainer.config.clipo.head_size)
        np.testing.assert_array_equal(snap.embedding, written["z"].float().numpy())
        np.testing.assert_array_equal(snap.correct, written["correct"].numpy())
        np.testing.assert_array_equal(snap.group_ids, written["group_ids"].numpy())
        np.testing.assert_array_equal(snap.contrastive_reward, written["contrastive_reward"].numpy())

    # config.yaml and the rest of the folder
    assert data.config["algorithm"]["name"] == "grpo" and data.config["clipo"]["enabled"] is True
    assert data.config["trainer"]["max_steps"] == MAX_STEPS
    folder = RunFolder(run_dir)
    samples = read_jsonl(folder.samples)
    assert [s["step"] for s in samples] == [step for step in steps for _ in range(SAMPLES)]
    assert {"group", "prompt", "ground_truth", "response", "score", "contrastive_reward", "advantage"} <= set(samples[0])
    assert (folder.final / "config.json").is_file() and folder.final_head.is_dir()
    assert latest_checkpoint(run_dir) == folder.checkpoint(MAX_STEPS)
    assert not folder.summary.exists() and data.summary == {}


def test_report_of_a_real_run(trained_run):
    run_dir, *_ = trained_run
    paths = make_report(run_dir)
    assert paths.out_dir == RunFolder(run_dir).report and paths.markdown.is_file()
    assert {"reward_accuracy", "contrastive", "embeddings_pca", "training_health"} <= set(paths.figures)
    for path in paths.figures.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    markdown = paths.markdown.read_text()
    assert "**grpo**" in markdown and "**on**" in markdown
    assert f"{MAX_STEPS} logged" in markdown and f"accuracy @ step {MAX_STEPS}" in markdown
    assert "## Notes" not in markdown

    RunFolder(run_dir).write_summary({"accuracy_before": 0.25, "accuracy_after": 0.5})
    assert "| `accuracy` | 0.25 | 0.5 |" in make_report(run_dir).markdown.read_text()
