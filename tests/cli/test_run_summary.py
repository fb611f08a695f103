"""`clipo train` / `clipo eval` / `clipo report` say what happened: policy updates vs skips, a warning when
nothing was learned, the step a resumed run continued from, and the completions `clipo eval` scored."""
import json
import math
import random

import pytest
import yaml

from clipo.apps.cli import main
from clipo.apps.report.markdown import learning_summary, read_learning_summary


def test_counts_updates_and_skips():
    summary = learning_summary({"actor/update_skipped": [0.0, 1.0, 0.0],
                                "rollout/zero_variance_groups": [0.5, 1.0, 0.25]})
    assert (summary["steps"], summary["updated"], summary["skipped"], summary["warning"]) == (3, 2, 1, None)


def test_warns_when_every_step_skipped():
    summary = learning_summary({"actor/update_skipped": [1.0, 1.0]})
    assert summary["updated"] == 0 and "every step skipped" in summary["warning"]


def test_warns_when_every_group_is_uniform():
    summary = learning_summary({"actor/update_skipped": [0.0, 0.0], "rollout/zero_variance_groups": [1.0, 1.0]})
    assert "uniform" in summary["warning"]


def test_warns_when_every_advantage_is_zero():
    summary = learning_summary({"advantage/abs_mean": [0.0, 0.0], "reward/mean": [0.1, math.nan]})
    assert "advantage" in summary["warning"]


def test_reads_metrics_jsonl_with_a_repeated_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"step": 1, "actor/update_skipped": 1.0}, {"step": 1, "actor/update_skipped": 0.0},
        {"step": 2, "actor/update_skipped": 0.0}]) + "\nnot json\n")
    summary = read_learning_summary(path)
    assert (summary["steps"], summary["updated"], summary["skipped"]) == (2, 2, 0)


@pytest.fixture(scope="module")
def arithmetic_jsonl(tmp_path_factory):
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("data") / "arith.jsonl"
    rows = [{"prompt": f"What is {a}+{b}? Put the answer in \\boxed{{}}.", "answer": str(a + b)}
            for a, b in ((rng.randint(0, 9), rng.randint(0, 9)) for _ in range(8))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_train_resume_eval_report_say_what_happened(tmp_path, tiny_model_dir, arithmetic_jsonl, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"train": str(arithmetic_jsonl), "eval": []},
        "reward": {"format_policy": "lenient"},
        "clipo": {"head_size": 16},
        "rollout": {"n": 2, "max_new_tokens": 4, "micro_batch_size": 8},
        "trainer": {"prompts_per_step": 2, "max_steps": 1, "lr": 1e-3, "micro_batch_size": 4,
                    "output_dir": str(run_dir), "save_every": 0, "progress": False, "tensorboard": False,
                    "device": "cpu"},
    }))
    assert main(["train", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    summary = read_learning_summary(run_dir / "metrics.jsonl")
    assert f"{summary['updated']} updated the policy, {summary['skipped']} skipped" in out
    assert summary["updated"] + summary["skipped"] == 1
    assert ("nothing was learned" in out) == (summary["warning"] is not None)

    assert main(["train", "--config", str(config), "trainer.resume=true", "trainer.max_steps=2"]) == 0
    assert "trained 2 steps (resumed from step 1)" in capsys.readouterr().out

    # eval of a run folder trained from a GGUF model: final/ is safetensors, so model.gguf_file is dropped.
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    saved["model"]["gguf_file"] = "model.Q8_0.gguf"
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    assert main(["eval", "--model", str(run_dir), f"data.eval={arithmetic_jsonl}", "data.max_eval_examples=2",
                 "rollout.max_new_tokens=4", "rollout.eval_n=2"]) == 0
    assert (run_dir / "final" / "eval_results.json").is_file()
    samples = [json.loads(line) for line in (run_dir / "final" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4 and {"response", "score", "ground_truth"} <= samples[0].keys()
    assert "samples.jsonl" in capsys.readouterr().out

    # a plain model folder is never written into: the results go to the working directory.
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["eval", "--model", str(tiny_model_dir), f"data.eval={arithmetic_jsonl}", "data.max_eval_examples=1",
                 "rollout.max_new_tokens=4", "trainer.device=cpu"]) == 0
    assert (work / "eval_results.json").is_file() and (work / "samples.jsonl").is_file()
    assert not (tiny_model_dir / "eval_results.json").exists()
    assert str(work / "eval_results.json") in capsys.readouterr().out

    assert main(["report", str(run_dir)]) == 0
    report = (run_dir / "report" / "report.md").read_text()
    summary = read_learning_summary(run_dir / "metrics.jsonl")
    assert f"{summary['updated']} step(s) updated the policy, {summary['skipped']} skipped" in report


def test_running_the_demo_again_writes_to_the_next_free_folder(tmp_path, capsys):
    from clipo.apps.cli import _next_free_demo_folder
    from clipo.training.config import load_config

    first = tmp_path / "demo"
    for folder in (first, tmp_path / "demo-2"):  # two earlier demo runs
        folder.mkdir()
        (folder / "metrics.jsonl").write_text('{"step": 1}\n')
    config = load_config("demo", [f"trainer.output_dir={first}"])
    _next_free_demo_folder(config, [])  # the folder came from the recipe, not from the user
    assert config.trainer.output_dir == str(tmp_path / "demo-3")
    assert "holds the previous demo run" in capsys.readouterr().out
    # A folder the user named, or a resume, is left alone (the usual refusal / resume then applies).
    for overrides in ([f"trainer.output_dir={first}"], ["trainer.resume=true"]):
        config = load_config("demo", [f"trainer.output_dir={first}", *overrides])
        _next_free_demo_folder(config, overrides)
        assert config.trainer.output_dir == str(first)
