"""Hand-written cases for each rule of the robust scorer (``clipo.score_answer``).

Every case is (response, ground truth, expected score, keyword arguments); the comment after it says why
the label is right.
"""

from __future__ import annotations

import pytest

from clipo.rewards import answer_type, score_answer

B = r"\boxed"

# ---- finding the final answer -----------------------------------------------------------------------
EXTRACTION = [
    (rf"so {B}{{18}}.", "18", 1.0, {}),  # the plain case
    (rf"{B} {{18}}", "18", 1.0, {}),  # a space before the brace is still a box
    (r"\fbox{18}", "18", 1.0, {}),  # \fbox is a box
    (rf"the answer is {B} 2.", "2", 1.0, {}),  # MATH writes `\boxed 2` without braces
    (rf"{B}{{\frac{{1}}{{2}}}}", r"\frac{1}{2}", 1.0, {}),  # nested braces are matched
    (rf"<think>maybe {B}{{5}}</think> so {B}{{18}}", "18", 1.0, {}),  # only text after </think> counts
    (rf"<think>try {B}{{18}}</think> final: {B}{{5}}", "18", 0.0, {}),  # a draft inside <think> is not the answer
    (rf"<think>still thinking {B}{{18}}", "18", 0.0, {}),  # never closed: truncated, no final answer
    ("#### 18", "18", 0.0, {}),  # strict policy: the prompt asked for a box
    ("#### 18", "18", 1.0, {"format_policy": "lenient"}),  # lenient: GSM8K marker counts
    ("The answer is 18.", "18", 1.0, {"format_policy": "lenient"}),  # explicit statement
    ("Answer: 18", "18", 1.0, {"format_policy": "lenient"}),  # explicit statement
    ("Total 9 + 9 = 18.\n\nLiam has 18 apples in total.", "18", 1.0, {"format_policy": "lenient"}),  # one number in the closing sentence
    ("First 16 - 3 - 4 = 9.\n\nThen 9 * 2 = 18 and 3 more.", "18", 0.0, {"format_policy": "lenient"}),  # several numbers: no single answer
    (rf"{B}{{3}} or maybe {B}{{5}}", "3", 0.0, {}),  # hedge: two different final answers
    (rf"{B}{{5}} ... so again {B}{{5}}", "5", 1.0, {}),  # the same answer restated is not a hedge
    (rf"{B}{{12^2}} = {B}{{144}}", "144", 1.0, {}),  # two boxes, both correct
    (rf"{B}{{}}", "18", 0.0, {}),  # an empty box is no answer
    (rf"{B}{{18", "18", 0.0, {}),  # unterminated box (truncated) is no answer
]

