"""`clipo.apps.tracks` (the paper's eval tracks) and the paper's table (`clipo.apps.compare.paper_table`)."""
import json
from pathlib import Path

import pytest
import yaml

import clipo
from clipo.apps.cli import main
from clipo.apps.compare import paper_table, table_markdown
from clipo.apps.evaluate import results_table, track_overrides
from clipo.apps.tracks import TRACKS, get_track, metric_label, track_eval_sources, track_of_sets
from clipo.training.config import ConfigError, load_config
from clipo.training.evaluation import EvalResult

# The official scripts' data.val_files, in their order (Qwen-Applications/CLIPO scripts/train_gsm8k.sh and
# scripts/train_math.sh, line 12), with clipo's renames of theoremqa*2 and truthfulqa*2.
OFFICIAL_GSM8K = ["gsm8k", "gsm_p1", "gsm_p2", "gsm_symbolic", "theoremqa", "mmlu2k", "truthfulqa", "commonsense_qa"]
OFFICIAL_MATH = ["math", "aime", "aime2025", "amc", "math_perturb_simple", "math_perturb_hard"]


def test_tracks_list_the_official_files_and_sampling():
    assert sorted(TRACKS) == ["gsm8k", "math"]
    assert track_eval_sources("gsm8k") == [f"test/{n}.parquet" for n in OFFICIAL_GSM8K]
    assert track_eval_sources("math") == [f"test/{n}.parquet" for n in OFFICIAL_MATH]
    gsm, math = get_track("gsm8k"), get_track("math")
    assert list(gsm.set_names) == OFFICIAL_GSM8K and list(math.set_names) == OFFICIAL_MATH
    # The table lists the in-domain sets first, each group in the script's order.
    assert math.table_order() == ("math", "math_perturb_simple", "math_perturb_hard", "aime", "aime2025", "amc")
    assert gsm.table_order() == tuple(OFFICIAL_GSM8K)
    assert [s.name for s in gsm.sets if s.domain == "in"] == ["gsm8k", "gsm_p1", "gsm_p2", "gsm_symbolic"]
    assert [s.name for s in math.sets if s.domain == "in"] == ["math", "math_perturb_simple", "math_perturb_hard"]
    assert [s.name for s in math.sets if s.domain == "out"] == ["aime", "aime2025", "amc"]
    # val_kwargs: gsm8k do_sample=False n=1 (greedy pass@1); math n=16, temperature 0.6, top_p 0.95 (avg@16).
    assert (gsm.metric, gsm.eval_n, gsm.eval_temperature) == ("pass@1", 1, 0.0)
    assert (math.metric, math.eval_n, math.eval_temperature, math.eval_top_p) == ("avg@16", 16, 0.6, 0.95)


def test_track_files_exist_in_the_papers_data(paper_data_or_none):
    if paper_data_or_none is None:
        pytest.skip("the paper's data is absent")
    for name in TRACKS:
        for source in track_eval_sources(name):
            assert (paper_data_or_none / source).is_file(), source


def test_track_overrides_are_valid_config_keys():
    config = load_config(None, ["model.name_or_path=x", *track_overrides("math")])
    assert [str(p) for p in config.data.eval] == track_eval_sources("math")
    r = config.rollout
    assert (r.eval_n, r.eval_temperature, r.eval_top_p) == (16, 0.6, 0.95)
    # The user's own overrides come after and win.
    config = load_config(None, ["model.name_or_path=x", *track_overrides("math"), "rollout.eval_n=4"])
    assert config.rollout.eval_n == 4


def test_unknown_track_is_one_line_naming_the_known_ones():
    with pytest.raises(ConfigError) as error:
        get_track("gsm")
    assert "\n" not in str(error.value) and "'gsm'" in str(error.value) and "gsm8k, math" in str(error.value)


def test_track_of_sets_and_metric_label():
    assert track_of_sets(["gsm8k", "mmlu2k"]).name == "gsm8k"
    assert track_of_sets(["test/aime.parquet", "math"]).name == "math"
    assert track_of_sets(["gsm8k", "math"]) is None  # two tracks
    assert track_of_sets(["arithmetic-test"]) is None and track_of_sets([]) is None
    assert (metric_label(1), metric_label(16)) == ("pass@1", "avg@16")


