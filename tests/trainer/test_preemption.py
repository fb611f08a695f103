"""Preemption with real signals: SIGTERM/SIGINT during fit() finish the step, checkpoint, and exit 143/130 with a
one-line resume hint; a second signal exits at once; the resumed run ends equal to an uninterrupted one."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from clipo.testing import build_tiny_trainer
from clipo.training.run_folder import RunFolder
from clipo.training.signals import Preempted, PreemptionGuard
from clipo.training.tracking import read_metrics

STEPS = 3
COMMON = ("data.eval=[]", "trainer.tensorboard=false", "trainer.log_samples=0", "trainer.embedding_snapshots=0",
          "trainer.save_every=0", "algorithm.name=dapo", "trainer.num_threads=1", f"trainer.max_steps={STEPS}")
KEYS = ("reward/accuracy", "actor/pg_loss", "contrastive/loss", "response/length_mean", "actor/grad_norm")


def overrides(prompts_file, output_dir, *extra):
    return [f"data.train={prompts_file}", f"trainer.output_dir={output_dir}", *COMMON, *extra]


def start_cli(prompts_file, output_dir, *, slow_after_step_1=0.0):
    """``clipo train`` (clipo.apps.cli.main) in a subprocess, its trainer the tiny one of clipo.testing."""
    args = overrides(prompts_file, output_dir)
    code = textwrap.dedent(f"""
        import sys, time
        from clipo import testing
        from clipo.apps import cli
        from clipo.rewards import register_reward

        register_reward("tiny_even_length", testing.even_length_reward, overwrite=True)
        args = {args!r}

        def build(config, **kwargs):
            trainer = testing.build_tiny_trainer(args)
            step = trainer.train_step
            def slow_step():
                if trainer.step >= 1:
                    time.sleep({slow_after_step_1})
                return step()
            trainer.train_step = slow_step
            return trainer

        cli.build_trainer = build
        sys.exit(cli.main(["train", "model.name_or_path=tiny", *testing.TINY_TRAINER_OVERRIDES, *args]))
    """)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def wait_for_first_metrics_line(process, output_dir, timeout=120.0):
    metrics = RunFolder(output_dir).metrics
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.is_file() and metrics.read_text().count("\n") >= 1:
            return
        if process.poll() is not None:
            raise AssertionError(f"the run ended first (rc {process.returncode}): {process.stderr.read()[-2000:]}")
        time.sleep(0.02)
    raise AssertionError("no metrics line in time")


def test_sigterm_checkpoints_the_finished_step_and_the_resumed_run_equals_an_uninterrupted_one(
        prompts_file, tmp_path, assert_state_dicts_equal):
    stopped_dir = tmp_path / "preempted"
    process = start_cli(prompts_file, stopped_dir, slow_after_step_1=0.5)  # so the signal lands before the end
    wait_for_first_metrics_line(process, stopped_dir)
    os.kill(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-3000:]
    last_line = err.strip().splitlines()[-1]
    assert "SIGTERM" in last_line and "trainer.resume=true" in last_line and str(stopped_dir) in last_line

    rows = read_metrics(stopped_dir)
    step = rows[-1]["step"]
    assert 1 <= step < STEPS and [r["step"] for r in rows] == list(range(1, step + 1))  # no step abandoned midway
    assert f"after step {step}" in last_line
    run = RunFolder(stopped_dir)
    assert [p.name for p in run.checkpoint_folders()] == [f"step_{step:06d}"]
    assert run.latest_pointer.read_text() == f"step_{step:06d}"
    assert not run.final.exists()

    resumed = build_tiny_trainer(overrides(prompts_file, stopped_dir, "trainer.resume=true"))
    resumed.fit()
    whole = build_tiny_trainer(overrides(prompts_file, tmp_path / "whole"))
    whole.fit()
    a, b = read_metrics(tmp_path / "whole"), read_metrics(stopped_dir)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, STEPS + 1))
    for x, y in zip(a, b):
        for key in KEYS:
            assert x[key] == pytest.approx(y[key], rel=1e-6, abs=1e-9), (x["step"], key)
    assert_state_dicts_equal(whole.model.state_dict(), resumed.model.state_dict())
    assert_state_dicts_equal(whole.head_trainer.head.state_dict(), resumed.head_trainer.head.state_dict())


def test_a_second_signal_exits_at_once_without_a_checkpoint(prompts_file, tmp_path):
    # Steps after the first take 3 s, so both signals land inside step 2.
    process = start_cli(prompts_file, tmp_path, slow_after_step_1=3.0)
    wait_for_first_metrics_line(process, tmp_path)
    os.kill(process.pid, signal.SIGINT)
    time.sleep(0.3)
    sent = time.monotonic()
    os.kill(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert time.monotonic() - sent < 2.0
    assert process.returncode == 130, err[-3000:]
    assert "second SIGINT" in err.strip().splitlines()[-1]
    assert RunFolder(tmp_path).checkpoint_folders() == []
    assert [r["step"] for r in read_metrics(tmp_path)] == [1]


def test_the_handlers_are_installed_only_during_fit(prompts_file, tmp_path):
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    seen = {}
    trainer = build_tiny_trainer(overrides(prompts_file, tmp_path, "trainer.max_steps=1"))
    step = trainer.train_step

    def record_handlers():
        seen.update({s: signal.getsignal(s) for s in before})
        return step()

    trainer.train_step = record_handlers
    trainer.fit()
    assert all(seen[s] != before[s] for s in before)
    assert {s: signal.getsignal(s) for s in before} == before


def test_preempted_message_and_exit_codes():
    stop = Preempted(signal.SIGINT, 7, None, "runs/x")
    assert stop.exit_code == 130 and Preempted(signal.SIGTERM, 1, None, "r").exit_code == 143
    assert "\n" not in str(stop) and "after step 7" in str(stop) and "trainer.resume=true" in str(stop)
    with PreemptionGuard() as guard:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert guard.requested and guard.signum == signal.SIGTERM


def _start_plain(prompts_file, output_dir, args):
    """A tiny ``trainer.resume=true`` run in a subprocess; prints ``training`` just before fit()."""
    code = textwrap.dedent(f"""
        from clipo import testing
        trainer = testing.build_tiny_trainer({args!r})
        print("training", flush=True)
        trainer.fit()
    """)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


@pytest.mark.slow
def test_random_sigkills_then_resumes_end_equal_to_an_uninterrupted_run(prompts_file, tmp_path):
    import random

    from safetensors.torch import load_file

    steps = 24  # a step and its checkpoint take ~0.3 s: each kill lands within the first few steps of a run
    killed_dir = tmp_path / "killed"
    args = [*overrides(prompts_file, killed_dir, f"trainer.max_steps={steps}", "trainer.save_every=1",
                       "trainer.resume=true")]
    rng = random.Random(0)
    kills = []
    for _ in range(12):  # kill at a random moment after fit() starts: mid-step, mid-checkpoint, mid-log ...
        process = _start_plain(prompts_file, killed_dir, args)
        assert process.stdout.readline().strip() == "training"
        delay = rng.uniform(0.0, 0.9)
        time.sleep(delay)
        if process.poll() is not None:
            break
        process.kill()
        process.wait()
        kills.append((round(delay, 2), len(RunFolder(killed_dir).checkpoint_folders())))
    assert len(kills) >= 10, kills
    process = _start_plain(prompts_file, killed_dir, args)
    process.communicate(timeout=300)
    assert process.returncode == 0, kills

    whole = build_tiny_trainer(overrides(prompts_file, tmp_path / "whole", f"trainer.max_steps={steps}",
                                         "trainer.save_every=1"))
    whole.fit()
    a, b = read_metrics(tmp_path / "whole"), read_metrics(killed_dir)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, steps + 1)), kills
    for x, y in zip(a, b):
        for key in KEYS:
            assert x[key] == pytest.approx(y[key], rel=1e-6, abs=1e-9), (x["step"], key, kills)
    final_a = load_file(next(RunFolder(tmp_path / "whole").final.glob("*.safetensors")))
    final_b = load_file(next(RunFolder(killed_dir).final.glob("*.safetensors")))
    assert final_a.keys() == final_b.keys()
    for name in final_a:
        assert final_a[name].equal(final_b[name]), name
    run = RunFolder(killed_dir)
    assert not run.stale_checkpoint_tmps() and not run.stale_latest_tmps()
