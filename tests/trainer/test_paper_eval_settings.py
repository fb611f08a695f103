"""The settings the paper recipes need: a global batch split over processes, eval top_p, evaluation at step 0."""
import pytest

from clipo.rollout import SamplingParams
from clipo.testing import build_tiny_trainer
from clipo.training.config import ConfigError, load_config
from clipo.training.evaluation import evaluate_all
from clipo.training.pipeline import per_process_prompts
from clipo.training.run_folder import RunFolder, read_jsonl


def config(*overrides):
    return load_config(overrides=["data.train=builtin:arithmetic", *overrides])


@pytest.mark.parametrize("world_size, expected", [(1, 512), (2, 256), (8, 64)])
def test_global_batch_is_split_evenly(world_size, expected):
    assert per_process_prompts(config("trainer.global_prompts_per_step=512"), world_size) == expected


def test_without_a_global_batch_prompts_per_step_is_per_process():
    assert per_process_prompts(config("trainer.prompts_per_step=6"), 8) == 6


def test_a_global_batch_that_does_not_divide_is_a_one_line_error():
    with pytest.raises(ConfigError, match=r"trainer.global_prompts_per_step=100 does not divide over 8 processes"):
        per_process_prompts(config("trainer.global_prompts_per_step=100"), 8)


def test_mini_batches_are_checked_against_the_per_process_share():
    with pytest.raises(ConfigError, match=r"trainer.mini_batches=4 exceeds the 2 prompts"):
        per_process_prompts(config("trainer.global_prompts_per_step=16", "trainer.mini_batches=4"), 8)


def test_eval_top_p_is_validated():
    with pytest.raises(ConfigError, match="rollout.eval_top_p"):
        config("rollout.eval_top_p=0")


class RecordingEngine:
    """An engine that records the sampling parameters it is asked for and answers nothing."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.seen: list[SamplingParams] = []

    def generate(self, prompts, sampling):
        self.seen.append(sampling)
        raise _Stop


class _Stop(Exception):
    pass


def test_evaluation_samples_with_eval_top_p_not_the_training_top_p(prompts_file, tmp_path):
    trainer = build_tiny_trainer([f"data.train={prompts_file}", f"data.eval={prompts_file}",
                                  f"trainer.output_dir={tmp_path}", "rollout.top_p=0.9", "rollout.eval_top_p=0.95",
                                  "rollout.eval_temperature=0.6", "rollout.eval_n=4"])
    engine = RecordingEngine(trainer.tokenizer)
    with pytest.raises(_Stop):
        evaluate_all(trainer.config, trainer.eval_data, engine)
    (sampling,) = engine.seen
    assert (sampling.top_p, sampling.temperature, sampling.n) == (0.95, 0.6, 4)


def test_eval_at_start_scores_the_untrained_model_as_step_0(prompts_file, tmp_path):
    overrides = [f"data.train={prompts_file}", f"data.eval={prompts_file}", "trainer.max_steps=1",
                 "data.max_eval_examples=8"]
    # The independent reference: the same untrained model evaluated directly, before any step (seed of step 0).
    reference = build_tiny_trainer([*overrides, f"trainer.output_dir={tmp_path / 'ref'}"]).evaluate()
    trainer = build_tiny_trainer([*overrides, f"trainer.output_dir={tmp_path / 'run'}", "trainer.eval_at_start=true"])
    trainer.fit()
    records = read_jsonl(RunFolder(tmp_path / "run").evals)
    assert [r["step"] for r in records] == [0, 1]
    assert records[0]["results"] == reference


def test_without_eval_at_start_there_is_no_step_0(prompts_file, tmp_path):
    trainer = build_tiny_trainer([f"data.train={prompts_file}", f"data.eval={prompts_file}", "trainer.max_steps=1",
                                  "data.max_eval_examples=4", f"trainer.output_dir={tmp_path}"])
    trainer.fit()
    records = read_jsonl(RunFolder(tmp_path).evals)
    assert [r["step"] for r in records] == [1]
