"""CLIPO inside TRL's GRPOTrainer (clipo.integrations.trl), on CPU with the tiny Qwen2 model."""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from trl import GRPOConfig  # noqa: E402

from clipo.core.contrastive import ContrastiveHead  # noqa: E402
from clipo.integrations.trl import (  # noqa: E402
    HEAD_STATE_FILE,
    CLIPOConfig,
    CLIPOGRPOTrainer,
    positive_generator_seed,
)
from clipo.models.tiny import build_tiny_model, build_tiny_tokenizer  # noqa: E402
from clipo.training.config import ClipoConfig  # noqa: E402
from clipo.training.head import HeadTrainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
G = 4  # completions per prompt


def alternating_reward(prompts, completions, **_):
    """1, 0, 1, 0, ... by row: every group of G = 4 has two correct and two incorrect completions."""
    return [float(i % 2 == 0) for i in range(len(completions))]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def make_trainer(tokenizer, output_dir, *, clipo=None, max_steps=3, lr=1e-3, **args):
    torch.set_num_threads(1)
    dataset = datasets.Dataset.from_dict({"prompt": ["1+1=", "2+3=", "7*6=", "9-4="] * 4})
    options = dict(output_dir=str(output_dir), per_device_train_batch_size=G, num_generations=G,
                   max_completion_length=6, max_steps=max_steps, logging_steps=1, bf16=False, report_to="none",
                   use_cpu=True, save_strategy="no", seed=0, learning_rate=lr, gradient_checkpointing=False)
    config = GRPOConfig(**{**options, **args})
    return CLIPOGRPOTrainer(model=build_tiny_model(tokenizer, seed=0), reward_funcs=[alternating_reward],
                            args=config, train_dataset=dataset, processing_class=tokenizer,
                            clipo_config=clipo or CLIPOConfig(head_size=16))


def head_state(trainer):
    return {k: v.clone() for k, v in trainer.head_trainer.head.state_dict().items()}


def test_config_has_clipos_own_defaults_and_names_a_bad_value():
    ours, theirs = CLIPOConfig(), ClipoConfig()
    assert {f.name: getattr(ours, f.name) for f in dataclasses.fields(ClipoConfig)} == dataclasses.asdict(theirs)
    with pytest.raises(ValueError, match="CLIPOConfig.loss_kind='nce'"):
        CLIPOConfig(loss_kind="nce")
    with pytest.raises(ValueError, match="CLIPOConfig.temperature"):
        CLIPOConfig(temperature=0.0)


