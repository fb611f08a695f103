"""Loading JSONL / JSON / CSV / Hugging Face datasets written in tmp_path: good rows, bad rows, clear errors."""
from __future__ import annotations

import json
import logging

import pytest

from clipo.data import BadRow, DataError, PromptExample, load_examples, load_prompts


def _jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


GOOD = [
    {"prompt": "What is 2+2?", "answer": "4", "data_source": "toy/add", "level": 1},
    {"prompt": [{"role": "user", "content": "What is 3*3?"}], "answer": "9", "data_source": "toy/mul"},
]


def test_jsonl_good_rows(tmp_path):
    ds = load_prompts(_jsonl(tmp_path / "toy.jsonl", GOOD))
    assert len(ds) == 2
    first, second = ds[0], ds[1]
    assert first == PromptExample("What is 2+2?", "4", "toy/add", 0, {"level": 1})
    assert second.is_chat and second.prompt == [{"role": "user", "content": "What is 3*3?"}]
    assert second.index == 1 and second.extra == {}
    assert ds.report.rows_read == 2 and ds.report.rows_loaded == 2 and not ds.report.bad_rows
    assert ds.data_sources == ["toy/add", "toy/mul"]


@pytest.mark.parametrize("row, field, problem", [
    ({"answer": "4"}, "prompt", "is missing"),
    ({"prompt": "   ", "answer": "4"}, "prompt", "is empty"),
    ({"prompt": "Q?", "answer": ""}, "answer", "is empty"),
    ({"prompt": "Q?"}, "answer", "is missing"),
    ({"prompt": "Q?", "answer": None}, "answer", "is null"),
    ({"prompt": "Q?", "answer": ["4"]}, "answer", "has type list"),
    ({"prompt": "Q?", "answer": True}, "answer", "is a boolean"),
    ({"prompt": 42, "answer": "4"}, "prompt", "has type int"),
    ({"prompt": [{"role": "user"}], "answer": "4"}, "prompt", "no 'content' string"),
    ({"prompt": [], "answer": "4"}, "prompt", "empty message list"),
    ({"prompt": "Q?", "answer": "4", "data_source": 7}, "data_source", "has type int"),
    ('{"prompt": "Q?", "answer": ', "<json>", "not valid JSON"),
    ('["Q?", "4"]', "<json>", "not an object"),
])
def test_bad_row_error_names_file_row_field_and_fix(tmp_path, row, field, problem):
    path = _jsonl(tmp_path / "mixed.jsonl", [GOOD[0], GOOD[1], row])
    with pytest.raises(DataError) as err:
        load_examples(path)
    msg = str(err.value)
    assert "mixed.jsonl" in msg and "line 3 (row 2)" in msg and repr(field) in msg and problem in msg
    assert "Fix:" in msg
    bad = err.value.bad_row
    assert (bad.row, bad.line, bad.field) == (2, 3, field)


