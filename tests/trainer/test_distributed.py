"""Two CPU processes (gloo on loopback): data-parallel training keeps the policy and the head in sync."""
import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from clipo.training.distributed import all_gather_rows, shard


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _setup(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)


def _train_worker(rank: int, world: int, port: int, folder: str, algorithm: str) -> None:
    _setup(rank, world, port)
    from clipo.testing import build_tiny_trainer

    trainer = build_tiny_trainer([
        f"data.train={folder}/train.jsonl", "data.eval=[]", f"trainer.output_dir={folder}/run",
        "trainer.prompts_per_step=2", "trainer.micro_batch_size=4", "trainer.tensorboard=false",
        "clipo.head_size=8", "clipo.level=batch", f"algorithm.name={algorithm}", "algorithm.kl_coef=0"])
    seen = []
    original_collect = trainer.collect

    def recording_collect():
        rollouts, examples, scores, stats = original_collect()
        seen.extend(e.index for e in examples)
        return rollouts, examples, scores, stats

    trainer.collect = recording_collect
    trainer.fit()
    policy = trainer.accelerator.unwrap_model(trainer.model)
    torch.save({"policy": {k: v.detach().clone() for k, v in policy.state_dict().items()},
                "head": trainer.head_trainer.head.state_dict(),
                "prompts": seen}, f"{folder}/rank{rank}.pt")


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


@pytest.mark.parametrize("algorithm", ["grpo", "dapo"])  # DAPO: processes agree on how many groups to keep
def test_two_process_training_keeps_policy_and_head_in_sync(tmp_path, algorithm):
    rows = [{"prompt": f"{a}+{b}=?", "answer": str(a + b)} for a in range(4) for b in range(4)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    mp.spawn(_train_worker, args=(2, _free_port(), str(tmp_path), algorithm), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    # DDP averages gradients, so both replicas take the same optimizer steps
    for name, value in ranks[0]["policy"].items():
        assert torch.equal(value, ranks[1]["policy"][name]), name
    # every process takes the same head step on the gathered global batch
    for name, value in ranks[0]["head"].items():
        assert torch.equal(value, ranks[1]["head"][name]), name
    # each process trained on its own prompts (a group never spans processes)
    assert not set(ranks[0]["prompts"]) & set(ranks[1]["prompts"])
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]  # written once, by the main process
