"""`clipo compare` and the per-problem scores it reads: the paired bootstrap against a naive loop, hand-computable
comparisons, user errors, and an end-to-end run on two tiny trained runs and a `clipo eval`."""
import ast
import json
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from clipo.apps.cli import main
from clipo.apps.compare import compare_runs, load_run, percentile_interval, resampled_mean_diffs
from clipo.training.run_folder import RunFolder, eval_output_files


def naive_percentile(values, q):
    """The q-quantile (0..1) of ``values`` with linear interpolation between order statistics (numpy's default)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def naive_bootstrap(base, other, rows):
    """The 95% interval of the mean paired difference over the resampled problem positions ``rows``."""
    means = []
    for row in rows:
        total = 0.0
        for j in row:
            total += other[j] - base[j]
        means.append(total / len(row))
    return naive_percentile(means, 0.025), naive_percentile(means, 0.975)


def naive_rows(n, resamples, seed):
    rng = random.Random(seed)
    return [[rng.randrange(n) for _ in range(n)] for _ in range(resamples)]


def scores(n, p, seed):
    rng = random.Random(seed)
    return [float(rng.random() < p) for _ in range(n)]


def test_bootstrap_matches_a_naive_loop_on_the_same_resamples():
    base, other = scores(60, 0.4, 1), [s / 4 for s in (int(4 * random.Random(2).random()) for _ in range(60))]
    rows = naive_rows(60, 500, seed=3)
    ours = percentile_interval(resampled_mean_diffs(np.array(base), np.array(other), np.array(rows)))
    assert ours == pytest.approx(naive_bootstrap(base, other, rows), abs=1e-12)


def test_bootstrap_interval_agrees_with_an_independent_naive_bootstrap(tmp_path):
    base, other = scores(200, 0.45, 4), scores(200, 0.6, 5)
    write_run(tmp_path / "a", {"gsm8k": base})
    write_run(tmp_path / "b", {"gsm8k": other})
    result = compare_runs([load_run(tmp_path / "a"), load_run(tmp_path / "b")], resamples=2000, seed=0)
    row, average = result["rows"]  # the set, and the in-domain average of that one set
    assert average["set"] == "in-domain avg" and average["runs"] == row["runs"]
    (entry,) = row["runs"]
    assert entry["diff"] == pytest.approx(sum(other) / 200 - sum(base) / 200)
    low, high = naive_bootstrap(base, other, naive_rows(200, 2000, seed=11))
    # Two bootstraps with different random draws: their percentiles agree to Monte-Carlo error (about 0.003 here).
    assert entry["ci"][0] == pytest.approx(low, abs=0.015) and entry["ci"][1] == pytest.approx(high, abs=0.015)
    assert entry["ci"][0] < entry["diff"] < entry["ci"][1]
    # A fixed seed: the same interval again.
    again = compare_runs([load_run(tmp_path / "a"), load_run(tmp_path / "b")], resamples=2000, seed=0)
    assert again["rows"][0]["runs"][0]["ci"] == entry["ci"]


def write_run(folder, sets, *, step=5, samples=1, indices=None):
    """A run folder whose eval_problems.jsonl holds ``sets`` ({set: [score per problem]}) at ``step``."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, values in sets.items():
        for position, value in enumerate(values):
            index = indices[position] if indices else position
            lines.append({"step": step, "set": name, "problem": position, "index": index,
                          "correct": round(value * samples), "n": samples, "score": value})
    with open(RunFolder(folder).eval_problems, "a") as handle:
        handle.write("".join(json.dumps(line) + "\n" for line in lines))
    return folder


