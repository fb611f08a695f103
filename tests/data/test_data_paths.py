"""Where relative data paths are found: the working directory first, then data.root / $CLIPO_DATA_DIR."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from clipo.apps.specs import resolve_data
from clipo.data import DATA_DIR_ENV, resolve_data_path
from clipo.training.config import ConfigError, load_config


@pytest.fixture
def data_dir(tmp_path):
    root = tmp_path / "paper"
    (root / "train").mkdir(parents=True)
    rows = [{"prompt": "1+1?", "answer": "2"}, {"prompt": "2+2?", "answer": "4"}]
    (root / "train" / "toy.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_relative_paths_fall_back_to_the_data_root(data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert resolve_data_path("train/toy.jsonl") == Path("train/toy.jsonl")  # not found anywhere: unchanged
    assert resolve_data_path("train/toy.jsonl", data_dir) == data_dir / "train" / "toy.jsonl"
    monkeypatch.setenv(DATA_DIR_ENV, str(data_dir))
    assert resolve_data_path("train/toy.jsonl") == data_dir / "train" / "toy.jsonl"
    # The working directory wins over the root, and an explicit root over the environment variable.
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "toy.jsonl").write_text("")
    assert resolve_data_path("train/toy.jsonl") == Path("train/toy.jsonl")
    assert resolve_data_path(data_dir / "train" / "toy.jsonl", "/nowhere") == data_dir / "train" / "toy.jsonl"


def test_config_data_root_loads_the_file(data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    config = load_config(overrides=["data.train=train/toy.jsonl", f"data.root={data_dir}"])
    assert [e.ground_truth for e in resolve_data(config.data.train, config)] == ["2", "4"]
    config = load_config(overrides=["data.train=train/toy.jsonl"])
    with pytest.raises(ConfigError, match=f"train/toy.jsonl.*{DATA_DIR_ENV}"):
        resolve_data(config.data.train, config)


def test_paper_recipe_finds_its_files_through_the_environment_variable(shared_data, tmp_path):
    # The GSM8K recipe names train/gsm8k.parquet; with CLIPO_DATA_DIR set, `clipo config` resolves and the
    # specs load the real parquet files (no model is loaded).
    code = ("from clipo.apps.specs import load_eval_sets, resolve_data; from clipo.training.config import load_config;"
            "c = load_config('clipo/recipes/gsm8k_qwen2.5-0.5b.yaml');"
            "print(len(resolve_data(c.data.train, c)), sorted(load_eval_sets(c)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True,
                         text=True, env={**__import__("os").environ, DATA_DIR_ENV: str(shared_data)}, check=True)
    assert out.stdout.split()[0] == "7473", out.stdout  # rows of the paper's GSM8K training file
