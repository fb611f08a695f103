"""Load every file of the CLIPO paper's data and check what the data README promises.

The data folder comes from the ``shared_data`` fixture (tests/conftest.py: ``$CLIPO_DATA_DIR``, else the tests'
default beside the checkout); these tests skip where it is absent.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from clipo.data import DataError, PromptDataset, load_examples, load_prompts

# (split, name): (rows in the file, duplicate rows reported). From the data folder's README.md; the two
# single duplicates (gsm_symbolic, mmlu2k) were measured: a question that really appears twice in the set.
EXPECTED = {
    ("train", "gsm8k"): (7473, 0),
    ("train", "math75"): (7500, 0),
    ("test", "gsm8k"): (1319, 0),
    ("test", "gsm_p1"): (5000, 0),
    ("test", "gsm_p2"): (2500, 0),
    ("test", "gsm_symbolic"): (5000, 1),
    ("test", "math"): (500, 0),
    ("test", "math_perturb_simple"): (279, 0),
    ("test", "math_perturb_hard"): (279, 0),
    ("test", "aime"): (30, 0),
    ("test", "aime2025"): (30, 0),
    ("test", "amc"): (83, 0),
    ("test", "theoremqa"): (1494, 747),
    ("test", "truthfulqa"): (1634, 817),
    ("test", "mmlu2k"): (2000, 1),
    ("test", "commonsense_qa"): (1221, 0),
}

def _path(data: Path, split: str, name: str) -> Path:
    return data / split / f"{name}.parquet"


@pytest.fixture(scope="module")
def loaded(shared_data):
    """Each file loaded once (skip mode, so math75's two empty-box rows are reported, not raised)."""
    return {key: load_examples(_path(shared_data, *key), on_bad_row="skip") for key in EXPECTED}


def test_all_sixteen_files_are_covered(shared_data):
    assert sorted(p.relative_to(shared_data).as_posix() for p in shared_data.glob("*/*.parquet")) == sorted(
        f"{s}/{n}.parquet" for s, n in EXPECTED)


@pytest.mark.parametrize("key", sorted(EXPECTED), ids=lambda k: f"{k[0]}/{k[1]}")
def test_row_counts_and_duplicates(loaded, key):
    examples, report = loaded[key]
    rows, dups = EXPECTED[key]
    assert report.rows_read == rows
    assert report.duplicates == dups
    bad = 2 if key == ("train", "math75") else 0
    assert report.num_bad_rows == bad
    assert report.rows_loaded == len(examples) == rows - bad
    assert all(ex.data_source == f"conrl/{key[1]}" for ex in examples)
    # verl prompts: exactly one user message asking for a boxed answer.
    assert all(ex.is_chat and len(ex.prompt) == 1 and ex.prompt[0]["role"] == "user" for ex in examples)
    assert all("boxed" in ex.prompt[0]["content"] for ex in examples)
    assert all(isinstance(ex.ground_truth, str) and ex.ground_truth for ex in examples)


def test_duplicates_point_at_the_first_copy(loaded):
    examples, report = loaded[("test", "theoremqa")]
    assert report.duplicate_examples[0] == (747, 0)
    by_index = {ex.index: ex for ex in examples}
    assert by_index[747].prompt == by_index[0].prompt and by_index[747].ground_truth == by_index[0].ground_truth
    assert "747 duplicate rows" in report.summary()


def test_drop_duplicates_keeps_first_copies(shared_data):
    ds = load_prompts(_path(shared_data, "test", "truthfulqa"), drop_duplicates=True)
    assert len(ds) == 817 and ds.report.duplicates == 817 and ds.report.duplicates_dropped
    assert [ex.index for ex in ds][:3] == [0, 1, 2]


def test_ground_truths_keep_their_exact_text(loaded):
    gt = {key: {ex.index: ex.ground_truth for ex in loaded[key][0]} for key in loaded}
    assert gt[("test", "gsm8k")][146] == "2,125"
    assert gt[("test", "aime")][1] == "025"
    assert gt[("test", "amc")][0] == "142.0"
    assert gt[("test", "math")][198] == r"10,\!080"
    assert gt[("test", "theoremqa")][35] == "4e-05"
    assert gt[("test", "math_perturb_hard")][209] == "NaN"


def test_math75_solutions_are_reduced_to_final_answers(loaded):
    examples, report = loaded[("train", "math75")]
    by_index = {ex.index: ex for ex in examples}
    assert report.solutions_reduced == 7498
    assert by_index[0].ground_truth == "0"
    assert by_index[5].ground_truth == "(3, -1)"
    assert by_index[888].ground_truth == "2"  # written `\boxed 2`, without braces
    assert by_index[1011].ground_truth == "9"
    assert by_index[888].extra["solution"].endswith(r"\boxed 2$.")
    assert by_index[0].extra["extra_info"] == {"index": 0, "split": "train"}
    # The two empty-box rows are the bad ones, named with their field.
    assert [(b.row, b.field) for b in report.bad_rows] == [(5341, "reward_model.ground_truth"),
                                                           (5343, "reward_model.ground_truth")]
    # Two-point answers boxed separately are flagged, so nobody trains on half an answer unknowingly.
    assert {334, 504} <= set(report.multi_answer_rows)


def test_math75_empty_box_raises_by_default(shared_data):
    with pytest.raises(DataError) as err:
        load_examples(_path(shared_data, "train", "math75"))
    msg = str(err.value)
    assert "math75.parquet" in msg and "row 5341" in msg and "reward_model.ground_truth" in msg
    assert "data.on_bad_row=skip" in msg and "on_bad_row='skip'" in msg
    assert err.value.bad_row.row == 5341


def test_math75_can_keep_whole_solutions(shared_data):
    examples, report = load_examples(_path(shared_data, "train", "math75"), answer_is_solution=False, limit=10)
    assert report.solutions_reduced == 0 and len(examples) == 10
    assert examples[0].ground_truth.startswith("For the piecewise function")


def test_answer_is_solution_can_be_forced_on_other_sources(tmp_path):
    import json

    p = tmp_path / "sol.jsonl"
    p.write_text(json.dumps({"prompt": "2+2?", "answer": r"Adding, we get $\boxed{4}$."}) + "\n")
    ds = load_prompts(p, answer_is_solution=True)
    assert ds[0].ground_truth == "4" and ds[0].extra["solution"].startswith("Adding")


def test_prompt_dataset_over_real_data_iterates_deterministically(shared_data):
    ds = load_prompts(_path(shared_data, "test", "aime"))
    assert isinstance(ds, PromptDataset) and len(ds) == 30
    a = [ex.index for ex in ds.iterator(seed=3, epochs=1)]
    b = [ex.index for ex in ds.iterator(seed=3, epochs=1)]
    assert a == b and sorted(a) == list(range(30)) and a != list(range(30))
