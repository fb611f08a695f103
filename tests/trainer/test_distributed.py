"""Two CPU processes (gloo on loopback) train exactly like one process on the same global batch.

Data parallelism is correct when P processes with B prompts each end where one process with P·B prompts ends:
each process's loss is its share of the global mean and the gradients are summed, and the CLIPO head takes
the same step on the gathered global batch everywhere. Sampling seeds differ per process on purpose, so
the comparison cannot use sampled rollouts: every run here gets its rollouts from :class:`FixedRollouts`,
which depend only on the prompt text and the RL step (never on the process or the policy), while the rest
of the step (verifier, DAPO's group filter, forward, head, advantages, update) runs for real.
"""
import json
import os
import socket
import zlib

import pytest
import torch
import torch.multiprocessing as mp

from clipo.rollout import RolloutBatch
from clipo.rollout.base import RolloutEngine
from clipo.training.distributed import all_gather_rows, shard

GLOBAL_PROMPTS = 4  # per step: 2 processes × 2 prompts, or 1 process × 4 prompts
STEPS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _setup(rank: int, world: int, port: int) -> None:
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                          LOCAL_RANK=str(rank))
    torch.set_num_threads(1)


class FixedRollouts(RolloutEngine):
    """A stand-in rollout engine whose completions are a pure function of (prompt text, RL step).

    Each completion is 1..max_new_tokens random letters, ending in EOS unless it fills the budget (then it
    is cut, "length", half of the time). The tiny reward is "even response length", and each group is drawn
    again until it has 2..n−1 correct rollouts: every group is informative (DAPO keeps all of them) and every
    correct rollout has a positive and a negative (CLIPO has anchors). Prompts are tokenized and laid out as
    the HF engine does (left-padded prompts, right-padded responses, rows b·n … b·n+n−1 for prompt b).
    """

    def __init__(self, trainer):
        self.trainer = trainer
        self.tokenizer = trainer.tokenizer
        self.letters = self.tokenizer.convert_tokens_to_ids(list("abcdefghij"))

    def _completion(self, generator: torch.Generator, budget: int) -> tuple[list[int], str, str]:
        length = int(torch.randint(1, budget + 1, (1,), generator=generator))
        ids = [self.letters[int(i)] for i in torch.randint(0, len(self.letters), (length,), generator=generator)]
        cut = length == budget and bool(torch.rand(1, generator=generator) < 0.5)
        if not cut:
            ids[-1] = self.tokenizer.eos_token_id
        return ids, self.tokenizer.decode(ids, skip_special_tokens=True), "length" if cut else "eos"

    def generate(self, prompts, params):
        tok, n = self.tokenizer, params.n
        enc = tok(list(prompts), padding=True, padding_side="left", add_special_tokens=False, return_tensors="pt")
        rows = []
        for text in prompts:
            generator = torch.Generator().manual_seed(zlib.crc32(text.encode()) * 101 + self.trainer.step)
            while True:
                group = [self._completion(generator, params.max_new_tokens) for _ in range(n)]
                if 2 <= sum(len(t) % 2 == 0 for _, t, _ in group) <= n - 1:
                    break
            rows.extend(group)
        width = max(len(ids) for ids, _, _ in rows)
        response_ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
        response_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (ids, _, _) in enumerate(rows):
            response_ids[i, :len(ids)] = torch.tensor(ids)
            response_mask[i, :len(ids)] = 1
        group_ids = torch.arange(len(prompts)).repeat_interleave(n)
        return RolloutBatch(
            prompt_ids=enc["input_ids"].repeat_interleave(n, 0), prompt_mask=enc["attention_mask"].repeat_interleave(n, 0),
            response_ids=response_ids, response_mask=response_mask,
            truncated=torch.tensor([f == "length" for _, _, f in rows]), group_ids=group_ids,
            prompt_index=group_ids.clone(), response_texts=[t for _, t, _ in rows],
            finish_reasons=[f for _, _, f in rows], pad_token_id=tok.pad_token_id)


