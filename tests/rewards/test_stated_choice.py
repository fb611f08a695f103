"""Multiple-choice answers stated in words without a box (lenient policy), and the self-correction policy.

Policy (docs/algorithms.md, "Which answer counts when a response states several"): without a box, under the
lenient policy, the last statement of an option wins ("The correct option is C."); a statement that names a
second option is a hedge. With boxes, robust mode applies the hedging guard (two different boxed answers score
0, also after a self-correction); official mode takes the last box, as the paper's scorer does.
"""

from __future__ import annotations

import pytest

from clipo.rewards import score_answer
from clipo.rewards.choice import stated_choice

REASONING = "Option A ignores the cost. Option B is too slow. Option D is not allowed here.\n\n"

STATED = [
    ("The correct option is C.", "C"),
    (REASONING + "The correct option is C.", "C"),
    (REASONING + "So the best answer is (C).", "C"),
    (REASONING + "Therefore, C is the correct answer.", "C"),
    (REASONING + "Option C is correct.", "C"),
    (REASONING + "I choose option C.", "C"),
    (REASONING + "I'd go with C, since it is the cheapest.", "C"),
    (REASONING + "The answer is C, because it is cheap.", "C"),
    (REASONING + "Final answer: **C**", "C"),
    (REASONING + "The answer is A. Actually, the correct answer is C.", "C"),  # the last statement wins
    ("<think>The correct option is A.</think>\nThe correct option is C.", "C"),  # thinking is not graded
    (REASONING + "The answer is C or D.", None),  # two options: a hedge
    (REASONING + "The correct answer is C/D.", None),
    # Found by tests/rewards/test_hedges.py's property: another option later in the same sentence is a hedge too.
    (REASONING + r"The answer is C \text{ or maybe } A.", None),
    (REASONING + "The answer is C, unless it is B.", None),
    (REASONING + "The best answer is (C) since (A) is wrong.", None),
    (REASONING + "The answer is C. A cheaper one would be wrong.", "C"),  # a new sentence is not the statement
    (REASONING + "The answer is a cheaper one.", None),  # the article "a" is no option
    ("<think>The correct option is C.", None),  # thinking never closed: no answer yet
    (REASONING + r"The correct option is C, so \boxed{D}.", None),  # a box takes precedence
]


@pytest.mark.parametrize("response,expected", STATED)
def test_stated_choice(response, expected):
    assert stated_choice(response) == expected


SCORED = [
    # (response, ground truth, lenient score, strict score)
    (REASONING + "The correct option is C.", "C", 1.0, 0.0),
    (REASONING + "Therefore, C is the correct answer.", "C", 1.0, 0.0),
    (REASONING + "I choose option (c).", "C", 1.0, 0.0),  # lower case in parentheses names option C
    (REASONING + "The correct option is B.", "C", 0.0, 0.0),
    (REASONING + "The correct option is E.", "E", 0.0, 0.0),  # mmlu2k has options A-D only
    (REASONING + "The answer is C or D.", "C", 0.0, 0.0),
    # A box, then a correction with another box: the hedging guard gives 0 in robust mode, both policies.
    (r"\boxed{A}. Wait, A ignores the cost; the answer is \boxed{C}.", "C", 0.0, 0.0),
    (r"\boxed{C}. Wait, let me check again... yes, \boxed{C}.", "C", 1.0, 1.0),  # restating one answer is fine
]


@pytest.mark.parametrize("response,gt,lenient,strict", SCORED)
def test_robust_scores(response, gt, lenient, strict):
    assert score_answer(response, gt, data_source="conrl/mmlu2k", format_policy="lenient") == lenient
    assert score_answer(response, gt, data_source="conrl/mmlu2k", format_policy="strict") == strict


def test_math_answers_are_not_read_as_letters():
    # The option phrasing is read only for multiple-choice rows: "The answer is X = 5" keeps its value.
    assert score_answer("So the answer is x = 5.", "5", data_source="conrl/math", format_policy="lenient") == 1.0


def test_self_correction_official_takes_the_last_box():
    # The paper's scorer reads only the last box (real outputs: tests/rewards/test_official_scorer.py).
    response = r"\boxed{A}. Wait, A ignores the cost; the answer is \boxed{C}."
    assert score_answer(response, "C", data_source="conrl/mmlu2k", mode="official") == 1.0
    assert score_answer(r"\boxed{17}. No wait, \boxed{18}.", "18", data_source="conrl/gsm8k", mode="official") == 1.0
    assert score_answer(r"\boxed{17}. No wait, \boxed{18}.", "18", data_source="conrl/gsm8k") == 0.0