def test_skip_mode_counts_and_lists_bad_rows(tmp_path, caplog):
    rows = [GOOD[0], {"prompt": "", "answer": "1"}, "not json", GOOD[1], {"prompt": "Q", "answer": "  "}]
    path = _jsonl(tmp_path / "mixed.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="clipo.data"):
        examples, report = load_examples(path, on_bad_row="skip")
    assert [ex.index for ex in examples] == [0, 3]
    assert report.rows_read == 5 and report.rows_loaded == 2 and report.num_bad_rows == 3
    assert [(b.row, b.field) for b in report.bad_rows] == [(1, "prompt"), (2, "<json>"), (4, "answer")]
    assert "3 bad rows skipped" in report.summary() and "3 bad rows skipped" in caplog.text


def test_blank_lines_are_not_rows(tmp_path):
    path = tmp_path / "gaps.jsonl"
    path.write_text(json.dumps(GOOD[0]) + "\n\n" + json.dumps(GOOD[1]) + "\n\n")
    examples, report = load_examples(path)
    assert [ex.index for ex in examples] == [0, 1] and report.blank_lines == 2


def test_duplicates_are_reported_and_optionally_dropped(tmp_path, caplog):
    rows = [GOOD[0], GOOD[1], GOOD[0], dict(GOOD[0], answer="5"), GOOD[0]]
    path = _jsonl(tmp_path / "dups.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="clipo.data"):
        examples, report = load_examples(path)
    assert len(examples) == 5 and report.duplicates == 2
    assert report.duplicate_examples == [(2, 0), (4, 0)]  # row 3 has another answer: not a duplicate
    assert "2 duplicate rows" in caplog.text
    examples, report = load_examples(path, drop_duplicates=True)
    assert [ex.index for ex in examples] == [0, 1, 3] and report.duplicates == 2


def test_numeric_answers_are_converted_and_counted(tmp_path):
    path = _jsonl(tmp_path / "nums.jsonl", [{"prompt": "a", "answer": 18}, {"prompt": "b", "answer": 142.0}])
    examples, report = load_examples(path)
    assert [ex.ground_truth for ex in examples] == ["18", "142.0"] and report.coerced_answers == 2


def test_custom_and_nested_fields(tmp_path):
    rows = [{"question": "Q1", "meta": {"gold": "7"}, "src": "toy/a"}]
    path = _jsonl(tmp_path / "custom.jsonl", rows)
    (ex,), _ = load_examples(path, prompt_field="question", answer_field="meta.gold", data_source_field="src")
    assert (ex.prompt, ex.ground_truth, ex.data_source, ex.extra) == ("Q1", "7", "toy/a", {})
    (ex,), _ = load_examples(path, prompt_field="question", answer_field="meta.gold", data_source="override/x")
    assert ex.data_source == "override/x"


def test_csv_good_and_bad_rows(tmp_path):
    path = tmp_path / "toy.csv"
    path.write_text('prompt,answer,data_source\n'
                    '"What is 2+2?",4,toy/add\n'
                    '"A prompt\nover two lines",025,toy/aime\n'
                    'Missing answer,,toy/add\n'
                    'Too,many,values,here\n', encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_examples(path)
    assert "toy.csv, line 5 (row 2): field 'answer': is empty" in str(err.value)
    examples, report = load_examples(path, on_bad_row="skip")
    assert [ex.ground_truth for ex in examples] == ["4", "025"]  # text kept exactly: the zero padding survives
    assert examples[1].prompt == "A prompt\nover two lines"
    assert [(b.row, b.line, b.field) for b in report.bad_rows] == [(2, 5, "answer"), (3, 6, "<csv>")]


def test_csv_missing_column_is_a_file_level_error(tmp_path):
    path = tmp_path / "cols.csv"
    path.write_text("question,solution\nQ,4\n")
    with pytest.raises(DataError, match=r"no field 'prompt' in the rows \(fields: \['question', 'solution'\]\)"):
        load_examples(path, on_bad_row="skip")
    examples, _ = load_examples(path, prompt_field="question", answer_field="solution")
    assert examples[0].ground_truth == "4"


def test_tsv_and_json_array(tmp_path):
    tsv = tmp_path / "t.tsv"
    tsv.write_text("prompt\tanswer\nQ, with comma\t1,000\n")
    (ex,), _ = load_examples(tsv)
    assert (ex.prompt, ex.ground_truth) == ("Q, with comma", "1,000")
    js = tmp_path / "t.json"
    js.write_text(json.dumps(GOOD))
    assert len(load_prompts(js)) == 2
    js.write_text(json.dumps({"prompt": "Q", "answer": "1"}))
    with pytest.raises(DataError, match="expected a list of row objects"):
        load_examples(js)


def test_unknown_extension_missing_file_and_empty_file(tmp_path):
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    with pytest.raises(DataError, match=r"unknown file extension '\.xlsx'.*format="):
        load_examples(odd)
    with pytest.raises(DataError, match="file not found"):
        load_examples(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="contains no rows"):
        load_examples(empty)
    with pytest.raises(DataError, match="not a saved Hugging Face dataset"):
        load_examples(tmp_path)
    with pytest.raises(DataError, match="unknown format"):
        load_examples(odd, format="xlsx")


def test_format_override_reads_odd_extensions(tmp_path):
    path = _jsonl(tmp_path / "rows.txt", GOOD)
    assert len(load_prompts(path, format="jsonl")) == 2


def test_limit_and_records(tmp_path):
    examples, report = load_examples(GOOD * 3, limit=4)
    assert len(examples) == 4 and report.rows_read == 4 and report.duplicates == 2
    with pytest.raises(DataError, match="<records>, row 1: field '<record>'"):
        load_examples([GOOD[0], "text"])


def test_verl_parquet_written_here(tmp_path):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({
        "data_source": ["conrl/gsm8k", "conrl/gsm8k"],
        "prompt": [[{"role": "user", "content": "Q1"}], [{"role": "user", "content": "Q2"}]],
        "ability": ["math", "math"],
        "reward_model": [{"ground_truth": "18", "style": "rule"}, {"ground_truth": "", "style": "rule"}],
        "extra_info": [{"index": 0, "split": "test"}, {"index": 1, "split": "test"}],
    })
    path = tmp_path / "toy.parquet"
    df.to_parquet(path)
    with pytest.raises(DataError, match=r"toy.parquet, row 1: field 'reward_model.ground_truth': is empty"):
        load_examples(path)
    (ex,), report = load_examples(path, on_bad_row="skip")
    assert ex.ground_truth == "18" and ex.prompt == [{"role": "user", "content": "Q1"}]
    assert ex.extra == {"ability": "math", "reward_model": {"style": "rule"},
                        "extra_info": {"index": 0, "split": "test"}}
    assert report.format == "parquet" and report.num_bad_rows == 1


def test_huggingface_dataset_object_disk_and_dict(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([{"prompt": "Q1", "answer": "1"}, {"prompt": "Q2", "answer": "2"}])
    assert [ex.ground_truth for ex in load_prompts(ds)] == ["1", "2"]
    ds.save_to_disk(str(tmp_path / "saved"))
    loaded = load_prompts(tmp_path / "saved")
    assert len(loaded) == 2 and loaded.report.format == "hf"
    dd = datasets.DatasetDict({"train": ds, "test": ds.select([0])})
    with pytest.raises(DataError, match=r"DatasetDict with splits \['test', 'train'\]; pass split="):
        load_prompts(dd)
    assert len(load_prompts(dd, split="test")) == 1
    dd.save_to_disk(str(tmp_path / "saved_dict"))
    assert len(load_prompts(tmp_path / "saved_dict", split="train")) == 2
    with pytest.raises(DataError, match="no split 'valid'"):
        load_prompts(dd, split="valid")
    bad = datasets.Dataset.from_list([{"prompt": "Q1", "answer": "1"}, {"prompt": "Q2", "answer": ""}])
    with pytest.raises(DataError, match=r"<Dataset>, row 1: field 'answer': is empty"):
        load_prompts(bad)


def test_bad_row_message_without_line():
    bad = BadRow("f.parquet", 3, "answer", "is empty", "fill it")
    assert bad.message() == "f.parquet, row 3: field 'answer': is empty. Fix: fill it"


def test_on_bad_row_is_validated(tmp_path):
    with pytest.raises(ValueError, match="on_bad_row"):
        load_examples(GOOD, on_bad_row="ignore")