def _train_worker(rank: int, world: int, port: int, folder: str, algorithm: str, parallel: str = "auto",
                  extra: tuple[str, ...] = ()) -> None:
    _setup(rank, world, port)
    from clipo.testing import build_tiny_trainer
    from clipo.training.checkpoint import full_model_state

    tag = f"{world}{parallel if world > 1 else ''}"
    trainer = build_tiny_trainer([
        f"data.train={folder}/train.jsonl", "data.eval=[]", f"trainer.output_dir={folder}/run{tag}",
        f"trainer.parallel={parallel}",
        f"trainer.prompts_per_step={GLOBAL_PROMPTS // world}", f"trainer.max_steps={STEPS}",
        "trainer.micro_batch_size=4", "trainer.tensorboard=false", "trainer.log_samples=0",
        "trainer.embedding_snapshots=0", "clipo.head_size=8", "clipo.level=batch", f"algorithm.name={algorithm}",
        "algorithm.kl_coef=0", *extra])
    trainer.engine = FixedRollouts(trainer)
    seen = []
    original_collect = trainer.collect

    def recording_collect():
        rollouts, examples, scores, stats = original_collect()
        seen.append(sorted({e.index for e in examples}))
        return rollouts, examples, scores, stats

    trainer.collect = recording_collect
    logged = []
    original_train_step = trainer.train_step

    def recording_train_step():
        metrics = original_train_step()
        logged.append({k: float(metrics[k]) for k in ("actor/grad_norm", "contrastive/loss")})
        return metrics

    trainer.train_step = recording_train_step
    before = {"policy": {k: v.detach().clone() for k, v in full_model_state(trainer.model, every_process=True).items()},
              "head": {k: v.detach().clone() for k, v in trainer.head_trainer.head.state_dict().items()}}
    trainer.fit()
    torch.save({"policy": {k: v.detach().clone() for k, v in full_model_state(trainer.model, every_process=True).items()},
                "head": {k: v.detach().clone() for k, v in trainer.head_trainer.head.state_dict().items()},
                "before": before, "prompts": seen, "metrics": logged}, f"{folder}/world{tag}-rank{rank}.pt")


def _gather_worker(rank: int, world: int, port: int, folder: str) -> None:
    _setup(rank, world, port)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    rows = torch.arange(2 + rank, dtype=torch.float32)[:, None] + 10 * rank
    gathered, own = all_gather_rows(rows)
    torch.save({"gathered": gathered, "own": (own.start, own.stop)}, f"{folder}/gather{rank}.pt")
    torch.distributed.destroy_process_group()


def test_all_gather_rows_with_unequal_row_counts(tmp_path):
    mp.spawn(_gather_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2)
    for rank, own in ((0, (0, 2)), (1, (2, 5))):
        result = torch.load(tmp_path / f"gather{rank}.pt", weights_only=True)
        assert result["gathered"].squeeze(-1).tolist() == [0.0, 1.0, 10.0, 11.0, 12.0]
        assert tuple(result["own"]) == own


def test_shard_splits_a_global_batch_contiguously():
    assert shard(list(range(6)), 0, 2) == [0, 1, 2] and shard(list(range(6)), 1, 2) == [3, 4, 5]
    with pytest.raises(ValueError, match="does not split"):
        shard(list(range(5)), 0, 2)


