"""Multiple-choice reading and the paper's (official) scorer, including the bugs it must keep."""

from __future__ import annotations

import pytest

from clipo.rewards import resolve_choices, score_answer
from clipo.rewards.official import hendrycks_normalize

MMLU_PROMPT = (
    "Including the bottom how many sides are on a square-based pyramid?\n\nOptions:\nA. three\nB. four\n"
    "C. five\nD. six\nLet's think step by step and output the final answer (eg, A, B, C, D) within \\boxed{}."
)
THEOREMQA_PROMPT = (
    "What is the relationship? (a) $J_g = 0.5J_f$. (b) $J_g = J_f$. (c) $J_g = 2J_f$. (d) $J_g = 4J_f$. "
    "Which option is correct?"
)

CHOICE_CASES = [
    (r"\boxed{C}", "C", {}, 1.0),  # the letter
    (r"\boxed{(C)}", "C", {}, 1.0),  # in parentheses (official scores 0)
    (r"\boxed{\text{C}}", "C", {}, 1.0),  # in \text (official scores 0)
    (r"\boxed{\textbf{(C)}}", "C", {}, 1.0),  # bold, parenthesised
    (r"\boxed{c}", "C", {}, 1.0),  # lower case names the same option (official scores 0)
    (r"\boxed{C:}", "C", {}, 1.0),  # trailing colon (official scores 0)
    (r"\boxed{C. five}", "C", {}, 1.0),  # letter with the option text
    (r"\boxed{C) five}", "C", {}, 1.0),  # letter with a parenthesis and the text
    (r"\boxed{Option C}", "C", {}, 1.0),  # "Option C"
    (r"\boxed{five}", "C", {"prompt": MMLU_PROMPT}, 1.0),  # the option's text, options read from the prompt
    (r"\boxed{D}", "C", {}, 0.0),  # wrong letter
    (r"\boxed{A or C}", "C", {}, 0.0),  # two letters: a hedge
    (r"\boxed{C} ... \boxed{D}", "C", {}, 0.0),  # two boxes with different letters: a hedge
    (r"\boxed{E}", "E", {"prompt": MMLU_PROMPT}, 0.0),  # E is not an option of this question
    (r"\boxed{E}", "E", {"options": 4}, 0.0),  # options given as a count
    (r"\boxed{E}", "E", {"options": "ABCDE"}, 1.0),  # options given as letters
    (r"\boxed{a cat}", "A", {}, 0.0),  # English article, not option (a)
    (r"\boxed{(c)}", "(c)", {"data_source": "conrl/theoremqa"}, 1.0),  # TheoremQA options
    (r"\boxed{C}", "(c)", {"data_source": "conrl/theoremqa"}, 1.0),  # upper case of option (c)
    (r"\boxed{(e)}", "(c)", {"prompt": THEOREMQA_PROMPT}, 0.0),  # (e) is not among (a)-(d)
    (r"\boxed{J_g = 2J_f}", "(c)", {"prompt": THEOREMQA_PROMPT}, 1.0),  # the content of option (c)
    (r"\boxed{\text{(B)}}", r"\text{(B)}", {}, 1.0),  # MATH option gold
]


@pytest.mark.parametrize("response,gt,kw,expected", CHOICE_CASES)
def test_choice(response, gt, kw, expected):
    kw.setdefault("data_source", "conrl/mmlu2k" if gt.isupper() and len(gt) == 1 else None)
    assert score_answer(response, gt, **kw) == expected


def test_resolve_choices_sources():
    assert resolve_choices(prompt=MMLU_PROMPT).letters == "ABCD"
    assert resolve_choices(prompt=MMLU_PROMPT).texts["C"] == "five"
    assert resolve_choices(prompt=THEOREMQA_PROMPT).letters == "abcd"
    assert resolve_choices(data_source="conrl/commonsense_qa").letters == "ABCDE"
    assert resolve_choices(options=["three", "four"]).texts == {"A": "three", "B": "four"}
    assert resolve_choices(options={"A": "x", "B": "y"}).letters == "AB"
    with pytest.raises(ValueError):
        resolve_choices(options=0)


# The official scorer must reproduce the paper's numbers, bugs included. Expected values are the real
# scorer's outputs (run outside this project; see tests/fixtures/README.md).
OFFICIAL = [
    (r"\boxed{C}", "C", "conrl/mmlu2k", 1.0),
    (r"\boxed{C. five}", "C", "conrl/mmlu2k", 1.0),  # split('.')[0]
    (r"\boxed{(C)}", "C", "conrl/mmlu2k", 0.0),  # bug: parentheses
    (r"\boxed{\text{C}}", "C", "conrl/mmlu2k", 0.0),  # bug: \text
    (r"\boxed{c}", "C", "conrl/mmlu2k", 0.0),  # bug: case-sensitive
    (r"\boxed{C:}", "C", "conrl/mmlu2k", 0.0),  # bug: colon
    (r"\boxed {18}", "18", "conrl/gsm8k", 0.0),  # bug: space before the brace
    (r"\fbox{18}", "18", "conrl/gsm8k", 0.0),  # bug: \fbox
    ("#### 18", "18", "conrl/gsm8k", 0.0),  # bug: unboxed
    (r"\boxed{[1, 100]}", "(1, 100)", "conrl/math", 1.0),  # bug: comma stripping inside intervals
    (r"\boxed{12^2}", "144", "conrl/math", 0.0),  # bug: integer gold needs an integer string
    (r"\boxed{1.45\times10^6}", "1,450,000", "conrl/gsm8k", 0.0),  # bug: same rule
    (r"\boxed{76°}", r"76^\circ", "conrl/math", 0.0),  # bug: unicode degree
    (r"\boxed{3, 5, 7}", "7, 5, 3", "conrl/math", 0.0),  # bug: unordered list
    (r"\boxed{2125}", "2,125", "conrl/gsm8k", 1.0),  # commas are stripped from numbers
    (r"\boxed{\dfrac{1}{2}}", "0.5", "conrl/math", 1.0),  # Hendrycks normalisation
    (r"\boxed{x = 5}", "5", "conrl/math", 1.0),  # short `x =` prefix dropped
    (r"\boxed{45.0}", "45", "conrl/gsm8k", 1.0),  # a float equal to an integer is that integer
    (r"<think>\boxed{5}</think>\boxed{18}", "18", "conrl/gsm8k", 1.0),  # text after </think>
    (r"\boxed{18} \boxed{5}", "18", "conrl/gsm8k", 0.0),  # only the last box counts
]


@pytest.mark.parametrize("response,gt,source,expected", OFFICIAL)
def test_official_mode(response, gt, source, expected):
    assert score_answer(response, gt, data_source=source, mode="official") == expected


def test_official_robust_disagree_only_where_documented():
    # The robust scorer fixes each official bug above that is marked as one.
    for response, gt, source, expected in OFFICIAL:
        robust = score_answer(response, gt, data_source=source, format_policy="lenient")
        if expected == 1.0 and "[1, 100]" not in response:
            assert robust == 1.0, (response, gt)


def test_hendrycks_normalize():
    assert hendrycks_normalize(r"\dfrac12") == r"\frac{1}{2}"
    assert hendrycks_normalize(r"10 \text{ cm}") == "10"
    assert hendrycks_normalize(r"\left( 1, 2 \right)") == "(1,2)"
    assert hendrycks_normalize("3/4") == r"\frac{3}{4}"
    assert hendrycks_normalize(".5") == r"\frac{1}{2}"
