"""Fuzzing the data loaders (every file format) with hypothesis.

Properties, for arbitrary bytes and arbitrary rows:

* a load either returns examples or raises :class:`DataError` (never another exception), and the message is
  one line naming the file;
* with ``on_bad_row="skip"`` a file whose columns exist never raises for row problems: every row read is
  either loaded or listed in ``report.bad_rows``, and the default mode raises exactly the first of them;
* every loaded example is usable: a prompt with user text, a non-empty answer.

The default run tries ``MAX_EXAMPLES`` inputs per property (seeded, so CI is reproducible); set
``CLIPO_FUZZ_EXAMPLES=2000`` for a long, randomised run. ``pytest -s`` prints how many inputs each property
tried and the slowest one.
"""
from __future__ import annotations

import csv
import io
import json
import os

import pytest

from clipo.data import DataError, load_examples
from clipo.testing import TimedCalls

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed (pip install -e .[test])")
from hypothesis import HealthCheck, given, settings  # noqa: E402 - after the skip above
from hypothesis import strategies as st  # noqa: E402

LONG_RUN = "CLIPO_FUZZ_EXAMPLES" in os.environ
MAX_EXAMPLES = int(os.environ.get("CLIPO_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=not LONG_RUN, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])
FILE_FORMATS = ("jsonl", "json", "csv", "tsv", "parquet")


def _check_error(error: DataError, path) -> None:
    msg = str(error)
    assert path.name in msg and "\n" not in msg, msg


def _check_examples(examples) -> None:
    for ex in examples:
        assert ex.ground_truth and ex.ground_truth == ex.ground_truth.strip()
        assert ex.user_text().strip(), ex.prompt


# ------------------------------------------------------------------------------------ arbitrary bytes

_SEEDS = {  # a valid file per format, for the mutations to start from
    "jsonl": b'{"prompt": "What is 2+2?", "answer": "4"}\n{"prompt": [{"role": "user", "content": "3*3?"}], '
             b'"answer": 9, "data_source": "conrl/gsm8k"}\n',
    "json": b'[{"prompt": "What is 2+2?", "answer": "4"}, {"prompt": "Q", "answer": "x", "data_source": "t"}]',
    "csv": b'prompt,answer,data_source\n"What is 2+2?",4,conrl/gsm8k\n"Say ""hi""",hi,\n',
    "tsv": b"prompt\tanswer\nWhat is 2+2?\t4\nQ\t\\frac{1}{2}\n",
}


def _parquet_seed() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([{"prompt": [{"role": "user", "content": "Q?"}], "data_source": "conrl/amc",
                                          "reward_model": {"ground_truth": "27"}}] * 3), buf)
    return buf.getvalue()


@st.composite
def mutated_bytes(draw, seed: bytes) -> bytes:
    """A valid file with bytes flipped, inserted, cut or the whole replaced by random bytes."""
    how = draw(st.sampled_from(["random", "flip", "insert", "truncate", "splice"]))
    if how == "random":
        return draw(st.binary(max_size=400))
    data = bytearray(seed)
    if how == "truncate":
        return bytes(data[:draw(st.integers(0, len(data)))])
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        chunk = draw(st.binary(min_size=1, max_size=8) | st.sampled_from(
            [b"\xff", b"\x00", b"\xe9", b"\"", b"\n", b"[" * 3000, b"9" * 5000, b",", b"\t", b"\r", b"{"]))
        if how == "flip" and at < len(data):
            data[at:at + len(chunk)] = chunk
        else:
            data[at:at] = chunk
    return bytes(data)


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_arbitrary_bytes_load_or_raise_data_error(tmp_path, fmt):
    tally = TimedCalls(f"bytes/{fmt}", load_examples, "loads")
    seed = _parquet_seed() if fmt == "parquet" else _SEEDS[fmt]
    path = tmp_path / f"fuzz.{fmt}"

    @FUZZ
    @given(data=mutated_bytes(seed), skip=st.booleans())
    def check(data, skip):
        path.write_bytes(data)
        try:
            examples, report = tally.call(path, on_bad_row="skip" if skip else "raise")
        except DataError as error:
            _check_error(error, path)
        else:
            _check_examples(examples)
            assert report.rows_read == report.rows_loaded + report.num_bad_rows

    check()
    tally.report()
    assert tally.count >= min(MAX_EXAMPLES, 20)


# ------------------------------------------------------------------------------------- arbitrary rows

_scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
            | st.sampled_from(["", " ", "4", "-3.5", "1,024", r"\boxed{7}", r"\frac{1}{2}", "five", "\ud800"]))
_json_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                            | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
_roles = st.sampled_from(["user", "system", "assistant", "tool", "bot", "User", ""]) | st.text(max_size=5)
_message = st.fixed_dictionaries({"role": _roles, "content": st.text(max_size=10) | st.none()})
_prompts = st.text(max_size=20) | st.lists(_message, max_size=3) | _json_values
_sources = st.sampled_from(["", "conrl/gsm8k", "conrl/aime", "conrl/math", "conrl/math75", "toy"]) | st.text(max_size=6)
_answers = (st.sampled_from(["4", " 18 ", "-3.5", "2,125", r"\boxed{7}", r"The sum is $\boxed{12}$.",
                             r"\boxed{}", r"\frac{1}{2}", "five", ""]) | st.integers() | st.floats() | _json_values)
