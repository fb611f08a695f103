"""examples/trl_grpo_clipo.py runs end to end on the paper's GSM8K parquet with the tiny model (--tiny)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

ROOT = Path(__file__).resolve().parents[2]
GSM8K = ROOT.parent / "shared" / "data" / "clipo" / "train" / "gsm8k.parquet"


@pytest.mark.skipif(not GSM8K.is_file(), reason="the CLIPO paper's data is not in ../shared/data/clipo")
def test_example_runs_two_steps_on_the_cpu(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "examples/trl_grpo_clipo.py", "--data", str(GSM8K), "--tiny",
                           "--max-steps", "2", "--output-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    logged = [e for e in state["log_history"] if "clipo/loss" in e]
    assert len(logged) == 2 and all("rewards/math_reward/mean" in e for e in logged)
    assert (out / "checkpoint-2" / "clipo_head.pt").is_file()
    assert (out / "clipo_head" / "head.safetensors").is_file()


def test_example_names_the_missing_data_flag(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CLIPO_DATA_DIR"}
    done = subprocess.run([sys.executable, "examples/trl_grpo_clipo.py", "--data", str(tmp_path / "nope.parquet"),
                           "--tiny"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "--data:" in done.stderr and "gsm8k.parquet" in done.stderr