def test_identical_runs_differ_by_zero_and_right_vs_wrong_by_one(tmp_path, capsys):
    values = {"gsm8k": [1.0, 0.0, 1.0, 1.0], "mmlu2k": [0.0, 1.0, 0.0]}
    write_run(tmp_path / "base", values)
    write_run(tmp_path / "same", values)
    write_run(tmp_path / "right", {"gsm8k": [1.0] * 4, "mmlu2k": [1.0] * 3})
    write_run(tmp_path / "wrong", {"gsm8k": [0.0] * 4, "mmlu2k": [0.0] * 3})
    out_json = tmp_path / "out" / "compare.json"
    assert main(["compare", str(tmp_path / "base"), str(tmp_path / "same"), "--json", str(out_json)]) == 0
    result = json.loads(out_json.read_text())
    for row in result["rows"]:
        (entry,) = row["runs"]
        assert entry["diff"] == 0 and entry["ci"] == [0, 0], row
    markdown = capsys.readouterr().out
    assert "| gsm8k | in | 4 | 75.0 | 75.0 | +0.0 [+0.0, +0.0] |" in markdown

    assert main(["compare", str(tmp_path / "wrong"), str(tmp_path / "right"), "--json", str(out_json)]) == 0
    result = json.loads(out_json.read_text())
    assert result["baseline"]["label"] == "wrong" and [r["label"] for r in result["runs"]] == ["right"]
    assert [row["set"] for row in result["rows"]] == ["gsm8k", "mmlu2k", "in-domain avg", "out-of-domain avg"]
    for row in result["rows"]:
        (entry,) = row["runs"]
        assert (row["baseline"], entry["score"], entry["diff"], entry["ci"]) == (0, 1, 1, [1, 1]), row
    markdown = capsys.readouterr().out
    assert "| set | domain | problems | wrong (baseline) | right | right − wrong [95% CI] |" in markdown
    assert "| **out-of-domain avg** | out | 1 set | 0.0 | 100.0 | +100.0 [+100.0, +100.0] |" in markdown


def test_domain_averages_are_unweighted_means_of_the_sets_with_their_interval(tmp_path):
    # Every problem of a set moves by the same amount, so each resampled difference is that amount.
    write_run(tmp_path / "a", {"gsm8k": [0.0] * 3, "gsm_p1": [0.5] * 5, "theoremqa": [0.25] * 2, "aime": [0.0]})
    write_run(tmp_path / "b", {"gsm8k": [1.0] * 3, "gsm_p1": [0.5] * 5, "theoremqa": [0.75] * 2, "mmlu2k": [1.0]})
    result = compare_runs([load_run(tmp_path / "a"), load_run(tmp_path / "b")], resamples=200)
    rows = {row["set"]: row for row in result["rows"]}
    assert list(rows) == ["gsm8k", "gsm_p1", "theoremqa", "in-domain avg", "out-of-domain avg"]  # common sets only
    ind = rows["in-domain avg"]
    assert ind["sets"] == ["gsm8k", "gsm_p1"] and ind["baseline"] == pytest.approx(0.25)
    assert ind["runs"][0]["score"] == pytest.approx(0.75)
    assert ind["runs"][0]["diff"] == pytest.approx(0.5) and ind["runs"][0]["ci"] == pytest.approx([0.5, 0.5])
    assert rows["out-of-domain avg"]["runs"][0]["ci"] == pytest.approx([0.5, 0.5])


def test_three_runs_share_the_baseline_and_the_resamples(tmp_path, capsys):
    base, b, c = scores(40, 0.5, 6), scores(40, 0.6, 7), scores(40, 0.3, 8)
    for name, values in (("base", base), ("b", b), ("c", c)):
        write_run(tmp_path / name, {"math": values}, samples=1)
    assert main(["compare", *(str(tmp_path / n) for n in ("base", "b", "c")), "--json", "-"]) == 0
    result = json.loads(capsys.readouterr().out)
    row = result["rows"][0]
    entries = {e["label"]: e for e in row["runs"]}
    assert entries["b"]["diff"] == pytest.approx((sum(b) - sum(base)) / 40)
    assert entries["c"]["diff"] == pytest.approx((sum(c) - sum(base)) / 40)


def test_the_last_evaluation_by_default_and_the_last_line_of_a_repeated_one(tmp_path):
    folder = write_run(tmp_path / "run", {"gsm8k": [0.0, 0.0]}, step=0)
    write_run(folder, {"gsm8k": [1.0, 0.0]}, step=10)
    write_run(folder, {"gsm8k": [1.0, 1.0]}, step=10)  # a resumed run evaluated step 10 again
    assert load_run(folder).step == 10 and load_run(folder).sets["gsm8k"].score == 1.0
    assert load_run(folder, step=0).sets["gsm8k"].score == 0.0