_rows = st.lists(st.fixed_dictionaries({"prompt": _prompts, "answer": _answers},
                                       optional={"data_source": _sources, "extra": _json_values}), max_size=6)


def _csv_values(row) -> tuple:
    return row["prompt"], row["answer"], row.get("data_source", "")


def _csv_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _write_rows(path, fmt: str, rows) -> None:
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=True) + "\n" for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps(rows, ensure_ascii=True))
    elif fmt in ("csv", "tsv"):
        # Text columns: non-strings are written as JSON text (what a spreadsheet export would hold).
        out = io.StringIO()
        writer = csv.writer(out, delimiter="," if fmt == "csv" else "\t")
        writer.writerow(["prompt", "answer", "data_source"])
        for r in rows:
            writer.writerow([_csv_text(v) for v in _csv_values(r)])
        path.write_bytes(out.getvalue().encode("utf-8", "surrogatepass"))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        # One type per column, as parquet needs: chat prompts (messages) or text, answers as text.
        table = pa.Table.from_pylist(
            [{"prompt": r["prompt"] if isinstance(r["prompt"], list) and all(isinstance(m, dict) for m in r["prompt"])
              else [{"role": "user", "content": str(r["prompt"])}],
              "answer": r["answer"] if isinstance(r["answer"], str) else json.dumps(r["answer"]),
              "data_source": r.get("data_source", "")} for r in rows],
            schema=pa.schema([("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
                              ("answer", pa.string()), ("data_source", pa.string())]))
        pq.write_table(table, path)


def _utf8_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in data


def _surrogate_free(rows) -> bool:
    try:
        json.dumps(rows, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_arbitrary_rows_skip_counts_every_bad_row_and_raise_stops_at_the_first(tmp_path, fmt):
    tally = TimedCalls(f"rows/{fmt}", load_examples, "loads")
    path = tmp_path / f"rows.{fmt}"

    @FUZZ
    @given(rows=_rows)
    def check(rows):
        if fmt == "parquet" and not _surrogate_free(rows):
            return  # parquet strings are UTF-8 by definition: such a file cannot be written
        _write_rows(path, fmt, rows)
        if fmt in ("csv", "tsv"):
            # A record of empty fields is a blank line there: counted apart, not numbered as a row.
            blank = sum(not any(_csv_text(v).strip() for v in _csv_values(r)) for r in rows)
        else:
            blank = 0
        try:
            examples, report = tally.call(path, on_bad_row="skip")
        except DataError as error:
            _check_error(error, path)
            if fmt != "parquet" and not _utf8_text(path.read_bytes()):
                # A NUL byte (read as UTF-16/binary) or a surrogate written out (not UTF-8): the whole file.
                assert "save the file as UTF-8" in str(error)
                return
            # The only other file-level outcome for these well-formed files: no rows at all.
            assert len(rows) == blank and "contains no rows" in str(error)
            return
        _check_examples(examples)
        assert report.rows_read == len(rows) - blank == report.rows_loaded + report.num_bad_rows
        assert report.blank_lines == blank
        assert [ex.index for ex in examples] == sorted(set(range(report.rows_read)) - {b.row for b in report.bad_rows})
        for bad in report.bad_rows:
            assert path.name in bad.message() and bad.fix and "\n" not in bad.message()
        if report.bad_rows:
            with pytest.raises(DataError) as err:
                tally.call(path)
            _check_error(err.value, path)
            assert err.value.bad_row == report.bad_rows[0]
        else:
            assert len(tally.call(path)[0]) == len(examples)

    check()
    tally.report()
    assert tally.count >= min(MAX_EXAMPLES, 20)


# No surrogates (not text) and no NUL (a NUL byte in a text file is read as a sign of UTF-16 or binary data).
_good_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=15)


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_plain_good_rows_all_load_with_their_exact_values(tmp_path, fmt):
    """Independent oracle: text prompts and answers without outer spaces, no data source, always load as written."""
    tally = TimedCalls(f"good/{fmt}", load_examples, "loads")
    path = tmp_path / f"good.{fmt}"
    clean = _good_text.map(str.strip).filter(bool)

    @FUZZ
    @given(rows=st.lists(st.fixed_dictionaries({"prompt": clean, "answer": clean}), min_size=1, max_size=6))
    def check(rows):
        _write_rows(path, fmt, rows)
        examples, report = tally.call(path)
        expected_prompts = [r["prompt"] if fmt != "parquet" else [{"role": "user", "content": r["prompt"]}]
                            for r in rows]
        assert [ex.prompt for ex in examples] == expected_prompts
        assert [ex.ground_truth for ex in examples] == [r["answer"] for r in rows]
        assert report.num_bad_rows == 0

    check()
    tally.report()