def test_paper_table_rows_and_unweighted_domain_averages():
    scores = {"mmlu2k": 0.0, "gsm_p1": 0.25, "theoremqa": 1.0, "gsm8k": 0.5}  # any order in
    problems = {"mmlu2k": 2000, "gsm_p1": 5000, "theoremqa": 10, "gsm8k": 1319}
    table = paper_table(scores, samples=dict.fromkeys(scores, 1), problems=problems)
    assert table["track"] == "gsm8k" and table["metric"] == "pass@1" and table["note"] is None
    rows = {row["set"]: row for row in table["rows"]}
    assert [row["set"] for row in table["rows"]] == ["gsm8k", "gsm_p1", "theoremqa", "mmlu2k", "in-domain avg",
                                                    "out-of-domain avg"]
    # Unweighted: (0.5 + 0.25) / 2 and (1.0 + 0.0) / 2, whatever the sets' sizes.
    assert rows["in-domain avg"]["score"] == pytest.approx(0.375) and rows["in-domain avg"]["sets"] == ["gsm8k", "gsm_p1"]
    assert rows["out-of-domain avg"]["score"] == pytest.approx(0.5)
    assert rows["theoremqa"]["domain"] == "out" and rows["gsm8k"]["problems"] == 1319
    markdown = table_markdown(table)
    assert "| set | domain | pass@1 | problems |" in markdown
    assert "| gsm8k | in | 50.0 | 1319 |" in markdown
    assert "| **in-domain avg** | in | 37.5 | 2 sets |" in markdown
    assert "| **out-of-domain avg** | out | 50.0 | 2 sets |" in markdown


def test_table_notes_a_metric_other_than_the_tracks():
    table = paper_table({"math": 0.5, "aime": 0.1}, samples={"math": 4, "aime": 4}, problems={"math": 5, "aime": 3})
    assert table["metric"] == "avg@4" and "reports avg@16" in table["note"]
    assert [row["set"] for row in table["rows"]] == ["math", "aime", "in-domain avg", "out-of-domain avg"]
    # Sets that are no track's: one plain average.
    table = paper_table({"a": 0.2, "b": 0.4}, samples={"a": 1, "b": 1}, problems={"a": 1, "b": 1})
    assert table["track"] is None and table["rows"][-1]["set"] == "average"
    assert table["rows"][-1]["score"] == pytest.approx(0.3)


def test_clipo_eval_results_make_the_table_only_for_a_track():
    def result(name, accuracy, k=1):
        return EvalResult(name, 4, k, accuracy, accuracy, 10.0, 0.0)

    table = results_table([result("truthfulqa", 0.75), result("gsm_symbolic", 0.5)])
    assert [(r["set"], r["score"]) for r in table["rows"]] == [
        ("gsm_symbolic", 0.5), ("truthfulqa", 0.75), ("in-domain avg", 0.5), ("out-of-domain avg", 0.75)]
    assert results_table([result("arithmetic-test", 0.5)]) is None
    assert results_table([result("arithmetic-test", 0.5)], track="gsm8k")["track"] == "gsm8k"


def test_paper_recipes_list_their_tracks_files_in_the_official_order():
    # The paper recipes (clipo_*.yaml); smaller recipes may evaluate a subset of a track.
    recipes = sorted((Path(clipo.__file__).parent / "recipes").glob("clipo_*.yaml"))
    checked = 0
    for recipe in recipes:
        evals = (yaml.safe_load(recipe.read_text()).get("data") or {}).get("eval") or []
        track = track_of_sets(evals) if isinstance(evals, list) else None
        if track is not None:
            assert evals == track_eval_sources(track.name), recipe.name
            checked += 1
    assert checked == len(recipes) >= 2


def test_clipo_eval_track_on_the_papers_files(paper_data_or_none, tiny_model_dir, tmp_path, capsys):
    if paper_data_or_none is None:
        pytest.skip("the paper's data is absent")
    output = tmp_path / "math.json"
    assert main(["eval", "--model", str(tiny_model_dir), "--track", "math", "--output", str(output),
                 f"data.root={paper_data_or_none}", "data.max_eval_examples=2", "rollout.eval_n=2",
                 "rollout.max_new_tokens=4", "trainer.device=cpu"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("**track math**"):]
    order = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")][1:]
    assert order == ["math", "math_perturb_simple", "math_perturb_hard", "aime", "aime2025", "amc",
                     "**in-domain avg**", "**out-of-domain avg**"]
    assert "note: track math reports avg@16" in table and "these scores are avg@2" in table
    assert set(json.loads(output.read_text())) == set(OFFICIAL_MATH)
    problems = [json.loads(line) for line in output.with_name("math.eval_problems.jsonl").read_text().splitlines()]
    assert len(problems) == 12 and {p["n"] for p in problems} == {2}
