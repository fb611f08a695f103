"""Hostile data files: every malformed file is a one-line DataError naming the file (and line/row/field) and the
fix; every malformed row is a BadRow that raises by default and is skipped and counted with on_bad_row="skip".

The 18 cases are the ones an outside attack found escaping the loader (a traceback) or accepted silently.
Files are built byte by byte in tmp_path (real parquet written by pyarrow).
"""
from __future__ import annotations

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clipo.data import DataError, load_examples

GOOD = {"prompt": "What is 2+2?", "answer": "4"}


def _jsonl_bytes(rows) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def _parquet(path, rows):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _file_error(path, **kwargs) -> str:
    """The message of the DataError a whole-file problem raises, in both on_bad_row modes (same message)."""
    with pytest.raises(DataError) as err:
        load_examples(path, **kwargs)
    msg = str(err.value)
    with pytest.raises(DataError) as err_skip:
        load_examples(path, on_bad_row="skip", **kwargs)
    assert str(err_skip.value) == msg
    assert "\n" not in msg and path.name in msg and "Fix:" in msg
    return msg


def _row_error(path, row, field, line=None, **kwargs):
    """A row problem: raises naming file, row, field (default and "error"); skipped and counted with "skip"."""
    for mode in ("raise", "error"):
        with pytest.raises(DataError) as err:
            load_examples(path, on_bad_row=mode, **kwargs)
        msg = str(err.value)
        assert "\n" not in msg and path.name in msg and f"row {row}" in msg and repr(field) in msg and "Fix:" in msg
        assert (err.value.bad_row.row, err.value.bad_row.field) == (row, field)
        if line is not None:
            assert f"line {line} " in msg and err.value.bad_row.line == line
    examples, report = load_examples(path, on_bad_row="skip", **kwargs)
    assert [(b.row, b.field) for b in report.bad_rows] == [(row, field)]
    assert report.rows_read == len(examples) + 1 and report.rows_loaded == len(examples)
    return msg, examples


# ----------------------------------------------------------------------------- 12 that escaped as tracebacks

def test_corrupt_parquet(tmp_path):
    path = tmp_path / "corrupt.parquet"
    path.write_bytes(b"PAR1" + bytes(range(256)) * 4 + b"PAR1")
    assert "not a readable parquet file" in _file_error(path)