@pytest.mark.parametrize("case", ["missing", "no_evals", "empty", "no_common", "other_problems", "fewer", "step",
                                  "not_ours", "bad_value", "samples"])
def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys, case):
    base = write_run(tmp_path / "base", {"gsm8k": [1.0, 0.0, 1.0]})
    other = tmp_path / "other"
    if case == "no_evals":
        other.mkdir()
    elif case == "empty":
        other.mkdir()
        RunFolder(other).eval_problems.write_text("")
    elif case == "no_common":
        write_run(other, {"mmlu2k": [1.0, 0.0, 1.0]})
    elif case == "other_problems":
        write_run(other, {"gsm8k": [1.0, 0.0, 1.0]}, indices=[0, 1, 7])
    elif case == "fewer":
        write_run(other, {"gsm8k": [1.0, 0.0]})
    elif case == "step":
        write_run(other, {"gsm8k": [1.0, 0.0, 1.0]})
    elif case == "samples":
        write_run(other, {"gsm8k": [1.0, 0.25, 0.5]}, samples=4)
    elif case == "not_ours":
        other.mkdir()
        RunFolder(other).eval_problems.write_text('{"step": 1, "accuracy": 0.5}\n')
    elif case == "bad_value":
        write_run(other, {"gsm8k": [1.0, 0.0, 1.0]})
        with open(RunFolder(other).eval_problems, "a") as handle:
            handle.write('{"step": 9, "set": "gsm8k", "problem": 0, "index": 0, "n": 1, "score": "high"}\n')
    argv = ["compare", str(base), str(other)] + (["--step", "3"] if case == "step" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("clipo compare: ") and err.count("\n") == 1, err
    expected = {"missing": "no such run folder", "no_evals": "no per-problem evaluation", "empty": "no evaluations",
                "no_common": "no eval set in common", "other_problems": "set gsm8k", "fewer": "2 problems",
                "step": "no evaluation at step 3", "not_ours": "record 1 lacks set, problem, index, score, n",
                "bad_value": "record 4 has a non-number", "samples": "drew 4 samples per problem, base 1"}[case]
    assert expected in err, err


# ---------------------------------------------------------------------------------------------- real runs


def prompts(path, count, seed):
    rng = random.Random(seed)
    rows = [{"prompt": f"What is {a}+{b}?", "answer": str(a + b)}
            for a, b in ((rng.randint(0, 9), rng.randint(0, 9)) for _ in range(count))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_compare_two_real_tiny_runs_and_a_clipo_eval(tmp_path, tiny_model_dir, capsys):
    data = tmp_path / "data"
    data.mkdir()
    train = prompts(data / "train.jsonl", 8, seed=0)
    # Named as two sets of the gsm8k track (one in-domain, one out-of-domain), so the table has both averages.
    evals = [prompts(data / "gsm8k.jsonl", 6, seed=1), prompts(data / "theoremqa.jsonl", 5, seed=2)]
    runs = {}
    # Different seeds too: one 1-step update barely moves a tiny model, so with one seed both runs would sample the
    # same evaluation answers and every difference would be 0.
    for name, clipo_on, seed in (("grpo", False, 1), ("grpo_clipo", True, 2)):
        runs[name] = tmp_path / name
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump({
            "model": {"name_or_path": str(tiny_model_dir)},
            "data": {"train": str(train), "eval": [str(p) for p in evals]},
            "reward": {"verifier": "compare_rewards_for_tests:even_length"},
            "clipo": {"enabled": clipo_on, "head_size": 16},
            "rollout": {"n": 2, "max_new_tokens": 6, "micro_batch_size": 16, "eval_n": 4, "eval_temperature": 1.0},
            "trainer": {"prompts_per_step": 2, "max_steps": 1, "lr": 1e-2, "micro_batch_size": 4, "seed": seed,
                        "output_dir": str(runs[name]), "save_every": 0, "progress": False, "tensorboard": False,
                        "device": "cpu", "embedding_snapshots": 0},
        }))
        assert main(["train", "--config", str(config)]) == 0
    capsys.readouterr()

    # The trainer's final evaluation wrote one record per problem, whose mean is eval.jsonl's accuracy.
    folder = RunFolder(runs["grpo"])
    final = [json.loads(line) for line in folder.evals.read_text().splitlines()][-1]
    problems = [json.loads(line) for line in folder.eval_problems.read_text().splitlines()]
    for name, size in (("gsm8k", 6), ("theoremqa", 5)):
        mine = [p for p in problems if p["set"] == name and p["step"] == final["step"]]
        assert [p["problem"] for p in mine] == list(range(size)) and {p["n"] for p in mine} == {4}
        assert sum(p["correct"] for p in mine) / (4 * size) == pytest.approx(final["results"][name]["accuracy"])
        assert all(p["score"] == p["correct"] / 4 for p in mine)

    out_json = tmp_path / "compare.json"
    assert main(["compare", str(runs["grpo"]), str(runs["grpo_clipo"]), "--json", str(out_json)]) == 0
    markdown = capsys.readouterr().out
    result = json.loads(out_json.read_text())
    assert result["track"] == "gsm8k" and result["metric"] == "avg@4"
    assert [row["set"] for row in result["rows"]] == ["gsm8k", "theoremqa", "in-domain avg", "out-of-domain avg"]
    evals_b = [json.loads(line) for line in RunFolder(runs["grpo_clipo"]).evals.read_text().splitlines()][-1]
    for row in result["rows"][:2]:
        (entry,) = row["runs"]
        assert row["baseline"] == pytest.approx(final["results"][row["set"]]["accuracy"])
        assert entry["score"] == pytest.approx(evals_b["results"][row["set"]]["accuracy"])
        assert entry["ci"][0] <= entry["diff"] <= entry["ci"][1]
        assert f"| {row['set']} | {row['domain']} | {row['problems']} | {100 * row['baseline']:.1f} |" in markdown
    assert "grpo_clipo − grpo [95% CI]" in markdown
    assert any(row["runs"][0]["ci"][0] < row["runs"][0]["ci"][1] for row in result["rows"])  # not all identical

    # clipo eval on a run folder: the paper's table (the sets form the gsm8k track) and per-problem scores that
    # compare reads like a run's.
    assert main(["eval", "--model", str(runs["grpo"]), "rollout.eval_temperature=0", "rollout.eval_n=1"]) == 0
    out = capsys.readouterr().out
    assert "**track gsm8k** — pass@1 (%)" in out and "| **in-domain avg** | in |" in out
    problems_file = eval_output_files(RunFolder(runs["grpo"]).final_eval_results)[1]
    records = [json.loads(line) for line in problems_file.read_text().splitlines()]
    assert len(records) == 11 and {r["step"] for r in records} == {None} and {r["n"] for r in records} == {1}
    assert main(["compare", str(RunFolder(runs["grpo"]).final_eval_results)]) == 0  # one run: its table
    table = capsys.readouterr().out
    assert "**track gsm8k, grpo/final** — pass@1 (%)" in table
    greedy = json.loads(RunFolder(runs["grpo"]).final_eval_results.read_text())
    assert f"| gsm8k | in | {100 * greedy['gsm8k']['accuracy']:.1f} | 6 |" in table


def test_per_problem_file_names_are_pinned_and_spelled_only_in_run_folder(tmp_path):
    run = RunFolder(tmp_path)
    assert run.eval_problems == tmp_path / "eval_problems.jsonl"
    assert run.final_eval_results == tmp_path / "final" / "eval_results.json"
    assert eval_output_files(run.final_eval_results) == (tmp_path / "final" / "samples.jsonl",
                                                         tmp_path / "final" / "eval_problems.jsonl")
    assert eval_output_files(tmp_path / "base.json") == (tmp_path / "base.samples.jsonl",
                                                         tmp_path / "base.eval_problems.jsonl")
    package = Path(__file__).resolve().parents[2] / "clipo"
    offenders = [f"{path}:{node.lineno}" for path in sorted(package.rglob("*.py"))
                 if path.name != "run_folder.py"
                 for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Constant) and node.value in ("eval_problems.jsonl", "eval_results.json")]
    assert not offenders


def test_help_lists_compare_and_eval_track(capsys):
    for argv in (["--help"], ["compare", "--help"], ["eval", "--help"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "compare" in out and "--resamples" in out and "--track" in out
