"""Never lose or mix runs: the run folder's identity and lock, and checkpoints that survive failures.

See clipo/training/run_safety.py and clipo/training/checkpoint.py.
"""
import errno
import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from clipo.testing import build_tiny_trainer
from clipo.training import checkpoint as ckpt
from clipo.training.checkpoint import CheckpointWriteError, latest_checkpoint
from clipo.training.config import ConfigError
from clipo.training.run_folder import RunFolder
from clipo.training.run_safety import claim_run_folder
from clipo.training.tracking import read_metrics

COMMON = ("data.eval=[]", "trainer.tensorboard=false", "trainer.log_samples=0", "trainer.embedding_snapshots=0",
          "trainer.num_threads=1")


def tiny(prompts_file, output_dir, *overrides):
    return build_tiny_trainer([f"data.train={prompts_file}", f"trainer.output_dir={output_dir}", *COMMON, *overrides])


# ---------------------------------------------------------------------------------------------- identity


def test_a_fresh_start_in_a_used_folder_refuses_in_one_line_and_the_ways_out_work(prompts_file, tmp_path):
    first = tiny(prompts_file, tmp_path, "trainer.max_steps=2", "trainer.save_every=1")
    first.fit()
    info = json.loads((tmp_path / "run.json").read_text())
    assert {"run_id", "started", "host", "pid", "config_hash"} <= set(info) and info["pid"] == os.getpid()
    metrics_before = (tmp_path / "metrics.jsonl").read_text()

    with pytest.raises(ConfigError) as refused:
        tiny(prompts_file, tmp_path, "trainer.max_steps=2").fit()
    message = str(refused.value)
    assert "\n" not in message and str(tmp_path) in message
    for way_out in ("trainer.resume=true", "trainer.output_dir", "trainer.overwrite=true"):
        assert way_out in message
    assert (tmp_path / "metrics.jsonl").read_text() == metrics_before  # nothing of the old run was touched

    # resume keeps the run id (max_steps already reached: nothing to train)
    tiny(prompts_file, tmp_path, "trainer.max_steps=2", "trainer.resume=true").fit()
    assert json.loads((tmp_path / "run.json").read_text())["run_id"] == info["run_id"]

    # overwrite clears the old run's files first and starts a new run
    (tmp_path / "notes.txt").write_text("mine")
    tiny(prompts_file, tmp_path, "trainer.max_steps=1", "trainer.overwrite=true").fit()
    assert json.loads((tmp_path / "run.json").read_text())["run_id"] != info["run_id"]
    assert [r["step"] for r in read_metrics(tmp_path)] == [1]
    assert [p.name for p in RunFolder(tmp_path).checkpoint_folders()] == ["step_000001"]
    assert (tmp_path / "notes.txt").read_text() == "mine"  # files the run did not write are kept


