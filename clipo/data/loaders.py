"""Load prompt/answer data from verl parquet, JSONL, JSON, CSV/TSV, or Hugging Face ``datasets``.

Every row becomes a :class:`~clipo.data.records.PromptExample`. Nothing is dropped silently: a malformed row
raises :class:`~clipo.data.errors.DataError` naming the file, the row, the field and the fix, or, with
``on_bad_row="skip"``, is left out and listed in the returned :class:`~clipo.data.records.LoadReport`;
duplicates (same prompt and answer) are counted and logged. A file that cannot be read as a whole (not UTF-8,
a broken parquet file, JSON nested past Python's limits, a CSV column named twice) raises a one-line
:class:`DataError` naming the file, the line and byte offset where known, and the fix, in both modes.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from .answers import ground_truth_problem, is_solution_source, reduce_solution
from .dataset import PromptDataset
from .errors import BadRow, DataError
from .records import LoadReport, PromptExample, PromptLike

__all__ = ["load_examples", "load_prompts", "load_many", "FORMATS", "DEFAULT_ANSWER_FIELDS"]

FORMATS = ("parquet", "jsonl", "json", "csv", "tsv", "hf", "records")
_SUFFIX_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl",
                   ".json": "json", ".csv": "csv", ".tsv": "tsv"}
# Files that mark a directory written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`.
_HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
# Tried in order when answer_field is None: verl's nested field first, then the plain names.
DEFAULT_ANSWER_FIELDS = ("reward_model.ground_truth", "answer", "ground_truth")
_SCHEMA_FORMATS = ("parquet", "csv", "tsv", "hf")
_MISSING = object()
# Roles chat templates know; anything else ("bot", "User") is a typo the template would reject or mis-render.
CHAT_ROLES = ("system", "user", "assistant", "tool")
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # also the start of UTF-32's marks
# Text that holds a lone UTF-16 surrogate (JSON "\\ud800") has no UTF-8 form: tokenizers and hashing fail on it.
_SURROGATE = "holds an unpaired surrogate (an escape such as \\ud800 that is no character)"
_SAVE_AS_UTF8 = "save the file as UTF-8 (e.g. in your editor's 'Save with encoding', or iconv -t UTF-8)"

Source = Union[str, Path, Any]  # a path, a datasets.Dataset / DatasetDict, or a list of dicts
# One item from a reader: (row, line or None, the record or a BadRow for an unreadable line).
_RawRow = Tuple[int, Optional[int], Union[Dict[str, Any], BadRow]]


# ----------------------------------------------------------------------------------------- readers


def _detect_format(path: Path) -> str:
    if path.is_dir():
        if any((path / m).exists() for m in _HF_MARKERS):
            return "hf"
        raise DataError(f"{path}: is a directory but not a saved Hugging Face dataset (none of "
                        f"{', '.join(_HF_MARKERS)} inside). Fix: point at a data file, or at a folder written by "
                        "datasets.Dataset.save_to_disk().")
    fmt = _SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown file extension {path.suffix or '(none)'!r}; supported: "
                        f"{', '.join(sorted(_SUFFIX_FORMATS))} or a saved Hugging Face dataset folder. "
                        f"Fix: rename the file or pass format= one of {', '.join(FORMATS[:-1])}.")
    return fmt


def _one_line(error: BaseException, limit: int = 300) -> str:
    """A library's error text on one line, cut to ``limit`` characters (pyarrow's span several lines)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _decode(path: Path, raw: bytes, line: int, offset: int) -> str:
    """``raw`` (the bytes of ``path`` from byte ``offset``, starting on ``line``) as text; a DataError naming
    the line and byte offset of the first byte that is not UTF-8 (or of a NUL byte: UTF-16 or binary data)."""
    nul = raw.find(b"\x00")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        bad = e.start if nul < 0 else min(nul, e.start)
    else:
        if nul < 0:
            return text
        bad = nul
    newlines = raw.count(b"\n", 0, bad)
    what = ("a NUL byte (the file looks UTF-16 or binary, not UTF-8 text)" if bad == nul
            else f"byte 0x{raw[bad]:02x} is not UTF-8 (the file looks Latin-1/Windows-1252 or UTF-16)")
    raise DataError(f"{path}: line {line + newlines}, byte offset {offset + bad}: {what}. Fix: {_SAVE_AS_UTF8}.")


