"""trainer.num_threads=0: the thread-count rule, by hand, and the trainer applying and announcing it."""
import logging

import pytest
import torch

from clipo.testing import build_tiny_trainer
from clipo.training import threads
from clipo.training.config import ConfigError, load_config
from clipo.training.threads import CpuInfo, choose_threads


@pytest.mark.parametrize("cpu, expected", [
    (CpuInfo(logical=16, physical=8, quota=None, other=0), 8),        # idle: every physical core, not 16
    (CpuInfo(logical=16, physical=8, quota=None, other=0.4), 8),        # a little background work
    (CpuInfo(logical=16, physical=8, quota=None, other=3), 5),        # 3 other busy processes
    (CpuInfo(logical=2, physical=2, quota=None, other=1.2), 1),         # one other job on a 2-core machine
    (CpuInfo(logical=2, physical=2, quota=None, other=5), 1),         # overloaded: never below 1
    (CpuInfo(logical=16, physical=8, quota=2.5, other=0), 2),         # a container limited to 2.5 CPUs
    (CpuInfo(logical=4, physical=8, quota=None, other=0), 4),         # affinity narrower than the machine
])
def test_the_rule(cpu, expected):
    count, why = choose_threads(cpu)
    assert count == expected and why


def test_minus_one_and_counts_are_accepted_and_below_is_an_error():
    assert load_config(overrides=["data.train=builtin:arithmetic", "trainer.num_threads=-1"]).trainer.num_threads == -1
    with pytest.raises(ConfigError, match="trainer.num_threads"):
        load_config(overrides=["data.train=builtin:arithmetic", "trainer.num_threads=-2"])


def test_the_trainer_applies_and_announces_the_choice(prompts_file, tmp_path, caplog, monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "detect_cpu", lambda: CpuInfo(logical=2, physical=2, quota=None, other=1.3))
    monkeypatch.setattr(threads, "_announced", {})
    monkeypatch.setattr(threads, "_decided", {})
    try:
        torch.set_num_threads(2)
        with caplog.at_level(logging.INFO, logger="clipo.training"):
            build_tiny_trainer([f"data.train={prompts_file}", f"trainer.output_dir={tmp_path}", "trainer.num_threads=0"])
        assert torch.get_num_threads() == 1  # one of the two cores is busy
        messages = [r.getMessage() for r in caplog.records if "torch thread" in r.getMessage()]
        assert len(messages) == 1 and "1 torch thread(s)" in messages[0] and "trainer.num_threads" in messages[0]
        monkeypatch.setattr(threads, "detect_cpu", lambda: CpuInfo(logical=2, physical=2, quota=None, other=0))
        build_tiny_trainer([f"data.train={prompts_file}", f"trainer.output_dir={tmp_path}/a", "trainer.num_threads=0"])
        assert torch.get_num_threads() == 1  # decided once per process 
        torch.set_num_threads(2)
        build_tiny_trainer([f"data.train={prompts_file}", f"trainer.output_dir={tmp_path}/b", "trainer.num_threads=-1"])
        assert torch.get_num_threads() == 2  # left alone
        build_tiny_trainer([f"data.train={prompts_file}", f"trainer.output_dir={tmp_path}/c", "trainer.num_threads=1"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_another_busy_process_is_seen_and_this_process_is_not(tmp_path):
    import subprocess
    import sys
    import threading
    import time

    from clipo.training.threads import other_busy_cpus

    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert other_busy_cpus(0.5) >= 0.6  # one core spinning in another process
    finally:
        child.kill()
        child.wait()
    stop = threading.Event()
    spinner = threading.Thread(target=lambda: [None for _ in iter(stop.is_set, True)])
    spinner.start()
    try:
        busy_here = other_busy_cpus(0.5)  # this process spinning: its own time is excluded
    finally:
        stop.set()
        spinner.join()
    assert busy_here < 0.6
