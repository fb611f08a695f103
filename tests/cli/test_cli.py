"""The `clipo` command line, called in-process (clipo.apps.cli.main) and once as a subprocess."""
import json
import random
import subprocess
import sys

import pytest
import yaml

from clipo.apps.cli import main


def test_config_lists_every_section_and_key(capsys):
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    for key in ("trainer:", "max_steps", "algorithm:", "eps_high", "clipo:", "head_size", "rollout:", "top_p"):
        assert key in out


def test_config_prints_the_resolved_config(capsys, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("rollout:\n  n: 3\n")
    assert main(["config", "--config", str(path), "algorithm.name=dapo"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["rollout"]["n"] == 3
    assert resolved["algorithm"]["name"] == "dapo" and resolved["algorithm"]["eps_high"] == 0.28
    assert resolved["reward"]["incorrect_score"] == -1.0


@pytest.mark.parametrize("argv, words", [
    (["config", "trainer.max_step=3"], "did you mean 'max_steps'"),
    (["config", "rollout.n=two"], "rollout.n"),
    (["train", "trainer.mini_batches=99"], "trainer.mini_batches"),
    (["eval", "--model", "nowhere", "trainer.lr=x"], "trainer.lr"),
])
def test_config_error_exits_2_with_message_on_stderr(capsys, argv, words):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "config error" in captured.err and words in captured.err
    assert words not in captured.out


def test_eval_without_eval_data_exits_2(capsys, tmp_path):
    assert main(["eval", "--model", str(tmp_path), "data.eval=[]"]) == 2
    assert "data.eval" in capsys.readouterr().err


def test_report_on_missing_folder_exits_2(capsys, tmp_path):
    assert main(["report", str(tmp_path / "no_run")]) == 2
    assert capsys.readouterr().err


def test_module_help_in_a_subprocess():
    result = subprocess.run([sys.executable, "-m", "clipo.apps.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for command in ("train", "eval", "report", "config"):
        assert command in result.stdout


@pytest.fixture(scope="module")
def arithmetic_jsonl(tmp_path_factory):
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("data") / "arith.jsonl"
    rows = []
    for _ in range(16):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        rows.append({"prompt": f"What is {a}+{b}? Put the answer in \\boxed{{}}.", "answer": str(a + b)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_train_eval_report_on_a_saved_tiny_model(tmp_path, tiny_model_dir, arithmetic_jsonl, capsys):
    run_dir = tmp_path / "run"
    config_path = tmp_path / "train.yaml"
    config_path.write_text(yaml.safe_dump({
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"train": str(arithmetic_jsonl), "eval": [], "max_eval_examples": 4},
        "reward": {"format_policy": "lenient"},
        "clipo": {"head_size": 16},
        "rollout": {"n": 2, "max_new_tokens": 8, "micro_batch_size": 8},
        "trainer": {"prompts_per_step": 2, "max_steps": 2, "lr": 1e-3, "micro_batch_size": 4,
                    "output_dir": str(run_dir), "save_every": 0, "progress": False, "tensorboard": False,
                    "device": "cpu"},
    }))
    assert main(["train", "--config", str(config_path)]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert [r["step"] for r in rows] == [1, 2]
    assert (run_dir / "final" / "config.json").is_file() and (run_dir / "final" / "tokenizer_config.json").is_file()

    # eval on the run folder uses its final/ model and writes the results beside it.
    assert main(["eval", "--model", str(run_dir), f"data.eval={arithmetic_jsonl}", "data.max_eval_examples=4",
                 "rollout.max_new_tokens=8", "reward.format_policy=lenient", "trainer.device=cpu"]) == 0
    results_path = run_dir / "final" / "eval_results.json"
    assert results_path.is_file(), capsys.readouterr()
    results = json.loads(results_path.read_text())
    assert len(results) == 1
    (scores,) = results.values()
    assert 0.0 <= scores["accuracy"] <= 1.0
    assert any(k.startswith("pass@") for k in scores)

    # --output puts the results elsewhere.
    other = tmp_path / "elsewhere.json"
    assert main(["eval", "--model", str(run_dir), "--output", str(other), f"data.eval={arithmetic_jsonl}",
                 "data.max_eval_examples=2", "rollout.max_new_tokens=4"]) == 0
    assert json.loads(other.read_text()).keys() == results.keys()

    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report" / "report.md").is_file()
    assert main(["report", str(run_dir), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.md").is_file()