def _strip_bom(path: Path, head: bytes) -> int:
    """Length of a UTF-8 byte-order mark at the start of the file (skipped); a DataError for UTF-16/32."""
    if head.startswith(_UTF16_BOMS):
        raise DataError(f"{path}: line 1, byte offset 0: the file is UTF-16 or UTF-32 (it starts with a byte-order "
                        f"mark). Fix: {_SAVE_AS_UTF8}.")
    return len(_UTF8_BOM) if head.startswith(_UTF8_BOM) else 0


def _read_text(path: Path) -> str:
    """The whole file as text, with the errors of :func:`_decode` (a UTF-8 BOM is dropped)."""
    data = path.read_bytes()
    start = _strip_bom(path, data[:4])
    return _decode(path, data[start:], 1, start)


def _read_parquet(path: Path) -> Iterator[_RawRow]:
    import pyarrow as pa  # lazy: only parquet users pay for it
    import pyarrow.parquet as pq

    try:
        # to_pylist gives plain Python lists/dicts (pandas would give numpy arrays for the chat messages).
        records = pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError, ValueError, NotImplementedError, TypeError, KeyError, IndexError) as e:
        raise DataError(f"{path}: not a readable parquet file ({_one_line(e)}). Fix: write it again (e.g. "
                        "pandas DataFrame.to_parquet or datasets' to_parquet); a copy may have been cut short.") from e
    for i, rec in enumerate(records):
        yield i, None, rec


_LINE_RE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def _byte_lines(fh: Any) -> Iterator[bytes]:
    """The lines of a binary file, each with its line break, split where text mode splits them: at ``\\n``,
    ``\\r\\n`` or a lone ``\\r``. (Binary reads end at ``\\n``, so no ``\\r\\n`` pair is ever cut in two.)"""
    for chunk in fh:
        yield from (m.group() for m in _LINE_RE.finditer(chunk))


def _read_jsonl(path: Path, report: LoadReport) -> Iterator[_RawRow]:
    row = 0
    offset = 0
    with path.open("rb") as fh:
        for line_no, raw in enumerate(_byte_lines(fh), start=1):
            # Bytes, decoded line by line: an encoding error names its line and byte offset.
            start = _strip_bom(path, raw[:4]) if line_no == 1 else 0
            line = _decode(path, raw[start:], line_no, offset + start)
            offset += len(raw)
            if not line.strip():
                report.blank_lines += 1  # blank lines separate nothing in JSONL; count, do not number them
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                yield row, line_no, BadRow(path.name, row, "<json>", f"line is not valid JSON ({e.msg} at column "
                                           f"{e.colno})", "write one JSON object per line", line_no)
            except RecursionError:
                yield row, line_no, BadRow(path.name, row, "<json>", "line nests JSON too deeply to read",
                                           "flatten the row: prompts and answers need only a few levels", line_no)
            except ValueError as e:  # e.g. an integer of more digits than Python converts (4300)
                yield row, line_no, BadRow(path.name, row, "<json>", f"line holds an unreadable value "
                                           f"({_one_line(e, 120)})", "store very long numbers as strings", line_no)
            else:
                if isinstance(rec, dict):
                    yield row, line_no, rec
                else:
                    yield row, line_no, BadRow(path.name, row, "<json>", f"line holds a JSON {type(rec).__name__}, "
                                               "not an object", 'write one {"prompt": ..., "answer": ...} object '
                                               "per line", line_no)
            row += 1


def _read_json(path: Path) -> Iterator[_RawRow]:
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}). Fix: a .json file "
                        "must hold one list of objects; for one object per line name it .jsonl.") from e
    except RecursionError as e:
        raise DataError(f"{path}: nests JSON too deeply to read. Fix: store a flat list of row objects "
                        "[{\"prompt\": ..., \"answer\": ...}, ...].") from e
    except ValueError as e:  # e.g. an integer of more digits than Python converts (4300)
        raise DataError(f"{path}: holds a value JSON cannot read ({_one_line(e, 120)}). Fix: store very long "
                        "numbers as strings.") from e
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]  # the common {"data": [...]} wrapper
    if not isinstance(data, list):
        raise DataError(f"{path}: holds a JSON {type(data).__name__}, expected a list of row objects. Fix: store "
                        "[{\"prompt\": ..., \"answer\": ...}, ...] or use JSONL.")
    for i, rec in enumerate(data):
        if isinstance(rec, dict):
            yield i, None, rec
        else:
            yield i, None, BadRow(path.name, i, "<json>", f"item is a JSON {type(rec).__name__}, not an object",
                                  "make every list item an object with the prompt and answer fields")