def test_import_clipo_does_not_import_trl():
    code = "import sys, clipo, clipo.integrations; assert 'trl' not in sys.modules, 'trl imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_embeddings_and_head_step_equal_clipos_own(tokenizer, tmp_path):
    """(a) Fixed completions and rewards: pooled states = a per-row naive forward; rewards and the updated
    head = clipo's HeadTrainer stepped by hand on the same inputs."""
    trainer = make_trainer(tokenizer, tmp_path, clipo=CLIPOConfig(head_size=16, loss_kind="infonce"))
    ids = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    prompts = [ids("1+1="), ids("2+3=")]  # same length: TRL's left padding then changes no position
    completions = [ids(t) for t in ["2", "22 ok", "5", "3x", "five", "6", "5!", "55555"]]
    prompt_ids = [prompts[i // G] for i in range(2 * G)]
    trainer.model.eval()
    pooled = trainer.pooled_embeddings(prompt_ids, completions)

    model = trainer.accelerator.unwrap_model(trainer.model)
    for row, (p, c) in enumerate(zip(prompt_ids, completions)):
        with torch.no_grad():
            states = model.model(input_ids=torch.tensor([p + c])).last_hidden_state[0, len(p):]  # [|c|, H]
        naive = sum(states[t] for t in range(len(c))) / len(c)
        torch.testing.assert_close(pooled[row], naive, atol=1e-5, rtol=0)

    # Two reward functions' columns; the weighted sum > 0 is "correct"; an all-NaN row is incorrect.
    nan = float("nan")
    verifiable = torch.tensor([[1, 0], [0, 0], [0.5, nan], [-1, 0.5], [nan, nan], [1, 1], [0, 2], [0, -2]],
                              dtype=torch.float32)
    trainer.reward_weights = torch.tensor([1.0, 0.5, 1.0])
    correct = torch.tensor([True, False, True, False, False, True, True, False])  # 1, 0, .5, -.75, 0, 1.5, 1, -1
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    start = head_state(trainer)
    reference_head = ContrastiveHead(64, 16, "linear")
    reference_head.load_state_dict(start)
    reference = HeadTrainer(reference_head)  # clipo's defaults = CLIPOConfig's defaults
    generator = torch.Generator().manual_seed(positive_generator_seed(0, 1))
    expected = reference.step(pooled, correct, groups, generator=generator)

    result = trainer.contrastive_step(pooled, verifiable)
    torch.testing.assert_close(result.rewards, expected.rewards, atol=1e-6, rtol=0)
    assert bool((expected.rewards[correct] < 0).any()) and bool((expected.rewards[~correct] == 0).all())
    for name, value in trainer.head_trainer.head.state_dict().items():
        torch.testing.assert_close(value, reference_head.state_dict()[name], atol=1e-6, rtol=0)
        assert not torch.equal(value, start[name])  # the step moved the head
    assert trainer.head_trainer.steps_done == 1


def test_train_updates_head_and_policy_and_logs_clipo_metrics(tokenizer, tmp_path):
    """(b)"""
    trainer = make_trainer(tokenizer, tmp_path)
    head0 = head_state(trainer)
    policy0 = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.head_trainer.steps_done == 3
    assert any(not torch.equal(v, head0[k]) for k, v in trainer.head_trainer.head.state_dict().items())
    assert any(not torch.equal(p, policy0[n]) for n, p in trainer.model.named_parameters())
    logged = [entry for entry in trainer.state.log_history if "clipo/loss" in entry]
    assert len(logged) == 3
    for entry in logged:
        for key in ("clipo/loss", "clipo/reward_mean", "clipo/valid_anchor_frac", "clipo/skipped",
                    "clipo/cos_correct_correct", "clipo/cos_correct_incorrect", "rewards/clipo/mean"):
            assert key in entry and entry[key] is not None and math.isfinite(entry[key]), key
        # 2 of 4 per group are correct and each has one positive and two negatives: half the rows anchor.
        assert entry["clipo/valid_anchor_frac"] == 0.5 and entry["clipo/skipped"] == 0.0
        assert -0.5 <= entry["clipo/reward_mean"] <= 0.0
        # TRL's reward is the verifiable mean (0.5) plus the contrastive reward's mean.
        assert entry["reward"] == pytest.approx(0.5 + entry["rewards/clipo/mean"], abs=1e-6)


def test_warmup_keeps_the_policy_frozen_while_the_head_learns(tokenizer, tmp_path):
    trainer = make_trainer(tokenizer, tmp_path, clipo=CLIPOConfig(head_size=16, warmup_steps=2), max_steps=2,
                           weight_decay=0.1)
    head0 = head_state(trainer)
    policy0 = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.frozen_policy_steps == 2
    assert all(torch.equal(p, policy0[n]) for n, p in trainer.model.named_parameters())
    assert any(not torch.equal(v, head0[k]) for k, v in trainer.head_trainer.head.state_dict().items())


def test_checkpoint_resume_restores_the_head(tokenizer, tmp_path):
    """(d) Resume from checkpoint-1: the head state is the saved one, and 1 more step lands where the
    uninterrupted run did."""
    full = make_trainer(tokenizer, tmp_path / "a", max_steps=2, save_strategy="steps", save_steps=1)
    head0 = head_state(full)
    full.train()
    checkpoint = tmp_path / "a" / "checkpoint-1"
    saved = torch.load(checkpoint / HEAD_STATE_FILE, weights_only=True)
    assert saved["steps_done"] == 1
    assert (tmp_path / "a" / "checkpoint-2" / "clipo_head" / "head.safetensors").is_file()

    resumed = make_trainer(tokenizer, tmp_path / "c", max_steps=2)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    # Without the saved state the head would be its initial weights plus one step, not the full run's two.
    assert resumed.head_trainer.steps_done == 2
    for name, value in resumed.head_trainer.head.state_dict().items():
        torch.testing.assert_close(value, full.head_trainer.head.state_dict()[name], atol=1e-6, rtol=0)
        assert not torch.equal(value, head0[name])
    ours, theirs = (t.head_trainer.optimizer.state_dict()["state"][0] for t in (resumed, full))
    assert float(ours["step"]) == float(theirs["step"]) == 2
    torch.testing.assert_close(ours["exp_avg_sq"], theirs["exp_avg_sq"], atol=1e-6, rtol=1e-5)

    shutil.copytree(checkpoint, tmp_path / "no_head")
    (tmp_path / "no_head" / HEAD_STATE_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="no CLIPO head state"):
        make_trainer(tokenizer, tmp_path / "d", max_steps=2).train(resume_from_checkpoint=str(tmp_path / "no_head"))


def test_embedding_inputs_follow_trls_layout_and_mask_truncated_completions(tokenizer, tmp_path):
    trainer = make_trainer(tokenizer, tmp_path, mask_truncated_completions=True)
    eos, pad_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    ids, mask, completion_mask = trainer._embedding_inputs([[5, 6, 7], [8]], [[9, eos], [10, 11, 12]])
    # prompts left-padded to 3, completions right-padded to 3; the second completion has no EOS: truncated.
    assert ids.tolist() == [[5, 6, 7, 9, eos, pad_id], [pad_id, pad_id, 8, 10, 11, 12]]
    assert mask.tolist() == [[1, 1, 1, 1, 1, 0], [0, 0, 1, 0, 0, 0]]
    assert completion_mask.tolist() == [[1, 1, 0], [0, 0, 0]]
    pooled = trainer.pooled_embeddings([[5, 6, 7], [8]], [[9, eos], [10, 11, 12]])
    assert bool((pooled[1] == 0).all()) and bool((pooled[0] != 0).any())  # a masked completion pools to 0


def test_normalize_then_sum_is_refused(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="sum_then_normalize"):
        make_trainer(tokenizer, tmp_path, multi_objective_aggregation="normalize_then_sum")


TWO_PROCESS_SCRIPT = ROOT / "tests" / "integrations" / "trl_two_process.py"


@pytest.mark.slow
def test_two_processes_keep_identical_heads(tmp_path):
    """(c) torchrun, 2 CPU processes (gloo): each process holds half of every generation batch; after
    training the head copies are equal, moved, and stepped on the gathered rows, in single-pass mode (states
    from TRL's training forward) and with the extra forward, and both modes end at the same head and policy
    (about 40 s)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(TWO_PROCESS_SCRIPT), str(tmp_path)]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    runs = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for mode, single_pass in (("auto", [1.0, 1.0]), ("extra", [0.0, 0.0])):
        states = [run[mode] for run in runs]
        for name, value in states[0]["head"].items():
            assert torch.equal(value, states[1]["head"][name])
            assert not torch.equal(value, states[0]["initial"][name])
        assert states[0]["steps_done"] == states[1]["steps_done"] == 2
        # Every head step saw both processes' rows: one prompt's group of 4, 2 completions on each process.
        assert states[0]["rows_seen"] == states[1]["rows_seen"] == [4, 4]
        assert states[0]["single_pass"] == single_pass
    for run in runs:  # the gathered rows are un-shuffled per process, so both modes step alike
        for part in ("head", "policy"):
            for name, value in run["auto"][part].items():
                torch.testing.assert_close(value, run["extra"][part][name], atol=1e-6, rtol=0)


def test_states_are_read_from_trls_old_logprob_forward_when_it_runs(tokenizer, tmp_path):
    """num_iterations=2 makes TRL run its no-grad old-log-prob forward: CLIPO reads the states from it (no
    extra forward), and they equal what the extra forward computes on the same rows."""
    trainer = make_trainer(tokenizer, tmp_path, max_steps=1, num_iterations=2, lr=0.0)  # lr 0: same weights after
    assert trainer._old_logps_forward_runs()
    seen = {}
    generate, step, extra = trainer._generate, trainer.contrastive_step, trainer.pooled_embeddings

    def spy_generate(prompts):
        out = generate(prompts)
        seen["batch"] = (out[0], out[1])
        return out

    def spy_step(pooled, verifiable):
        seen["pooled"] = pooled.clone()
        return step(pooled, verifiable)

    def no_extra(*a, **k):
        raise AssertionError("an extra forward ran although TRL's old-log-prob forward was there to read")

    trainer._generate, trainer.contrastive_step, trainer.pooled_embeddings = spy_generate, spy_step, no_extra
    trainer.train()
    assert trainer.head_trainer.steps_done == 1
    trainer.model.eval()
    torch.testing.assert_close(seen["pooled"], extra(*seen["batch"]), atol=1e-5, rtol=0)
