"""trainer.num_threads=0: the thread-count rule, by hand, and the trainer applying and announcing it."""
import logging

import pytest
import torch

from clipo.testing import build_tiny_trainer
from clipo.training.config import ConfigError, load_config
from clipo.training.threads import SMALL_MODEL_PARAMETERS, CpuInfo, choose_threads

BIG = 135_000_000  # SmolLM2-135M


@pytest.mark.parametrize("cpu, parameters, expected", [
    (CpuInfo(logical=16, physical=8, quota=None, load=0.5), BIG, 8),        # idle: every physical core, not 16
    (CpuInfo(logical=16, physical=8, quota=None, load=4.0), BIG, 5),        # 3 other busy processes
    (CpuInfo(logical=2, physical=2, quota=None, load=6.0), BIG, 1),         # overloaded: never below 1
    (CpuInfo(logical=16, physical=8, quota=2.5, load=0.0), BIG, 2),         # a container limited to 2.5 CPUs
    (CpuInfo(logical=4, physical=8, quota=None, load=0.0), BIG, 4),         # affinity narrower than the machine
    (CpuInfo(logical=16, physical=8, quota=None, load=0.0), SMALL_MODEL_PARAMETERS - 1, 1),  # tiny model
])
def test_the_rule(cpu, parameters, expected):
    threads, why = choose_threads(parameters, cpu)
    assert threads == expected and why


def test_minus_one_and_counts_are_accepted_and_below_is_an_error():
    assert load_config(overrides=["data.train=builtin:arithmetic", "trainer.num_threads=-1"]).trainer.num_threads == -1
    with pytest.raises(ConfigError, match="trainer.num_threads"):
        load_config(overrides=["data.train=builtin:arithmetic", "trainer.num_threads=-2"])


def test_the_trainer_applies_and_announces_the_choice(prompts_file, tmp_path, caplog):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with caplog.at_level(logging.INFO, logger="clipo.training"):
            build_tiny_trainer([f"data.train={prompts_file}", f"trainer.output_dir={tmp_path}", "trainer.num_threads=0"])
        assert torch.get_num_threads() == 1  # the tiny model is far below the threshold
        assert any("1 torch thread(s)" in r.getMessage() and "trainer.num_threads" in r.getMessage() for r in caplog.records)
        torch.set_num_threads(2)
        build_tiny_trainer([f"data.train={prompts_file}", f"trainer.output_dir={tmp_path}/b", "trainer.num_threads=-1"])
        assert torch.get_num_threads() == 2  # left alone
    finally:
        torch.set_num_threads(before)