def _csv_records(path: Path, text: str, delimiter: str) -> List[Tuple[int, List[str]]]:
    """``(first line, values)`` of every record of ``text``; a DataError naming the line for broken CSV.

    The csv module's field size limit (131,072 characters by default) guards against a stray quote
    swallowing the file; here the whole text is already in memory, so a long field (a long prompt) is read.
    """
    old_limit = csv.field_size_limit()
    records: List[Tuple[int, List[str]]] = []
    start_line = 1
    try:
        csv.field_size_limit(min(2**31 - 1, max(old_limit, len(text) + 1)))  # a C long on every platform
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        for values in reader:
            records.append((start_line, values))
            start_line = reader.line_num + 1
    except csv.Error as e:
        raise DataError(f"{path}: line {start_line}: not valid CSV ({_one_line(e, 120)}). Fix: quote fields that "
                        "contain the delimiter, quotes or line breaks.") from e
    finally:
        csv.field_size_limit(old_limit)
    return records


def _read_csv(path: Path, delimiter: str, report: LoadReport) -> Iterator[_RawRow]:
    # The csv module (not pandas) so that every value stays the exact text ("025" keeps its zero) and
    # each row knows its line number, even when quoted fields span several lines.
    records = _csv_records(path, _read_text(path), delimiter)
    if not records:
        return
    header = [h.strip() for h in records[0][1]]
    for k, name in enumerate(header):
        if name in header[:k]:
            raise DataError(f"{path}: line 1: column {name!r} appears twice in the header (columns "
                            f"{header.index(name) + 1} and {k + 1}), so one would silently hide the other. Fix: "
                            "rename or remove one of them.")
    row = 0
    for start_line, values in records[1:]:
        if not any(v.strip() for v in values):
            report.blank_lines += 1  # an empty line or a record of empty fields: counted, not numbered
            continue
        if len(values) != len(header):
            yield row, start_line, BadRow(path.name, row, "<csv>", f"has {len(values)} values for {len(header)} "
                                          f"columns {header}", "quote fields that contain the delimiter or "
                                          "line breaks", start_line)
        else:
            yield row, start_line, dict(zip(header, values))
        row += 1


def _hf_rows(ds: Any, name: str, split: Optional[str]) -> Iterator[_RawRow]:
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is a dependency of clipo
        raise DataError("loading a Hugging Face dataset needs the 'datasets' package: pip install datasets") from e
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            raise DataError(f"{name}: is a DatasetDict with splits {sorted(ds)}; pass split= one of them.")
        if split not in ds:
            raise DataError(f"{name}: has no split {split!r}; available: {sorted(ds)}. Fix: pass one of them as split=.")
        ds = ds[split]
    elif split is not None and not isinstance(ds, (datasets.Dataset, datasets.IterableDataset)):
        raise DataError(f"{name}: split={split!r} given but the source is not a DatasetDict")
    for i, rec in enumerate(ds):
        yield i, None, rec


def _open(source: Source, fmt: Optional[str], split: Optional[str], report_holder: List[LoadReport]
          ) -> Tuple[str, str, Iterable[_RawRow]]:
    """Name, format and row iterator for any supported source."""
    if fmt is not None and fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if isinstance(source, (list, tuple)):
        name = "<records>"
        return name, "records", ((i, None, r) if isinstance(r, dict) else
                                 (i, None, BadRow(name, i, "<record>", f"is a {type(r).__name__}, not a dict",
                                                  "pass a list of dicts")) for i, r in enumerate(source))
    if not isinstance(source, (str, Path)):
        mod = type(source).__module__ or ""
        if mod.startswith("datasets"):
            name = f"<{type(source).__name__}>"
            return name, "hf", _hf_rows(source, name, split)
        raise DataError(f"cannot load data from a {type(source).__name__}; pass a file path, a saved dataset folder, "
                        "a datasets.Dataset / DatasetDict, or a list of dicts")
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"{path}: file not found. Fix: check the path (relative paths start at {Path.cwd()}).")
    fmt = fmt or _detect_format(path)
    report = LoadReport(source=str(path), format=fmt)
    report_holder.append(report)
    if fmt == "parquet":
        return str(path), fmt, _read_parquet(path)
    if fmt == "jsonl":
        return str(path), fmt, _read_jsonl(path, report)
    if fmt == "json":
        return str(path), fmt, _read_json(path)
    if fmt in ("csv", "tsv"):
        return str(path), fmt, _read_csv(path, "\t" if fmt == "tsv" else ",", report)
    if fmt == "hf":
        import datasets

        return str(path), fmt, _hf_rows(datasets.load_from_disk(str(path)), path.name, split)
    raise DataError(f"{path}: format {fmt!r} is not a file format")


