"""trainer.parallel: which engine a run gets for its number of processes, and the config check."""
import pytest

from clipo.training.config import ConfigError, load_config
from clipo.training.parallel import resolve_mode


def test_auto_is_ddp_on_several_processes_and_none_on_one():
    assert resolve_mode("auto", 1) == "none" and resolve_mode("auto", 4) == "ddp"
    assert resolve_mode("fsdp", 8) == "fsdp" and resolve_mode("ddp", 2) == "ddp" and resolve_mode("none", 1) == "none"


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_a_cluster_mode_in_one_process_trains_plainly_and_says_so(mode):
    with pytest.warns(UserWarning, match=f"trainer.parallel={mode} in a single process"):
        assert resolve_mode(mode, 1) == "none"


def test_none_on_several_processes_is_refused():
    with pytest.raises(ValueError, match="replicas would drift apart"):
        resolve_mode("none", 2)


def test_config_names_the_choices():
    with pytest.raises(ConfigError, match="trainer.parallel.*ddp.*fsdp"):
        load_config(overrides=["trainer.parallel=zero3"])
    with pytest.raises(ConfigError, match="trainer.save_dtype"):
        load_config(overrides=["trainer.save_dtype=int8"])