# ---- numbers ----------------------------------------------------------------------------------------
NUMBERS = [
    (rf"{B}{{2125}}", "2,125", 1.0, {}),  # thousands separator in the gold
    (rf"{B}{{2{{,}}125}}", "2125", 1.0, {}),  # LaTeX {,} separator
    (rf"{B}{{10,\!080}}", "10080", 1.0, {}),  # \! thin space after the comma
    (rf"{B}{{11,\! 111,\! 111,\! 100}}", "11111111100", 1.0, {}),  # MATH-500 style big number
    (rf"{B}{{45.0}}", "45", 1.0, {}),  # x.0 is the integer
    (rf"{B}{{142}}", "142.0", 1.0, {}),  # AMC golds are floats
    (rf"{B}{{25}}", "025", 1.0, {}),  # AIME zero padding
    (rf"{B}{{08}}", "080", 0.0, {}),  # 8 is not 80
    (rf"{B}{{2.125}}", "2125", 0.0, {}),  # a decimal point is not a thousands separator
    (rf"{B}{{1.45\times10^6}}", "1,450,000", 1.0, {}),  # scientific notation
    (rf"{B}{{1.45 \text{{ million}}}}", "1,450,000", 1.0, {}),  # number word
    (rf"{B}{{-6 \times 10^{{25}}}}", "-6e+25", 1.0, {}),  # e-notation gold (math-verify fails it)
    (rf"{B}{{3.54 \times 10^{{-7}}}}", "3.54e-07", 1.0, {}),  # small e-notation gold
    (rf"{B}{{45\%}}", "45", 1.0, {}),  # percent is a unit when the gold has none
    (rf"{B}{{45}}", r"45\%", 1.0, {}),  # and the other way round
    (rf"{B}{{0.45}}", r"45\%", 0.0, {}),  # 0.45 is a ratio, not 45 percent
    (rf"{B}{{\$18.90}}", r"\$18.90", 1.0, {}),  # currency
    (rf"{B}{{18 \text{{ dollars}}}}", "18", 1.0, {}),  # unit words
    (rf"{B}{{76°}}", r"76^\circ", 1.0, {}),  # unicode degree sign
    (rf"{B}{{76}}", r"76^\circ", 1.0, {}),  # degrees as a unit
    (rf"{B}{{336 \text{{ radians}}}}", r"336^\circ", 0.0, {}),  # wrong angle unit
    (rf"{B}{{0.5}}", r"\frac{1}{2}", 1.0, {}),  # fraction vs decimal
    (rf"{B}{{0.33}}", r"\frac{1}{3}", 0.0, {}),  # a rounding of an exact gold is wrong
    (rf"{B}{{\frac{{1}}{{3}}}}", "0.333", 1.0, {}),  # gold 0.333 is itself a rounding of 1/3
    (rf"{B}{{0.\overline{{3}}}}", r"\frac{1}{3}", 1.0, {}),  # repeating decimal
    (rf"{B}{{-\frac{{\pi}}{{3}}}}", "-1.047", 1.0, {}),  # exact value of a rounded gold
    (rf"{B}{{43.8}}", "43.75", 0.0, {}),  # less precise than the gold: wrong
    (rf"{B}{{24.61}}", "24.6", 0.0, {}),  # an exact decimal gold (MATH): a different decimal is wrong
    (rf"{B}{{0.67048}}", "0.6705", 1.0, {"data_source": "conrl/theoremqa"}),  # TheoremQA golds are roundings
    (rf"{B}{{1\frac{{4}}{{5}}}}", r"\frac{9}{5}", 1.0, {}),  # mixed number
    (rf"{B}{{12^2}}", "144", 1.0, {}),  # an evaluated expression (the official scorer rejects it)
    (rf"{B}{{19}}", "18", 0.0, {}),  # simply wrong
    (rf"{B}{{52_8}}", "52_8", 1.0, {}),  # base subscript
    (rf"{B}{{52}}", "52_8", 1.0, {}),  # digits without the base the question asked for
    (rf"{B}{{42}}", "52_8", 0.0, {}),  # the decimal value is not the base-8 numeral
    (rf"{B}{{\frac{{2}}{{2^{{98}}}}}}", r"\frac{1}{2^{98}}", 0.0, {}),  # tiny values differ (math-verify rounds to 6 places)
]

