"""Finding final answers: boxes, </think>, lenient markers, and math75 reference solutions."""

from __future__ import annotations

import pytest

from clipo.rewards import extract_candidates, extract_final_answer, find_boxed, strip_thinking
from clipo.rewards.extract import reference_answer_parts


def test_find_boxed_brace_matching_and_forms():
    text = r"a \boxed{\frac{1}{2}} b \boxed {x} c \fbox{y} d \boxed 2. e \boxed{\{1,2\}}"
    assert find_boxed(text) == [r"\frac{1}{2}", "x", "y", "2", r"\{1,2\}"]


def test_unterminated_box_is_ignored():
    assert find_boxed(r"so \boxed{\frac{1}{2}") == []


def test_strip_thinking_keeps_text_after_last_close():
    assert strip_thinking("<think>a</think>b</think>c") == "c"
    assert strip_thinking("no think") == "no think"


@pytest.mark.parametrize(
    "response,policy,expected",
    [
        (r"\boxed{3} and \boxed{5}", "strict", ["3", "5"]),  # every box, so hedges can be rejected
        ("#### 18", "strict", []),  # strict: boxes only
        ("#### 18", "lenient", ["18"]),
        ("so The answer is $18$.", "lenient", ["18"]),
        ("**Answer: (D)**", "lenient", ["(D)"]),
        ("A", "lenient", ["A"]),  # the whole response is the answer
        (r"<think>\boxed{1}", "strict", []),  # unclosed think: truncated
    ],
)
def test_extract_candidates(response, policy, expected):
    assert extract_candidates(response, policy) == expected


def test_extract_candidates_rejects_bad_policy():
    with pytest.raises(ValueError, match="format_policy"):
        extract_candidates("x", "loose")


@pytest.mark.parametrize(
    "solution,expected",
    [
        (r"so $x = \boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),  # last box, brace-matched
        (r"first $\boxed{3}$; then finally $\boxed{5}$.", "5"),  # an earlier intermediate box is not the answer
        (r"the answer is $\boxed 2$.", "2"),  # math75 rows 888 and 1011
        (r"the answer is $\boxed{}$.", None),  # math75 rows 5341 and 5343: empty box
        ("no box at all", None),
        (r"points $\boxed{(-2,18)}$ and $\boxed{(8,38)}$.", "(-2,18); (8,38)"),  # rows 334/504: two parts
        (r"this is $\boxed{28}$ or $\boxed{28_9}$.", "28_9"),  # "or": alternative spellings, keep the last
    ],
)
def test_extract_final_answer(solution, expected):
    assert extract_final_answer(solution) == expected


def test_reference_answer_parts():
    assert reference_answer_parts(r"$\boxed{1}$, $\boxed{2}$ and $\boxed{3}$") == ["1", "2", "3"]
    assert reference_answer_parts("none") == []