# ------------------------------------------------------------------------------------ row checking


def _get(rec: Dict[str, Any], dotted: str) -> Any:
    """``rec["a"]["b"]`` for ``"a.b"``; a top-level key containing dots wins; _MISSING when absent."""
    if dotted in rec:
        return rec[dotted]
    cur: Any = rec
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def _without(rec: Dict[str, Any], dotted: str) -> Dict[str, Any]:
    """A copy of ``rec`` without the (possibly nested) field ``dotted``; emptied parents are dropped."""
    if dotted in rec or "." not in dotted:
        return {k: v for k, v in rec.items() if k != dotted}
    head, rest = dotted.split(".", 1)
    out = dict(rec)
    if isinstance(rec.get(head), dict):
        inner = _without(rec[head], rest)
        if inner:
            out[head] = inner
        else:
            out.pop(head)
    return out


def _not_utf8(text: str) -> bool:
    """True for text no tokenizer can encode: an unpaired surrogate (``"\\ud800"`` escaped in JSON)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_prompt(value: Any) -> Tuple[Optional[PromptLike], str]:
    """(prompt, "") when usable, else (None, what is wrong)."""
    if value is _MISSING or value is None:
        return None, "is missing"
    if isinstance(value, str):
        if _not_utf8(value):
            return None, _SURROGATE
        return (value, "") if value.strip() else (None, "is empty")
    if isinstance(value, (list, tuple)):
        if not value:
            return None, "is an empty message list"
        messages = []
        for k, m in enumerate(value):
            if not isinstance(m, dict):
                return None, f"message {k} is a {type(m).__name__}, expected {{'role': ..., 'content': ...}}"
            role, content = m.get("role"), m.get("content")
            if not isinstance(role, str) or not role:
                return None, f"message {k} has no 'role' string"
            if not isinstance(content, str):
                return None, f"message {k} has no 'content' string"
            if role not in CHAT_ROLES:
                shown = role if len(role) <= 40 else role[:37] + "..."
                return None, f"message {k} has role {shown!r}; roles are {', '.join(CHAT_ROLES)} (lower case)"
            if _not_utf8(content):
                return None, f"message {k} {_SURROGATE}"
            messages.append({"role": role, "content": content})
        if not any(m["content"].strip() for m in messages):
            return None, "has only empty messages"
        if not any(m["role"] == "user" and m["content"].strip() for m in messages):
            return None, "has no user message with text (the question would be empty)"
        return messages, ""
    return None, f"has type {type(value).__name__}, expected text or a list of {{role, content}} messages"


def _check_answer(value: Any) -> Tuple[Optional[str], str, bool]:
    """(answer, "", coerced) when usable, else (None, what is wrong, False)."""
    if value is _MISSING:
        return None, "is missing", False
    if value is None:
        return None, "is null", False
    if isinstance(value, str):
        text = value.strip()
        if _not_utf8(text):
            return None, _SURROGATE, False
        return (text, "", False) if text else (None, "is empty", False)
    if isinstance(value, bool):  # before int: True is an int, but a boolean answer is almost surely a bug
        return None, f"is a boolean ({value}); write it as the string \"True\"/\"False\"", False
    if isinstance(value, int):
        try:
            return str(value), "", True
        except ValueError:  # more digits than Python converts to text (sys.get_int_max_str_digits)
            return None, "is an integer too long to convert to text", False
    if isinstance(value, float):
        if not math.isfinite(value):
            return None, f"is the number {value}", False
        return str(value), "", True
    return None, f"has type {type(value).__name__}, expected a string", False


class _RowConverter:
    """Turns raw records into PromptExamples with the loader's options; collects report counters."""

    def __init__(self, name: str, report: LoadReport, prompt_field: str, answer_field: Optional[str],
                 data_source_field: str, data_source: Optional[str], answer_is_solution: Optional[bool]):
        self.name = Path(name).name if not name.startswith("<") else name
        self.report = report
        self.prompt_field = prompt_field
        self.answer_field = answer_field
        self.data_source_field = data_source_field
        self.data_source = data_source
        self.answer_is_solution = answer_is_solution

    def _bad(self, row: int, line: Optional[int], field: str, problem: str, fix: str) -> BadRow:
        return BadRow(self.name, row, field, problem, fix, line)

    def _resolve_answer_field(self, rec: Dict[str, Any]) -> str:
        # Decided once, from the first readable row, so every row of a file uses the same field.
        if self.answer_field is None:
            self.answer_field = next((f for f in DEFAULT_ANSWER_FIELDS if _get(rec, f) is not _MISSING),
                                     DEFAULT_ANSWER_FIELDS[1])
        return self.answer_field

    def check_columns(self, rec: Dict[str, Any]) -> None:
        """Fail fast, naming the columns there are, when a whole field is absent from the first row."""
        for field, what in ((self.prompt_field, "prompt_field"), (self._resolve_answer_field(rec), "answer_field")):
            if _get(rec, field) is _MISSING:
                raise DataError(f"{self.name}: no field {field!r} in the rows (fields: {sorted(rec)}). Fix: pass "
                                f"{what}= the name of the field holding the {what.split('_')[0]} "
                                "(nested fields as 'a.b').")

    def convert(self, row: int, line: Optional[int], rec: Dict[str, Any]) -> Union[PromptExample, BadRow]:
        prompt, problem = _check_prompt(_get(rec, self.prompt_field))
        if prompt is None:
            return self._bad(row, line, self.prompt_field, problem,
                             "give every row a non-empty prompt (text or chat messages)")
        answer_field = self._resolve_answer_field(rec)
        answer, problem, coerced = _check_answer(_get(rec, answer_field))
        if answer is None:
            return self._bad(row, line, answer_field, problem, "give every row a non-empty answer string")

        if self.data_source is not None:
            source = self.data_source
        else:
            raw_source = _get(rec, self.data_source_field)
            if raw_source is _MISSING or raw_source is None:
                source = ""
            elif isinstance(raw_source, str) and not _not_utf8(raw_source):
                source = raw_source
            elif isinstance(raw_source, str):
                return self._bad(row, line, self.data_source_field, _SURROGATE,
                                 "store the data source name as plain text, e.g. 'conrl/gsm8k'")
            else:
                return self._bad(row, line, self.data_source_field, f"has type {type(raw_source).__name__}",
                                 "store the data source name as a string, e.g. 'conrl/gsm8k'")

        extra = _without(_without(_without(rec, self.prompt_field), answer_field), self.data_source_field)
        reduce = self.answer_is_solution if self.answer_is_solution is not None else is_solution_source(source)
        if reduce:
            final, several = reduce_solution(answer)
            if final is None:
                return self._bad(row, line, answer_field, "the reference solution has no final answer (no \\boxed{} "
                                 "or an empty one)", "box the final answer in the solution, or skip this row")
            extra["solution"] = answer
            answer = final
            self.report.solutions_reduced += 1
            if several:
                self.report.multi_answer_rows.append(row)
        unmatchable = ground_truth_problem(answer, source)
        if unmatchable is not None:
            return self._bad(row, line, answer_field, *unmatchable)
        self.report.coerced_answers += int(coerced)
        return PromptExample(prompt=prompt, ground_truth=answer, data_source=source, index=row, extra=extra)