def test_truncated_parquet(tmp_path):
    whole = _parquet(tmp_path / "whole.parquet", [GOOD] * 50).read_bytes()
    path = tmp_path / "truncated.parquet"
    path.write_bytes(whole[: len(whole) // 2])  # a copy cut short: the footer is gone
    assert "not a readable parquet file" in _file_error(path)


def test_empty_parquet(tmp_path):
    path = tmp_path / "empty.parquet"
    path.write_bytes(b"")
    assert "not a readable parquet file" in _file_error(path)


def test_latin1_byte_in_jsonl_names_line_and_byte_offset(tmp_path):
    path = tmp_path / "latin1.jsonl"
    first = json.dumps(GOOD).encode() + b"\n"
    second = b'{"prompt": "Caf' + "é".encode("latin-1") + b' costs?", "answer": "3"}\n'
    path.write_bytes(first + second)
    msg = _file_error(path)
    offset = len(first) + len(b'{"prompt": "Caf')  # the é, counted by hand from the bytes written
    assert f"line 2, byte offset {offset}" in msg and "0xe9" in msg and "save the file as UTF-8" in msg


def test_latin1_byte_in_csv_names_line_and_byte_offset(tmp_path):
    path = tmp_path / "latin1.csv"
    head = b"prompt,answer\nWhat is 2+2?,4\n"
    path.write_bytes(head + b"Na\xefve question,5\n")
    msg = _file_error(path)
    assert f"line 3, byte offset {len(head) + 2}" in msg and "save the file as UTF-8" in msg


def test_utf16_jsonl(tmp_path):
    path = tmp_path / "utf16.jsonl"
    path.write_bytes(_jsonl_bytes([GOOD, GOOD]).decode().encode("utf-16"))  # with its byte-order mark
    msg = _file_error(path)
    assert "line 1, byte offset 0" in msg and "UTF-16" in msg and "save the file as UTF-8" in msg


def test_utf16_csv_without_byte_order_mark(tmp_path):
    path = tmp_path / "utf16.csv"
    path.write_bytes("prompt,answer\nWhat is 2+2?,4\n".encode("utf-16-le"))
    msg = _file_error(path)
    assert "line 1, byte offset 1" in msg and "NUL" in msg and "save the file as UTF-8" in msg


def test_5000_digit_integer_in_json(tmp_path):
    path = tmp_path / "bigint.json"
    path.write_text('[{"prompt": "Q?", "answer": ' + "7" * 5000 + "}]")
    assert "store very long numbers as strings" in _file_error(path)


def test_5000_digit_integer_in_jsonl_is_a_bad_row(tmp_path):
    path = tmp_path / "bigint.jsonl"
    path.write_bytes(_jsonl_bytes([GOOD]) + b'{"prompt": "Q?", "answer": ' + b"7" * 5000 + b"}\n")
    msg, examples = _row_error(path, 1, "<json>", line=2)
    assert "long numbers as strings" in msg and [ex.ground_truth for ex in examples] == ["4"]


def test_100k_deep_json(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    assert "too deeply" in _file_error(path)


def test_100k_deep_jsonl_line_is_a_bad_row(tmp_path):
    path = tmp_path / "deep.jsonl"
    deep = '{"prompt": "Q?", "answer": "1", "extra": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path.write_bytes(_jsonl_bytes([GOOD]) + deep.encode() + b"\n" + _jsonl_bytes([GOOD]))
    msg, examples = _row_error(path, 1, "<json>", line=2)
    assert "too deeply" in msg and [ex.index for ex in examples] == [0, 2]


def test_csv_field_over_the_csv_modules_limit_is_read(tmp_path):
    # 131,072 characters is the csv module's default field limit; a long prompt is valid CSV and loads whole.
    path = tmp_path / "long.csv"
    prompt = "x" * 200_000 + "?"
    path.write_text(f'prompt,answer\n"{prompt}",7\nWhat is 2+2?,4\n')
    examples, report = load_examples(path)
    assert [len(ex.prompt) for ex in examples] == [200_001, 12] and report.rows_loaded == 2
    assert csv.field_size_limit() == 131072  # the process-wide limit is left as it was


# ----------------------------------------------------------------------------- 6 that were accepted silently

def test_unknown_chat_role_is_a_bad_row(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": "Q1"}], "answer": "1"},
            {"prompt": [{"role": "bot", "content": "Hi"}, {"role": "user", "content": "Q2"}], "answer": "2"}]
    path = _parquet(tmp_path / "roles.parquet", rows)
    msg, examples = _row_error(path, 1, "prompt")
    assert "message 0 has role 'bot'" in msg and [ex.ground_truth for ex in examples] == ["1"]


def test_prompt_without_user_turn_is_a_bad_row(tmp_path):
    rows = [GOOD, {"prompt": [{"role": "system", "content": "Be brief."},
                              {"role": "assistant", "content": "Sure."}], "answer": "2"}]
    path = tmp_path / "nouser.jsonl"
    path.write_bytes(_jsonl_bytes(rows))
    msg, examples = _row_error(path, 1, "prompt", line=2)
    assert "no user message" in msg and len(examples) == 1


def test_boxed_ground_truth_in_a_numeric_dataset_is_a_bad_row(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": "Q1"}], "data_source": "conrl/gsm8k",
             "reward_model": {"ground_truth": "18", "style": "rule"}},
            {"prompt": [{"role": "user", "content": "Q2"}], "data_source": "conrl/gsm8k",
             "reward_model": {"ground_truth": r"\boxed{18}", "style": "rule"}}]
    path = _parquet(tmp_path / "gsm8k.parquet", rows)
    msg, examples = _row_error(path, 1, "reward_model.ground_truth")
    assert "not a plain number" in msg and "answer_is_solution=True" in msg
    assert [ex.ground_truth for ex in examples] == ["18"]


def test_latex_ground_truth_in_a_numeric_dataset_is_a_bad_row(tmp_path):
    path = tmp_path / "aime.csv"
    path.write_text('prompt,answer,data_source\nQ1,"1,024",conrl/aime\nQ2,\\frac{1}{2},conrl/aime\nQ3,-7.5,conrl/aime\n')
    msg, examples = _row_error(path, 1, "answer", line=3)
    assert "not a plain number" in msg and [ex.ground_truth for ex in examples] == ["1,024", "-7.5"]


def test_word_ground_truth_in_a_numeric_dataset_is_a_bad_row(tmp_path):
    path = tmp_path / "words.jsonl"
    path.write_bytes(_jsonl_bytes([GOOD, {"prompt": "Q?", "answer": "five"}]))
    msg, examples = _row_error(path, 1, "answer", line=2, data_source="openai/gsm8k")
    assert "'five', not a plain number" in msg and len(examples) == 1
    # The same answer is fine where answers are not numbers (the verifier compares text there).
    assert len(load_examples(path, data_source="conrl/math")[0]) == 2


def test_duplicated_csv_header(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("prompt,answer,answer\nWhat is 2+2?,4,5\n")
    msg = _file_error(path)
    assert "line 1" in msg and "column 'answer' appears twice" in msg and "columns 2 and 3" in msg


def test_jsonl_lines_break_where_text_mode_breaks_them(tmp_path):
    # Read as bytes (to name byte offsets), lines must still end at \n, \r\n or a lone \r, as in text mode.
    path = tmp_path / "mac.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\r" + b"{broken\r\n" + json.dumps(GOOD).encode() + b"\n")
    _row_error(path, 1, "<json>", line=2)


def test_unpaired_surrogate_escape_is_a_bad_row(tmp_path):
    # "\ud800" is valid JSON but no character: a tokenizer (and the dataset's fingerprint) cannot encode it.
    path = tmp_path / "surrogate.jsonl"
    path.write_bytes(_jsonl_bytes([GOOD]) + b'{"prompt": "Q\\ud800?", "answer": "1"}\n')
    msg, examples = _row_error(path, 1, "prompt", line=2)
    assert "unpaired surrogate" in msg and len(examples) == 1