# ---- expressions, structures ------------------------------------------------------------------------
STRUCTURES = [
    (rf"{B}{{\frac{{\sqrt{{3}}}}{{3}}}}", r"\frac{1}{\sqrt{3}}", 1.0, {}),  # symbolic equality
    (rf"{B}{{\dfrac 34}}", r"\frac{3}{4}", 1.0, {}),  # \dfrac and brace-less arguments
    (rf"{B}{{(1,100)}}", "[1, 100]", 0.0, {}),  # an open interval is not the closed one (official bug)
    (rf"{B}{{[1,100]}}", "[1, 100]", 1.0, {}),  # same interval
    (rf"{B}{{(3, 4]}}", "(3,4]", 1.0, {}),  # half-open interval, spaces
    (rf"{B}{{3 < \lambda \le 4}}", "(3,4]", 1.0, {}),  # the same set as an inequality
    (rf"{B}{{x \in [-2,7]}}", r"x \in [-2,7]", 1.0, {}),  # as written
    (rf"{B}{{[-2,7]}}", r"x \in [-2,7]", 1.0, {}),  # `x \in` is a name, not part of the value
    (rf"{B}{{-2 \le x \le 7}}", r"x \in [-2,7]", 1.0, {}),  # inequality form
    (rf"{B}{{(6, 31, -1)}}", "(6,31,-1)", 1.0, {}),  # ordered triple
    (rf"{B}{{(-1, 31, 6)}}", "(6,31,-1)", 0.0, {}),  # a tuple keeps its order
    (rf"{B}{{5, 3, 7}}", "3, 5, 7", 1.0, {}),  # an unordered list of answers
    (rf"{B}{{3, 5}}", "3, 5, 7", 0.0, {}),  # incomplete list
    (rf"{B}{{4 \text{{ or }} 0}}", "0 or 4", 1.0, {}),  # multi-answer gold, order-free
    (rf"{B}{{b = 0 \text{{ or }} b = 4}}", "0 or 4", 1.0, {}),  # with the variable named
    (rf"{B}{{0}} and {B}{{4}}", "0 or 4", 1.0, {}),  # parts boxed separately
    (rf"{B}{{4}}", "0 or 4", 0.0, {}),  # one part missing
    (rf"{B}{{3 \text{{ or }} 5}}", "3", 0.0, {}),  # hedge inside one box
    (rf"{B}{{1+\sqrt{{19}}, 1-\sqrt{{19}}}}", r"1 \pm \sqrt{19}", 1.0, {}),  # \pm expands to two answers
    (rf"{B}{{1+\sqrt{{19}}}}", r"1 \pm \sqrt{19}", 0.0, {}),  # only one of them
    (rf"{B}{{\{{-2, 1+\sqrt{{5}}, 1-\sqrt{{5}}\}}}}", r"\{1\pm\sqrt{5},-2\}", 1.0, {}),  # set with \pm inside
    (rf"{B}{{\varnothing}}", r"\emptyset", 1.0, {}),  # empty set spellings
    (rf"{B}{{\text{{none}}}}", r"\emptyset", 1.0, {}),  # "none" means the empty set
    (rf"{B}{{k = 5}}", "5", 1.0, {}),  # `k =` names the unknown
    (rf"{B}{{y = 2x + 3}}", "y = 2x + 3", 1.0, {}),  # equation gold
    (rf"{B}{{\left(-\tfrac13, \tfrac23, \tfrac53\right)}}",
     r"\begin{pmatrix} -1/3 \\ 2/3 \\ 5/3 \end{pmatrix}", 1.0, {}),  # a vector as a tuple
    (rf"{B}{{\begin{{pmatrix}} 1/3 \\ 2/3 \\ 5/3 \end{{pmatrix}}}}",
     r"\begin{pmatrix} -1/3 \\ 2/3 \\ 5/3 \end{pmatrix}", 0.0, {}),  # sign error in one component
    (rf"{B}{{\frac{{1 - 7i}}{{25}}}}", r"\frac{1}{25}-\frac{7}{25}i", 1.0, {}),  # complex number, combined
    (rf"{B}{{59 + 63 = }}", "122", 0.0, {}),  # a restated question is not an answer
    (rf"{B}{{59 + 63 = 122}}", "122", 1.0, {}),  # a computation ending in the result is
    (rf"{B}{{99^2+99+1}}", "9901", 0.0, {"prompt": "Compute $99^2+99+1$ in your head."}),  # copied from the question
    (rf"{B}{{9^9^9^9}}", "5", 0.0, {}),  # explosive input: never handed to sympy, just wrong
    (rf"{B}{{2 \sqrt{{2}}}}", r"\sqrt{8}", 1.0, {}),  # simplification
    (rf"{B}{{\pi a^3}}", r"\pi a^2", 0.0, {}),  # a variable is not a unit
    (rf"{B}{{[1, 6]}}", "[1, 6]", 1.0, {"data_source": "conrl/theoremqa"}),  # TheoremQA list
    (rf"{B}{{1, 6}}", "[1, 6]", 1.0, {"data_source": "conrl/theoremqa"}),  # TheoremQA list without brackets
    (rf"{B}{{x = -1, y = 4}}", "[-1, 4]", 1.0, {"data_source": "conrl/theoremqa"}),  # named solution components
    (rf"{B}{{[4, -1]}}", "[-1, 4]", 0.0, {"data_source": "conrl/theoremqa"}),  # a list keeps its order
]

