"""Errors and per-row problems raised or recorded while loading prompt data."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ["DataError", "BadRow"]


@dataclass(frozen=True)
class BadRow:
    """One malformed row: where it is, which field is wrong, what is wrong, and how to fix it.

    ``row`` is the 0-based row position in the source (``None`` for problems with the whole file,
    e.g. a missing column); ``line`` is the 1-based line in a text file (JSONL, CSV) when known.
    """

    source: str
    row: Optional[int]
    field: str
    problem: str
    fix: str = ""
    line: Optional[int] = None

    def where(self) -> str:
        """``file.jsonl, line 7 (row 6)`` - the place a person opens to fix the row."""
        if self.row is None:
            return self.source
        if self.line is not None:
            return f"{self.source}, line {self.line} (row {self.row})"
        return f"{self.source}, row {self.row}"

    def message(self) -> str:
        msg = f"{self.where()}: field {self.field!r}: {self.problem}"
        return f"{msg}. Fix: {self.fix}" if self.fix else msg


class DataError(ValueError):
    """A data file or row that cannot be used; the message names the file, the row, the field and the fix.

    The structured details are kept in :attr:`bad_row` (``None`` for file-level problems such as a
    missing file or an unknown extension) so callers can react without parsing the message.
    """

    def __init__(self, message: str, bad_row: Optional[BadRow] = None):
        super().__init__(message)
        self.bad_row = bad_row

    @classmethod
    def from_bad_row(cls, bad: BadRow, *, hint_skip: bool = True) -> "DataError":
        msg = bad.message()
        if hint_skip and bad.row is not None:
            msg += (" (or skip such rows: data.on_bad_row=skip, or on_bad_row='skip' in clipo.data.load_prompts;"
                    " they are counted and listed in the report)")
        return cls(msg, bad)
