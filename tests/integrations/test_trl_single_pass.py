"""CLIPOGRPOTrainer's single-pass mode: the embeddings come from TRL's own training forward, and the advantages
are redone there (clipo.integrations.trl, docs/trl.md), on CPU with the tiny Qwen2 model."""
from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

import trl  # noqa: E402
from transformers import TrainerCallback  # noqa: E402
from trl import GRPOConfig  # noqa: E402

import clipo.integrations.trl as clipo_trl  # noqa: E402
from clipo.integrations.trl import CLIPOConfig, CLIPOGRPOTrainer, grpo_advantages  # noqa: E402
from clipo.models.tiny import build_tiny_model, build_tiny_tokenizer  # noqa: E402

G = 4  # completions per prompt; one prompt's group per generation batch


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def reward_with_a_hole(prompts, completions, **_):
    """1, 0, 1, 0, ... by row, except row 1 of every batch: None (unscorable, TRL zeroes its advantage)."""
    return [None if i == 1 else float(i % 2 == 0) for i in range(len(completions))]


def make_trainer(tokenizer, output_dir, *, clipo=None, embedding_forward="auto", max_steps=2, **args):
    """As tests/integrations/test_trl.py's builder (tiny Qwen2, 4 prompts x G, 6 tokens), with the hole."""
    torch.set_num_threads(1)
    dataset = datasets.Dataset.from_dict({"prompt": ["1+1=", "2+3=", "7*6=", "9-4="] * 4})
    options = dict(output_dir=str(output_dir), per_device_train_batch_size=G, num_generations=G,
                   max_completion_length=6, max_steps=max_steps, logging_steps=1, bf16=False, report_to="none",
                   use_cpu=True, save_strategy="no", seed=0, learning_rate=1e-3, gradient_checkpointing=False)
    return CLIPOGRPOTrainer(model=build_tiny_model(tokenizer, seed=0), reward_funcs=[reward_with_a_hole],
                            args=GRPOConfig(**{**options, **args}), train_dataset=dataset,
                            processing_class=tokenizer, clipo_config=clipo or CLIPOConfig(head_size=16),
                            embedding_forward=embedding_forward)


def head_state(trainer):
    return {k: v.clone() for k, v in trainer.head_trainer.head.state_dict().items()}


def spy(trainer) -> dict[str, list]:
    """Record each head step's rewards, the advantages each loss call used, and the extra forwards."""
    seen = {"rewards": [], "advantages": [], "extra_forwards": 0}
    step, loss, extra = trainer.contrastive_step, trainer._compute_loss, trainer.pooled_embeddings

    def spy_step(pooled, verifiable):
        result = step(pooled, verifiable)
        seen["rewards"].append(result.rewards.clone())
        return result

    def spy_loss(model, inputs):
        out = loss(model, inputs)
        seen["advantages"].append(inputs["advantages"].clone())  # read after: single pass writes it in the call
        return out

    def spy_extra(*a, **k):
        seen["extra_forwards"] += 1
        return extra(*a, **k)

    trainer.contrastive_step, trainer._compute_loss, trainer.pooled_embeddings = spy_step, spy_loss, spy_extra
    return seen


def run(tokenizer, path, embedding_forward, **args):
    trainer = make_trainer(tokenizer, path, embedding_forward=embedding_forward, **args)
    seen = spy(trainer)
    trainer.train()
    return trainer, seen


