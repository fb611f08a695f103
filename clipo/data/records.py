"""The typed record each loaded row becomes, and the report a load returns."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

from .errors import BadRow

__all__ = ["Message", "PromptLike", "PromptExample", "LoadReport"]

logger = logging.getLogger("clipo.data")

Message = Dict[str, str]
PromptLike = Union[str, List[Message]]


@dataclass(frozen=True)
class PromptExample:
    """One prompt with its verifiable answer.

    Attributes:
        prompt: raw text, or chat messages ``[{"role": "user", "content": "..."}, ...]`` (the paper's files).
        ground_truth: the reference answer as a string, exactly as stored (``"025"``, ``"2,125"``, ``"142.0"``),
            except for whole reference solutions (math75), which are reduced to their final answer; the
            solution itself is then kept in ``extra["solution"]``.
        data_source: the dataset name used to route rewards (``"conrl/gsm8k"``); ``""`` when the source has
            none and none was passed to the loader.
        index: 0-based row position in the source file or dataset (stable, so a row can be found again).
        extra: every other field of the row (``extra_info``, ``ability``, ...); treat it as read-only.
    """

    prompt: PromptLike
    ground_truth: str
    data_source: str
    index: int
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def is_chat(self) -> bool:
        """True when the prompt is a list of chat messages."""
        return not isinstance(self.prompt, str)

    def user_text(self) -> str:
        """The prompt's text: the string itself, or the contents of the user messages joined."""
        if isinstance(self.prompt, str):
            return self.prompt
        return "\n\n".join(m["content"] for m in self.prompt if m.get("role") == "user")

    def to_row(self) -> Dict[str, Any]:
        """A plain dict in the shape reward functions take as ``**row`` (``prompt`` as text for MC options)."""
        row = dict(self.extra)
        row.update(prompt=self.user_text(), ground_truth=self.ground_truth, data_source=self.data_source,
                   index=self.index)
        return row


@dataclass
class LoadReport:
    """What a load found: counts, malformed rows, duplicates, and answers reduced from solutions.

    ``duplicate_examples`` holds ``(row, first_row)`` pairs: ``row`` repeats the prompt and answer of
    ``first_row``. ``bad_rows`` is filled only with ``on_bad_row="skip"`` (otherwise the first one raises).
    ``multi_answer_rows`` lists the rows whose reference solution boxes several different texts.
    """

    source: str
    format: str
    rows_read: int = 0
    rows_loaded: int = 0
    bad_rows: List[BadRow] = field(default_factory=list)
    duplicates: int = 0
    duplicate_examples: List[Tuple[int, int]] = field(default_factory=list)
    duplicates_dropped: bool = False
    solutions_reduced: int = 0
    multi_answer_rows: List[int] = field(default_factory=list)
    coerced_answers: int = 0
    blank_lines: int = 0

    MAX_EXAMPLES = 5  # duplicates kept as examples; the count is always complete

    @property
    def num_bad_rows(self) -> int:
        return len(self.bad_rows)

    @property
    def multi_answer_solutions(self) -> int:
        """Reference solutions whose boxes hold different texts (several answers, or one answer written twice
        differently); only the last box became the ground truth, so these rows deserve a look."""
        return len(self.multi_answer_rows)

    def add_duplicate(self, row: int, first_row: int) -> None:
        self.duplicates += 1
        if len(self.duplicate_examples) < self.MAX_EXAMPLES:
            self.duplicate_examples.append((row, first_row))

    def summary(self) -> str:
        """One line per finding, for logs and error messages."""
        lines = [f"{self.source} ({self.format}): {self.rows_read} rows read, {self.rows_loaded} loaded"]
        if self.bad_rows:
            lines.append(f"  {len(self.bad_rows)} bad rows skipped; first: {self.bad_rows[0].message()}")
        if self.duplicates:
            what = "dropped" if self.duplicates_dropped else "kept"
            ex = ", ".join(f"row {r} = row {f}" for r, f in self.duplicate_examples)
            lines.append(f"  {self.duplicates} duplicate rows (same prompt and answer, {what}); e.g. {ex}")
        if self.solutions_reduced:
            lines.append(f"  {self.solutions_reduced} reference solutions reduced to their final boxed answer")
        if self.multi_answer_solutions:
            rows = ", ".join(map(str, self.multi_answer_rows[:8])) + (", ..." if len(self.multi_answer_rows) > 8 else "")
            lines.append(f"  {self.multi_answer_solutions} solutions box several different texts (rows {rows}); "
                         "the last box was taken as the ground truth")
        if self.coerced_answers:
            lines.append(f"  {self.coerced_answers} numeric answers converted to strings")
        if self.blank_lines:
            lines.append(f"  {self.blank_lines} blank lines (or CSV records of empty fields) skipped, not numbered as rows")
        return "\n".join(lines)

    def log(self, log: Optional[logging.Logger] = None) -> None:
        """Log the summary: WARNING when rows were skipped or duplicated, INFO otherwise."""
        log = log or logger
        noisy = self.bad_rows or self.duplicates or self.multi_answer_solutions
        log.log(logging.WARNING if noisy else logging.INFO, "%s", self.summary())

    def __str__(self) -> str:
        return self.summary()
