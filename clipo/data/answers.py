"""Reduce a whole reference solution (MATH / math75 style) to the final answer the verifier compares with.

The extraction itself belongs to the verifiers (:func:`clipo.rewards.extract.extract_final_answer`), so that
training data and scoring agree on what "the answer" of a solution is. Datasets whose answers are numbers
(:data:`NUMERIC_SOURCES`) must store numbers: :func:`ground_truth_problem` names a ground truth the verifier
could never match there (``\\boxed{5}``, ``\\frac{1}{2}``, ``five``), which the loader turns into a bad row.
"""
from __future__ import annotations

from typing import FrozenSet, Optional, Tuple

from clipo.rewards import answer_type
from clipo.rewards.extract import extract_final_answer, find_boxed

__all__ = ["SOLUTION_SOURCES", "NUMERIC_SOURCES", "reduce_solution", "is_solution_source", "expects_number",
           "ground_truth_problem"]

# Data sources whose stored ground truth is a whole worked solution rather than an answer.
# The paper's math75 (MATH train split) is the only one among its 16 files.
SOLUTION_SOURCES: FrozenSet[str] = frozenset({"conrl/math75"})

# Datasets whose every answer is a plain number (the last part of the data source name, so that
# "conrl/gsm8k" and "openai/gsm8k" both count). Exact names, not substrings: conrl/aime2025 holds `336^\circ`.
# The official scorer compares such answers as numbers, so a ground truth that is not a number
# (`\boxed{5}`, `\frac{1}{2}`, `five`) could never be matched and every response would score 0.
NUMERIC_SOURCES: FrozenSet[str] = frozenset({"gsm8k", "gsm_p1", "gsm_p2", "gsm_symbolic", "aime", "amc"})


def is_solution_source(data_source: str) -> bool:
    """True when rows of ``data_source`` store whole solutions (``answer_is_solution`` turns on by itself)."""
    return data_source in SOLUTION_SOURCES


def expects_number(data_source: str) -> bool:
    """True when every ground truth of ``data_source`` must be a plain number (see :data:`NUMERIC_SOURCES`)."""
    return data_source.rsplit("/", 1)[-1] in NUMERIC_SOURCES


def ground_truth_problem(answer: str, data_source: str) -> Optional[Tuple[str, str]]:
    """``(problem, fix)`` when the verifier could never match ``answer`` for ``data_source``, else None.

    A dataset of numeric answers needs a number as the verifiers read one (:func:`clipo.rewards.answer_type`
    is ``"numeric"``: ``18``, ``-3``, ``2,125``, ``0.5``).
    """
    if not expects_number(data_source) or answer_type(answer) == "numeric":
        return None
    shown = answer if len(answer) <= 40 else answer[:37] + "..."
    boxed = "\\boxed" in answer or "\\fbox" in answer
    fix = ("store only the final number (without \\boxed{}), or load with answer_is_solution=True" if boxed
           else "store the answer as a plain number such as 42 or -3.5")
    return (f"is {shown!r}, not a plain number, but {data_source!r} answers are numbers (every response "
            "would score 0)", fix)


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