@pytest.mark.parametrize("checkpointing", [False, True])
def test_single_pass_equals_the_extra_forward_mode(checkpointing, tokenizer, tmp_path):
    """(a) Same seeds, 2 steps: the training forward's states give the same head steps, contrastive rewards,
    advantages, policy update and logged figures as the extra no-grad forward, without that forward (with
    gradient checkpointing, TRL's default, too: the hook reads the decoder's output once, in the forward)."""
    single, s = run(tokenizer, tmp_path / "auto", "auto", gradient_checkpointing=checkpointing)
    extra, e = run(tokenizer, tmp_path / "extra", "extra", gradient_checkpointing=checkpointing)
    assert single.single_pass_applies() and not extra.single_pass_applies()
    assert s["extra_forwards"] == 0 and e["extra_forwards"] == 2
    assert len(s["rewards"]) == len(e["rewards"]) == 2 and len(s["advantages"]) == len(e["advantages"]) == 2
    # Both forwards run the same kernels on the same rows (on this CPU the results are bitwise equal); the
    # tolerance leaves room for kernels whose float32 summation order depends on the batch layout.
    for ours, theirs in zip(s["rewards"] + s["advantages"], e["rewards"] + e["advantages"]):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    assert any(bool((r != 0).any()) for r in s["rewards"])  # the contrastive reward did something
    for name, value in single.head_trainer.head.state_dict().items():
        torch.testing.assert_close(value, extra.head_trainer.head.state_dict()[name], atol=1e-6, rtol=0)
    policy = dict(extra.model.named_parameters())
    for name, value in single.model.named_parameters():
        torch.testing.assert_close(value, policy[name], atol=1e-6, rtol=0)

    # The unscorable row's advantage is 0; the others are not the verifiable-only ones (rows 1, 0, 1 of the
    # scorable three: (2/3 - r) / std = +-0.577, -1.155): the contrastive reward moved them.
    verifiable_only = torch.tensor([0.5774, -1.1547])
    for advantages in s["advantages"]:
        assert advantages.shape == (G,) and int((advantages == 0).sum()) == 1
        scored = advantages[advantages != 0]
        assert any(float((x - verifiable_only).abs().min()) > 1e-3 for x in scored)
    logs = {name: [entry for entry in t.state.log_history if "clipo/loss" in entry] for name, t in
            (("auto", single), ("extra", extra))}
    for ours, theirs in zip(logs["auto"], logs["extra"]):
        assert ours["clipo/single_pass"] == 1.0 and theirs["clipo/single_pass"] == 0.0
        for key in ("rewards/clipo/mean", "rewards/clipo/std", "reward", "reward_std", "frac_reward_zero_std",
                    "clipo/loss", "clipo/reward_mean"):
            assert ours[key] == pytest.approx(theirs[key], abs=1e-6), key
    assert logs["auto"][-1]["rewards/clipo/mean"] != 0.0  # TRL logged 0 before the rewrite
    assert list(single._logs["advantages"]) == pytest.approx(list(extra._logs["advantages"]), abs=1e-6)
    clipo_column = list(single._logs["rewards"]["clipo"])
    assert clipo_column == pytest.approx(list(extra._logs["rewards"]["clipo"]), abs=1e-6, nan_ok=True)
    assert math.isnan(clipo_column[1]) and any(x != 0 for x in clipo_column if not math.isnan(x))