# GRPO + CLIPO at batch level (the head needs the gathered global batch); DAPO adds dynamic sampling (the
# processes must agree on how many groups to keep), the overlong penalty and ±1 rewards.
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
@pytest.mark.parametrize("algorithm", ["grpo", "dapo"])
def test_two_processes_train_like_one_process_on_the_global_batch(tmp_path, algorithm, parallel, assert_state_dicts_equal):
    rows = [{"prompt": f"{a}+{b}=?", "answer": str(a + b)} for a in range(4) for b in range(4)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # FSDP computes each training row's prompt in full (no shared prompt cache under grad): the one-process run
    # does the same, so both compute the same sums and only the order of the cross-process reduction differs.
    extra = ("trainer.share_prompt_forward=false",) if parallel == "fsdp" else ()
    mp.spawn(_train_worker, args=(2, _free_port(), str(tmp_path), algorithm, parallel, extra), nprocs=2)
    mp.spawn(_train_worker, args=(1, 0, str(tmp_path), algorithm, "auto", extra), nprocs=1)
    ranks = [torch.load(tmp_path / f"world2{parallel}-rank{r}.pt", weights_only=False) for r in range(2)]
    single = torch.load(tmp_path / "world1-rank0.pt", weights_only=False)

    # The premise: each step, the processes split the one process's global batch of 4 prompts, 2 and 2.
    assert len(single["prompts"]) == STEPS and all(len(p) == GLOBAL_PROMPTS for p in single["prompts"])
    for step in range(STEPS):
        own = [ranks[r]["prompts"][step] for r in range(2)]
        assert len(own[0]) == len(own[1]) == GLOBAL_PROMPTS // 2 and not set(own[0]) & set(own[1])
        assert sorted(own[0] + own[1]) == single["prompts"][step]

    # Both processes hold bit-identical replicas (DDP) or shards of one model (FSDP, gathered here): summed
    # gradients, and the same head step on the same batch.
    assert_state_dicts_equal(ranks[0]["policy"], ranks[1]["policy"])
    assert_state_dicts_equal(ranks[0]["head"], ranks[1]["head"])
    # ... and they are where one process gets on the same global batch, up to fp32 rounding: 1e-5 relative, plus
    # 1e-6 absolute for weights near 0 (k_proj biases start at 0 and only reach ~2e-3 after the two steps, with
    # tiny gradients whose last bits depend on the padding and summation order: measured ~2e-7 apart).
    # Without the shared prompt cache (the FSDP comparison) one element of a down_proj, whose gradient is near 0,
    # lands 1.9e-6 apart, as it does for DDP with sharing off: Adam's step m/sqrt(v) turns the last-bit differences
    # of a near-zero gradient into up to lr-sized ones. 5e-6 is 0.5% of lr; a missing all-reduce is ~4e-3 off, and
    # averaging instead of summing shows in the gradient norm below.
    assert_state_dicts_equal(ranks[0]["policy"], single["policy"], rtol=1e-5, atol=1e-6 if parallel == "ddp" else 5e-6)
    assert_state_dicts_equal(ranks[0]["head"], single["head"], rtol=1e-5, atol=1e-6)
    # The gradient norm is that of the summed gradient (a process that averaged instead of summing, or skipped the
    # sum, would show a different one; Adam itself hides a uniform scale), and the head loss is the global one.
    assert len(single["metrics"]) == STEPS
    for rank in ranks:
        for got, want in zip(rank["metrics"], single["metrics"], strict=True):
            assert got == pytest.approx(want, rel=1e-5), (got, want)
    # Not vacuous: the two steps moved the policy and the head by far more than that tolerance (lr 1e-3).
    for part in ("policy", "head"):
        moved = max((single[part][k].float() - single["before"][part][k].float()).abs().max().item()
                    for k in single[part])
        assert moved > 1e-3, (part, moved)
    for part in ("policy", "head"):  # and both setups started from the same weights
        assert_state_dicts_equal(ranks[0]["before"][part], single["before"][part])

    metrics = [json.loads(line) for line in (tmp_path / f"run2{parallel}" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]  # written once, by the main process
    assert all(m["actor/update_skipped"] == 0.0 and m["rollout/prompts_kept"] == GLOBAL_PROMPTS // 2 for m in metrics)


@pytest.mark.slow
def test_ddp_and_fsdp_give_the_same_parameters(tmp_path, assert_state_dicts_equal):
    rows = [{"prompt": f"{a}+{b}=?", "answer": str(a + b)} for a in range(4) for b in range(4)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    extra = ("trainer.share_prompt_forward=false",)  # FSDP's training forward never shares the prompt cache
    for parallel in ("ddp", "fsdp"):
        mp.spawn(_train_worker, args=(2, _free_port(), str(tmp_path), "grpo", parallel, extra), nprocs=2)
    ddp, fsdp = (torch.load(tmp_path / f"world2{p}-rank0.pt", weights_only=False) for p in ("ddp", "fsdp"))
    # Same rollouts, same summed gradients; only the reduction (all-reduce vs reduce-scatter) differs.
    assert_state_dicts_equal(ddp["policy"], fsdp["policy"], rtol=1e-5, atol=1e-6)
    assert_state_dicts_equal(ddp["head"], fsdp["head"])
    for got, want in zip(fsdp["metrics"], ddp["metrics"], strict=True):
        assert got == pytest.approx(want, rel=1e-5)


def _fsdp_resume_worker(rank: int, world: int, port: int, folder: str, run: str, crash_after: int, resume: bool) -> None:
    _setup(rank, world, port)
    from clipo.testing import build_tiny_trainer
    from clipo.training.checkpoint import full_model_state

    trainer = build_tiny_trainer([
        f"data.train={folder}/train.jsonl", "data.eval=[]", f"trainer.output_dir={folder}/{run}",
        "trainer.parallel=fsdp", "trainer.prompts_per_step=2", "trainer.max_steps=3", "trainer.save_every=1",
        "trainer.micro_batch_size=4", "trainer.tensorboard=false", "clipo.head_size=8", "clipo.level=batch",
        "algorithm.name=dapo", f"trainer.resume={str(resume).lower()}"])
    original = trainer.train_step

    def maybe_crash():
        if crash_after and trainer.step == crash_after:
            raise KeyboardInterrupt(f"simulated kill after step {crash_after}")
        return original()

    trainer.train_step = maybe_crash
    try:
        trainer.fit()
    except KeyboardInterrupt:
        return
    state = {k: v.clone() for k, v in full_model_state(trainer.model, every_process=True).items()}
    torch.save({"policy": state, "head": trainer.head_trainer.head.state_dict(), "step": trainer.step},
               f"{folder}/{run}-rank{rank}.pt")


@pytest.mark.slow
def test_fsdp_run_killed_after_step_1_resumes_to_the_same_numbers(tmp_path, assert_state_dicts_equal):
    # Real sampled rollouts (generated on the gathered weights), sharded checkpoints (torch.distributed.checkpoint)
    # every step, a kill after step 1, then trainer.resume=true: the same parameters and metrics as a run that
    # was never interrupted.
    rows = [{"prompt": f"{a}+{b}=?", "answer": str(a + b)} for a in range(4) for b in range(4)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    mp.spawn(_fsdp_resume_worker, args=(2, _free_port(), str(tmp_path), "whole", 0, False), nprocs=2)
    mp.spawn(_fsdp_resume_worker, args=(2, _free_port(), str(tmp_path), "killed", 1, False), nprocs=2)
    assert (tmp_path / "killed" / "checkpoints" / "step_000001" / "sharded").is_dir()
    assert not (tmp_path / "killed-rank0.pt").exists()
    mp.spawn(_fsdp_resume_worker, args=(2, _free_port(), str(tmp_path), "killed", 0, True), nprocs=2)
    whole, resumed = (torch.load(tmp_path / f"{run}-rank0.pt", weights_only=False) for run in ("whole", "killed"))
    assert whole["step"] == resumed["step"] == 3
    assert_state_dicts_equal(whole["policy"], resumed["policy"])
    assert_state_dicts_equal(whole["head"], resumed["head"])
    rows_whole, rows_killed = ([json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
                               for run in ("whole", "killed"))
    assert [r["step"] for r in rows_killed] == [r["step"] for r in rows_whole] == [1, 2, 3]
    for a, b in zip(rows_whole, rows_killed):
        for key in ("reward/accuracy", "actor/pg_loss", "contrastive/loss", "actor/grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), (a["step"], key)
    # final/ is one consolidated Hugging Face model, equal to the gathered shards.
    from transformers import AutoModelForCausalLM

    final = AutoModelForCausalLM.from_pretrained(tmp_path / "killed" / "final").state_dict()
    assert_state_dicts_equal(final, resumed["policy"])
