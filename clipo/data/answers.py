"""Reduce a whole reference solution (MATH / math75 style) to the final answer the verifier compares with.

The extraction itself belongs to the verifiers (:func:`clipo.rewards.extract.extract_final_answer`), so that
training data and scoring agree on what "the answer" of a solution is; it is imported lazily so that
``import clipo.data`` stays light.
"""
from __future__ import annotations

from typing import FrozenSet, Optional, Tuple

from clipo.rewards.extract import extract_final_answer, find_boxed

__all__ = ["SOLUTION_SOURCES", "reduce_solution", "is_solution_source"]

# Data sources whose stored ground truth is a whole worked solution rather than an answer.
# The paper's math75 (MATH train split) is the only one among its 16 files.
SOLUTION_SOURCES: FrozenSet[str] = frozenset({"conrl/math75"})


def is_solution_source(data_source: str) -> bool:
    """True when rows of ``data_source`` store whole solutions (``answer_is_solution`` turns on by itself)."""
    return data_source in SOLUTION_SOURCES


def reduce_solution(solution: str) -> Tuple[Optional[str], bool]:
    """``(final answer or None, several_different_boxes)`` for a reference solution.

    The answer is the last ``\\boxed{}`` of the solution (as the verifiers read it); None when the
    solution has no box or an empty one, which makes the row unusable for a verifiable reward.
    ``several_different_boxes`` flags solutions that box more than one distinct answer (e.g. two
    intersection points in two boxes), where the last box alone is only part of the answer.
    """
    answer = extract_final_answer(solution)
    distinct = {b.strip() for b in find_boxed(solution) if b.strip()}
    return answer, len(distinct) > 1