# ---- booleans, text ---------------------------------------------------------------------------------
TEXT = [
    (rf"{B}{{True}}", "True", 1.0, {}),  # boolean
    (rf"{B}{{\text{{true}}}}", "True", 1.0, {}),  # case and \text do not matter
    (rf"{B}{{Yes}}", "True", 1.0, {}),  # yes/no question answered with yes
    (rf"{B}{{False}}", "True", 0.0, {}),  # wrong boolean
    (rf"{B}{{cake}}", "CAKE", 1.0, {}),  # short text, case-insensitive
    (rf"{B}{{\text{{Evelyn}}}}", r"\text{Evelyn}", 1.0, {}),  # name in \text
    (rf"{B}{{Navin}}", r"\text{Evelyn}", 0.0, {}),  # another name
    (rf"{B}{{ekac}}", "CAKE", 0.0, {}),  # an anagram is not the word (sympy would read a product)
    (rf"{B}{{\text{{does not exist}}}}", "not exist", 1.0, {}),  # same meaning
    (rf"{B}{{NaN}}", "NaN", 1.0, {}),  # literal text gold
]

ALL = EXTRACTION + NUMBERS + STRUCTURES + TEXT


@pytest.mark.parametrize("response,gt,expected,kw", ALL, ids=[f"{i}:{c[1][:20]}" for i, c in enumerate(ALL)])
def test_robust_rules(response, gt, expected, kw):
    assert score_answer(response, gt, **kw) == expected


@pytest.mark.parametrize(
    "gt,source,expected",
    [
        ("C", "conrl/mmlu2k", "choice"),  # the data source decides
        ("7", "conrl/gsm8k", "numeric"),
        ("C", None, "choice"),  # one capital letter
        ("(c)", None, "choice"),  # TheoremQA option
        (r"\text{(B)}", None, "choice"),  # MATH option
        ("True", None, "boolean"),
        ("2,125", None, "numeric"),
        (r"\frac{1}{2}", None, "math"),
    ],
)
def test_answer_type(gt, source, expected):
    assert answer_type(gt, source) == expected


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="mode"):
        score_answer(r"\boxed{1}", "1", mode="fast")
    with pytest.raises(ValueError, match="format_policy"):
        score_answer(r"\boxed{1}", "1", format_policy="loose")
    with pytest.raises(ValueError, match="answer_type"):
        score_answer(r"\boxed{1}", "1", answer_type="vector")


def test_whole_reference_solution_as_ground_truth():
    # math75 stores the whole solution; the robust scorer grades against its final box.
    solution = r"We add: $2+3 = 5$, so the answer is $\boxed{5}$."
    assert score_answer(r"\boxed{5}", solution, data_source="conrl/math75") == 1.0
    assert score_answer(r"\boxed{3}", solution, data_source="conrl/math75") == 0.0
    two = r"the points are $\boxed{(-2,18)}$ and $\boxed{(8,38)}$."
    assert score_answer(r"\boxed{(8,38), (-2,18)}", two) == 1.0  # both parts, any order
    assert score_answer(r"\boxed{(8,38)}", two) == 0.0  # only the last box: incomplete