# ----------------------------------------------------------------------------------------- public


def load_examples(
    source: Source,
    *,
    format: Optional[str] = None,  # noqa: A002 - the natural name for a user-facing option
    prompt_field: str = "prompt",
    answer_field: Optional[str] = None,
    data_source_field: str = "data_source",
    data_source: Optional[str] = None,
    answer_is_solution: Optional[bool] = None,
    on_bad_row: str = "raise",
    drop_duplicates: bool = False,
    split: Optional[str] = None,
    limit: Optional[int] = None,
) -> Tuple[List[PromptExample], LoadReport]:
    """Read ``source`` into a list of :class:`PromptExample` and a :class:`LoadReport`.

    Args:
        source: a file (``.parquet``, ``.jsonl``/``.ndjson``, ``.json`` list, ``.csv``, ``.tsv``), a folder written
            by ``datasets`` ``save_to_disk``, a ``datasets.Dataset``/``DatasetDict`` object, or a list of dicts.
        format: force a format instead of guessing it from the extension (one of :data:`FORMATS`).
        prompt_field: field with the prompt: text, or chat messages ``[{role, content}, ...]``.
        answer_field: field with the reference answer, nested fields as ``"reward_model.ground_truth"``.
            ``None`` picks the first present of :data:`DEFAULT_ANSWER_FIELDS` (verl's field, then ``answer``,
            then ``ground_truth``).
        data_source_field: field naming the row's dataset (routes the reward); missing means ``""``.
        data_source: use this data source for every row instead of the field.
        answer_is_solution: the answer field holds a whole worked solution, to be reduced to its final
            ``\\boxed{}`` answer; ``None`` (default) turns it on for rows whose data source is in
            :data:`~clipo.data.answers.SOLUTION_SOURCES` (``conrl/math75``). A solution without a usable box
            is a bad row.
        on_bad_row: ``"raise"`` (default; ``"error"`` is the same) raises :class:`DataError` at the first
            malformed row; ``"skip"`` leaves such rows out and lists them in ``report.bad_rows``. Problems of
            the whole file (not UTF-8, broken parquet, a duplicated CSV column) raise in both modes.
        drop_duplicates: also remove rows repeating an earlier row's prompt and answer (they are always
            counted in ``report.duplicates``).
        split: the split to use when ``source`` holds a ``DatasetDict``.
        limit: read at most this many rows (quick experiments).
    """
    if on_bad_row not in ("raise", "error", "skip"):
        raise ValueError(f"on_bad_row must be 'raise' (or 'error') or 'skip', got {on_bad_row!r}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    holder: List[LoadReport] = []
    name, fmt, rows = _open(source, format, split, holder)
    report = holder[0] if holder else LoadReport(source=name, format=fmt)
    conv = _RowConverter(name, report, prompt_field, answer_field, data_source_field, data_source,
                         answer_is_solution)

    examples: List[PromptExample] = []
    first_seen: Dict[Tuple[str, str], int] = {}
    checked_columns = False
    for row, line, rec in rows:
        if limit is not None and report.rows_read >= limit:
            break
        report.rows_read += 1
        if isinstance(rec, dict) and not checked_columns and fmt in _SCHEMA_FORMATS:
            # Columnar sources share one schema: a field missing from the first row is missing from all,
            # which is a wrong field name, not a bad row. JSONL rows are checked one by one instead.
            conv.check_columns(rec)
            checked_columns = True
        result = conv.convert(row, line, rec) if isinstance(rec, dict) else rec
        if isinstance(result, BadRow):
            if on_bad_row != "skip":
                raise DataError.from_bad_row(result)
            report.bad_rows.append(result)
            continue
        key = (json.dumps(result.prompt, sort_keys=True, ensure_ascii=False), result.ground_truth)
        if key in first_seen:
            report.add_duplicate(row, first_seen[key])
            if drop_duplicates:
                continue
        else:
            first_seen[key] = row
        examples.append(result)
    report.duplicates_dropped = drop_duplicates
    report.rows_loaded = len(examples)
    if not examples and report.rows_read == 0:
        raise DataError(f"{name}: contains no rows. Fix: check that the file is the one you meant and is not empty.")
    report.log()
    return examples, report


def load_prompts(source: Source, **kwargs: Any) -> PromptDataset:
    """Like :func:`load_examples`, but returns a :class:`~clipo.data.dataset.PromptDataset`
    (its ``report`` attribute holds the :class:`LoadReport`)."""
    examples, report = load_examples(source, **kwargs)
    return PromptDataset(examples, report=report)


def load_many(sources: Sequence[Source], **kwargs: Any) -> PromptDataset:
    """Concatenate several sources (same options for all) into one :class:`PromptDataset`.

    Each example keeps its own ``index`` (row in its file); ``dataset.reports`` lists one report per source.
    """
    all_examples: List[PromptExample] = []
    reports: List[LoadReport] = []
    for src in sources:
        examples, report = load_examples(src, **kwargs)
        all_examples.extend(examples)
        reports.append(report)
    return PromptDataset(all_examples, report=reports[0] if len(reports) == 1 else None, reports=reports)