def test_a_second_run_on_a_locked_folder_refuses_and_a_killed_holder_does_not_block(prompts_file, tmp_path):
    held = claim_run_folder(tmp_path, resume=False, overwrite=False)
    try:
        with pytest.raises(ConfigError, match="in use by another run") as refused:
            tiny(prompts_file, tmp_path, "trainer.max_steps=1", "trainer.resume=true").fit()
        assert "\n" not in str(refused.value) and str(tmp_path) in str(refused.value)
    finally:
        held.release()

    # A process that holds the lock and is killed: the OS drops its lock, so a resume goes ahead.
    code = textwrap.dedent(f"""
        import sys, time
        from clipo.training.run_safety import claim_run_folder
        claim = claim_run_folder({str(tmp_path)!r}, resume=True, overwrite=False)
        print("locked", flush=True)
        time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match="in use by another run"):
            claim_run_folder(tmp_path, resume=True, overwrite=False)
    finally:
        holder.kill()
        holder.wait()
    tiny(prompts_file, tmp_path, "trainer.max_steps=1", "trainer.resume=true").fit()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1]


# ---------------------------------------------------------------------------------------------- checkpoints


def test_pruning_keeps_other_runs_checkpoints_and_the_newest(prompts_file, tmp_path):
    run = RunFolder(tmp_path)
    trainer = tiny(prompts_file, tmp_path, "trainer.max_steps=3", "trainer.save_every=1", "trainer.keep_checkpoints=1")
    trainer.fit()
    assert [p.name for p in run.checkpoint_folders()] == ["step_000003"]
    assert run.checkpoint_run_id(run.checkpoints / "step_000003") == trainer.run_id
    # A checkpoint of another run (say, copied in) is never pruned by this run.
    foreign = run.checkpoint(1)
    foreign.mkdir()
    (foreign / "trainer_state.pt").write_bytes(b"")
    run.write_checkpoint_run_id(foreign, "another-run")
    trainer.step = 4
    trainer.save()
    assert [p.name for p in run.checkpoint_folders()] == ["step_000001", "step_000004"]
    trainer.config.trainer.keep_checkpoints = 0  # even keep=0 keeps the newest
    trainer.step = 5
    trainer.save()
    assert [p.name for p in run.checkpoint_folders()] == ["step_000001", "step_000005"]


def test_a_latest_naming_a_missing_or_incomplete_folder_falls_back_with_a_warning(prompts_file, tmp_path, caplog):
    tiny(prompts_file, tmp_path, "trainer.max_steps=2", "trainer.save_every=1").fit()
    run = RunFolder(tmp_path)
    (run.checkpoint(3)).mkdir()  # incomplete: no trainer state
    run.latest_pointer.write_text("step_000003")
    with caplog.at_level(logging.WARNING, logger="clipo.training.checkpoint"):
        assert latest_checkpoint(tmp_path) == run.checkpoint(2)
    assert "step_000003" in caplog.text and "missing or incomplete" in caplog.text
    run.latest_pointer.write_text("step_000009")
    assert latest_checkpoint(tmp_path) == run.checkpoint(2)


def test_temporary_files_of_killed_writers_are_cleaned_at_resume(prompts_file, tmp_path):
    tiny(prompts_file, tmp_path, "trainer.max_steps=1", "trainer.save_every=1").fit()
    run = RunFolder(tmp_path)
    (run.checkpoints / ".tmp_step_000002_99999").mkdir()
    (run.checkpoints / ".tmp_step_000002_99999" / "half.bin").write_bytes(b"x")
    (run.checkpoints / ".latest.tmp99999").write_text("step_0000")
    (tmp_path / ".run.json.tmp99999").write_text("{")
    tiny(prompts_file, tmp_path, "trainer.max_steps=2", "trainer.resume=true").fit()
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["latest", "step_000001", "step_000002"]
    assert not (tmp_path / ".run.json.tmp99999").exists()


@pytest.mark.parametrize("where", ["trainer_state", "policy", "latest"])
def test_a_failed_checkpoint_write_is_one_line_and_keeps_the_previous_checkpoint(prompts_file, tmp_path, monkeypatch,
                                                                               where):
    run = RunFolder(tmp_path)
    trainer = tiny(prompts_file, tmp_path, "trainer.max_steps=4", "trainer.save_every=1")
    original_step = trainer.train_step

    def fail_at_step_2():
        if trainer.step == 1:  # after checkpoint 1, the disk fills up
            disk_full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(run.checkpoints / "x"))
            if where == "trainer_state":
                def torch_save(*args, **kwargs):
                    raise disk_full
                monkeypatch.setattr(ckpt.torch, "save", torch_save)
            elif where == "policy":
                def save_pretrained(*args, **kwargs):
                    raise disk_full
                monkeypatch.setattr(type(trainer.model), "save_pretrained", save_pretrained)
            else:
                def write_text_atomic(*args, **kwargs):
                    raise disk_full
                monkeypatch.setattr(ckpt, "write_text_atomic", write_text_atomic)
        return original_step()

    trainer.train_step = fail_at_step_2
    with pytest.raises(CheckpointWriteError) as failed:
        trainer.fit()
    message = str(failed.value)
    assert "\n" not in message and str(run.checkpoints) in message and "No space left on device" in message
    assert "step_000001 is intact" in message
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["latest", "step_000001"]  # no partial folder
    assert latest_checkpoint(tmp_path) == run.checkpoint(1)
    monkeypatch.undo()

    resumed = tiny(prompts_file, tmp_path, "trainer.max_steps=2", "trainer.resume=true")
    resumed.fit()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
