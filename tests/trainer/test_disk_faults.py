"""Real disk faults, not injected ones: a full file system (a small tmpfs) and a read-only one.

Mounting needs root (CAP_SYS_ADMIN); elsewhere these tests skip. tests/trainer/test_run_safety.py covers the same
paths with injected errors on any machine."""
import os
import subprocess
import sys

import pytest

from clipo.testing import build_tiny_trainer
from clipo.training.checkpoint import CheckpointWriteError, latest_checkpoint
from clipo.training.run_folder import RunFolder
from clipo.training.tracking import read_metrics

COMMON = ("data.eval=[]", "trainer.tensorboard=false", "trainer.log_samples=0", "trainer.embedding_snapshots=0",
          "trainer.num_threads=1", "trainer.save_every=1")


def _mount(args: list[str]) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def small_fs(tmp_path):
    """A 32 MiB tmpfs at tmp_path/fs, unmounted afterwards."""
    point = tmp_path / "fs"
    point.mkdir()
    if not (hasattr(os, "geteuid") and os.geteuid() == 0 and _mount(["-t", "tmpfs", "-o", "size=32m", "tmpfs", str(point)])):
        pytest.skip("mounting a tmpfs needs root")
    yield point
    subprocess.run(["umount", "-l", str(point)], capture_output=True)


def fill(folder, leave_bytes):
    """Fill ``folder``'s file system until ``leave_bytes`` are left (a real full disk for what comes next)."""
    stats = os.statvfs(folder)
    free = stats.f_bavail * stats.f_frsize
    with open(folder / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave_bytes))
    return folder / "filler"


def test_a_full_disk_is_one_line_keeps_the_previous_checkpoint_and_resumes_once_space_is_freed(prompts_file, small_fs):
    out = small_fs / "run"
    run = RunFolder(out)
    trainer = build_tiny_trainer([f"data.train={prompts_file}", f"trainer.output_dir={out}", *COMMON,
                                  "trainer.max_steps=3"])
    original_step, filler = trainer.train_step, []

    def fill_after_checkpoint_1():
        if trainer.step == 1:  # checkpoint 1 is on disk; now the disk fills up (room for a metrics line only)
            filler.append(fill(small_fs, leave_bytes=64 * 1024))
        return original_step()

    trainer.train_step = fill_after_checkpoint_1
    with pytest.raises(CheckpointWriteError) as failed:
        trainer.fit()
    message = str(failed.value)
    assert "\n" not in message and "No space left on device" in message and "step_000001 is intact" in message
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["latest", "step_000001"]  # no partial folder left
    assert latest_checkpoint(out) == run.checkpoint(1)

    filler[0].unlink()  # the user frees space and resumes
    resumed = build_tiny_trainer([f"data.train={prompts_file}", f"trainer.output_dir={out}", *COMMON,
                                  "trainer.max_steps=3", "trainer.resume=true"])
    resumed.fit()
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3]
    assert latest_checkpoint(out) == run.checkpoint(3)


def test_resuming_in_a_read_only_folder_is_one_line_before_the_model_loads_and_keeps_the_checkpoint(
        prompts_file, small_fs):
    # (A folder cannot be remounted read-only while the run holds its files open, so the fault comes between runs.)
    out = small_fs / "run"
    run = RunFolder(out)
    build_tiny_trainer([f"data.train={prompts_file}", f"trainer.output_dir={out}", *COMMON, "trainer.max_steps=1"]).fit()
    before = {p: p.read_bytes() for p in run.checkpoint(1).rglob("*") if p.is_file()}
    assert _mount(["-o", "remount,ro", str(small_fs)])
    try:
        result = subprocess.run(
            [sys.executable, "-m", "clipo", "train", f"data.train={prompts_file}", "trainer.resume=true",
             "model.name_or_path=/nonexistent/model/that/would/fail/later", f"trainer.output_dir={out}"],
            capture_output=True, text=True, timeout=120)
    finally:
        assert _mount(["-o", "remount,rw", str(small_fs)])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "trainer.output_dir" in lines[0] and "not writable" in lines[0], result.stderr
    assert {p: p.read_bytes() for p in run.checkpoint(1).rglob("*") if p.is_file()} == before
    assert latest_checkpoint(out) == run.checkpoint(1)
    resumed = build_tiny_trainer([f"data.train={prompts_file}", f"trainer.output_dir={out}", *COMMON,
                                  "trainer.max_steps=2", "trainer.resume=true"])
    resumed.fit()
    assert [r["step"] for r in read_metrics(out)] == [1, 2]


def test_clipo_train_into_a_read_only_folder_is_one_line_before_the_model_loads(small_fs, prompts_file):
    assert _mount(["-o", "remount,ro", str(small_fs)])
    try:
        result = subprocess.run(
            [sys.executable, "-m", "clipo", "train", f"data.train={prompts_file}",
             "model.name_or_path=/nonexistent/model/that/would/fail/later", f"trainer.output_dir={small_fs / 'run'}"],
            capture_output=True, text=True, timeout=120)
    finally:
        _mount(["-o", "remount,rw", str(small_fs)])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "trainer.output_dir" in lines[0] and "not writable" in lines[0], result.stderr