def naive_advantages(rewards_per_func, weights, group_size, scale):
    """Independent definition, one row at a time in Python floats: r_i = Σ_k w_k r_ik (NaN as 0; all-NaN row:
    no reward), A_i = r_i − mean over i's group of the scorable r, divided by std + 1e-4 (Bessel std over the
    group's or the batch's scorable r) unless scale = 'none'; A_i = 0 when undefined."""
    rows = rewards_per_func.tolist()
    rewards = [None if all(math.isnan(x) for x in row) else
               sum(w * x for w, x in zip(weights, row) if not math.isnan(x)) for row in rows]

    def std(values):
        if len(values) < 2:
            return math.nan
        m = sum(values) / len(values)
        return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))

    batch = [r for r in rewards if r is not None]
    out = []
    for i, r in enumerate(rewards):
        group = [x for x in rewards[i // group_size * group_size:(i // group_size + 1) * group_size] if x is not None]
        if r is None:
            out.append(0.0)
            continue
        a = r - sum(group) / len(group)
        if scale != "none":
            a = a / ((std(group) if scale == "group" else std(batch)) + 1e-4)
        out.append(0.0 if math.isnan(a) else a)
    return out


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_advantage_replica_equals_a_naive_loop_and_trl(scale, tokenizer, tmp_path):
    """(b) grpo_advantages = the naive per-row definition, with unscorable rows, a group with one scorable
    row (std undefined) and a zero-std group; and = TRL's own advantages in training."""
    nan = math.nan
    rewards = torch.tensor([[1.0, 0.2], [nan, nan], [0.0, 0.7], [0.5, nan],      # group 0: one unscorable row
                            [nan, nan], [nan, nan], [2.0, nan], [nan, nan],      # group 1: one scorable row
                            [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0],      # group 2: zero std
                            [0.0, -1.0], [3.0, 0.5], [nan, 2.0], [-1.0, 0.0]])   # group 3
    weights = torch.tensor([1.0, 0.5])
    got = grpo_advantages(rewards, weights, 4, scale).advantages
    torch.testing.assert_close(got, torch.tensor(naive_advantages(rewards, [1.0, 0.5], 4, scale)),
                               atol=1e-5, rtol=1e-6)
    assert got[1] == 0 and got[4] == 0 and got[6] == 0 and bool((got[8:12] == 0).all())

    # In training, 2 groups per batch (so 'batch' and 'group' differ) with the unscorable row 1: TRL's own
    # advantages (the extra-forward mode, where TRL computes them on the full rewards) = the replica = the naive
    # loop on TRL's logged reward table; and single pass ends at the same advantages.
    for mode in ("extra", "auto"):
        trainer, seen = run(tokenizer, tmp_path / mode, mode, scale_rewards=scale, per_device_train_batch_size=2 * G)
        assert trainer.head_trainer.steps_done == 2 and (seen["extra_forwards"] == 0) == (mode == "auto")
        table = torch.tensor([list(trainer._logs["rewards"][name]) for name in trainer.reward_func_names]).T
        assert table.shape == (2 * G, 2) and bool(table[1].isnan().all())
        expected = naive_advantages(table, trainer.reward_weights.tolist(), G, scale)
        assert list(trainer._logs["advantages"]) == pytest.approx(expected, abs=1e-5)
        replica = grpo_advantages(table, trainer.reward_weights, G, scale).advantages
        assert replica.tolist() == pytest.approx(list(trainer._logs["advantages"]), abs=1e-6)
        assert sorted(seen["advantages"][-1].tolist()) == pytest.approx(sorted(expected), abs=1e-5)


def test_self_check_names_the_trl_version_and_the_fallback(tokenizer, tmp_path, monkeypatch):
    trainer = make_trainer(tokenizer, tmp_path, max_steps=1)

    def off_by_one(rewards_per_func, weights, num_generations, scale_rewards):
        true = grpo_advantages(rewards_per_func, weights, num_generations, scale_rewards)
        return true._replace(advantages=true.advantages + 1)

    monkeypatch.setattr(clipo_trl, "grpo_advantages", off_by_one)
    with pytest.raises(RuntimeError, match=rf"TRL {trl.__version__} .*embedding_forward='extra'"):
        trainer.train()


def test_other_configs_fall_back_and_eval_takes_no_head_step(tokenizer, tmp_path):
    """(c) gradient_accumulation_steps=2 (two micro-batches per generation batch): one extra forward per
    generation batch, clipo/single_pass = 0; evaluation takes no head step in either mode; a bad option is
    named."""
    trainer, seen = run(tokenizer, tmp_path / "ga", "auto", gradient_accumulation_steps=2,
                        per_device_train_batch_size=2)
    assert not trainer.single_pass_applies()
    assert seen["extra_forwards"] == 2 and trainer.head_trainer.steps_done == 2
    assert all(entry["clipo/single_pass"] == 0.0 for entry in trainer.state.log_history if "clipo/loss" in entry)

    dataset = datasets.Dataset.from_dict({"prompt": ["1+1=", "2+3="]})
    evaluating = make_trainer(tokenizer, tmp_path / "eval", max_steps=1, per_device_eval_batch_size=G)
    seen = spy(evaluating)
    evaluating.evaluate(eval_dataset=dataset)
    assert evaluating.head_trainer.steps_done == 0 and seen["rewards"] == [] and seen["extra_forwards"] == 0
    assert evaluating._clipo_pending is None

    with pytest.raises(ValueError, match="embedding_forward='once'"):
        clipo_trl.CLIPOGRPOTrainer(model=None, embedding_forward="once")


def test_warmup_freezes_the_policy_in_single_pass(tokenizer, tmp_path):
    trainer = make_trainer(tokenizer, tmp_path, clipo=CLIPOConfig(head_size=16, warmup_steps=1))
    assert trainer.single_pass_applies()
    head0 = head_state(trainer)
    policy0 = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    moved = []
    trainer.add_callback(type("Spy", (TrainerCallback,), {
        "on_step_end": lambda self, args, state, control, **k: moved.append(
            any(not torch.equal(p, policy0[n]) for n, p in trainer.model.named_parameters()))})())
    trainer.train()
    # Step 1 is the warm-up (policy untouched), step 2 updates the policy; the head learns in both.
    assert trainer.frozen_policy_steps == 1 and moved == [False, True]
    assert any(not torch.equal(v, head0[k]) for k, v in trainer.head_trainer.head.state_dict().items())
