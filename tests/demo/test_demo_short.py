"""A short run of the built-in demo recipe end to end (reduced warm-start, 3 RL steps), and its data splits."""
import dataclasses
import json
import math

import pytest
import torch

import clipo.apps.demo.data as demo_data
import clipo.apps.demo.run as demo_run
import clipo.apps.demo.warmstart as warmstart
from clipo.apps.demo.data import builtin_dataset
from clipo.apps.demo.run import RECIPE, run_demo
from clipo.apps.demo.task import Problem
from clipo.training.config import ConfigError, load_config

# A much smaller model and SFT budget than the default spec, so the warm-start takes a few seconds.
SMALL_SPEC = dataclasses.replace(
    warmstart.WarmStartSpec(), hidden_size=32, num_layers=1, heads=2, kv_heads=1, intermediate=64,
    max_sft_steps=20, min_sft_steps=10, check_every=10, batch_size=16, num_problems=200, target_accuracy=0.0)


def test_demo_recipe_short_run_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPO_CACHE", str(tmp_path / "cache"))
    # run_demo builds `WarmStartSpec()`; make that the small spec.
    monkeypatch.setattr(demo_run, "WarmStartSpec", lambda: SMALL_SPEC)
    # Greedy + sampled measurement on 200 + 200 + 4x200 problems, twice, dominates the run time on a loaded CPU;
    # measure on 40-problem held-out and shifted splits instead (same seeds and operand counts).
    for split in ("arithmetic-test", "arithmetic-shifted"):
        _, seed, operands = demo_data.SPLITS[split]
        monkeypatch.setitem(demo_data.SPLITS, split, (40, seed, operands))

    model, _, from_cache = warmstart.load_or_warm_start(SMALL_SPEC, log=lambda *a: None)
    assert from_cache is False
    warm_weights = {k: v.clone() for k, v in model.state_dict().items()}
    assert (warmstart.cache_root() / "demo" / f"warmstart-{SMALL_SPEC.key()}" / "config.json").is_file()

    out = tmp_path / "run"
    config = load_config(RECIPE, overrides=[
        "trainer.max_steps=3", f"trainer.output_dir={out}", "trainer.prompts_per_step=4", "rollout.n=4",
        "rollout.max_new_tokens=24", "trainer.progress=false", "trainer.save_every=0", "data.max_eval_examples=8"])
    def no_second_warm_start(*args, **kwargs):
        raise AssertionError("run_demo warm-started again instead of loading the cached model")

    monkeypatch.setattr(warmstart, "warm_start", no_second_warm_start)
    assert run_demo(config, log=lambda *a: None) == 0

    summary = json.loads((out / "summary.json").read_text())
    for key in ("accuracy_before", "accuracy_after"):
        assert 0.0 <= summary[key] <= 1.0, (key, summary[key])
    assert summary["wall_seconds"] > 0 and math.isfinite(summary["wall_seconds"])
    assert summary["steps"] == 3

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert len(rows) == 3
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all("task/right_answer_wrong_reasoning" in r and "task/process_correct" in r for r in rows)

    assert list((out / "report").glob("*.png")), sorted(p.name for p in (out / "report").iterdir())
    assert (out / "report" / "report.md").is_file()

    # The cache answers the second time, with the same weights (RL trained a copy, not the cached files).
    again, tokenizer, from_cache = warmstart.load_or_warm_start(SMALL_SPEC, log=lambda *a: None)
    assert from_cache is True
    state = again.state_dict()
    assert state.keys() == warm_weights.keys()
    for name, value in warm_weights.items():
        assert torch.equal(state[name], value), name
    assert tokenizer.decode(tokenizer("7+5=12;\\boxed{2}", add_special_tokens=False)["input_ids"]) == "7+5=12;\\boxed{2}"


def test_spec_key_depends_on_every_field():
    base = warmstart.WarmStartSpec()
    assert base.key() == warmstart.WarmStartSpec().key()
    assert SMALL_SPEC.key() != base.key()
    assert dataclasses.replace(base, seed=1).key() != base.key()


@pytest.mark.parametrize("name, size, operands", [
    ("arithmetic", 5000, {3, 4, 5}), ("arithmetic-test", 200, {3, 4, 5}), ("arithmetic-shifted", 200, {6})])
def test_builtin_dataset_splits(name, size, operands):
    data = list(builtin_dataset(name))
    assert len(data) == size
    assert {len(e.extra["operands"]) for e in data} == operands
    first = data[0]
    problem = Problem(tuple(first.extra["operands"]))
    assert first.prompt == [{"role": "user", "content": problem.prompt}]
    assert first.ground_truth == problem.answer
    assert [e.index for e in data[:5]] == [0, 1, 2, 3, 4]


def test_builtin_splits_are_deterministic_and_differ():
    test = [e.prompt[0]["content"] for e in builtin_dataset("arithmetic-test")]
    assert test == [e.prompt[0]["content"] for e in builtin_dataset("arithmetic-test")]
    # Each split has its own seed: the held-out split is not the first 200 training prompts.
    assert test != [e.prompt[0]["content"] for e in list(builtin_dataset("arithmetic"))[:200]]


def test_builtin_dataset_unknown_name_names_valid_ones():
    with pytest.raises(ConfigError) as info:
        builtin_dataset("arithmetics")
    message = str(info.value)
    for valid in ("builtin:arithmetic", "builtin:arithmetic-test", "builtin:arithmetic-shifted"):
        assert valid in message
