"""The CLIPO paper's scorer (``mode="official"``), reimplemented from its observed behaviour.

The official code (Qwen-Applications/CLIPO, ``verl/utils/reward_score/conrl_reward.py``) scores every
``conrl/*`` row, in training and in evaluation. This module is written from a reading of that code and
checked against its real outputs (``tests/fixtures/official_scorer_labels.jsonl.gz``; see
``tests/fixtures/README.md``); no code is shared with it. What it does:

1. **Visible text.** With ``<think>`` or ``</think>`` anywhere, keep what follows the last ``</think>``.
2. **Answer.** Only ``\\boxed{...}`` counts, and only the last ``\\boxed`` of the text: its braces are matched
   from there; when that occurrence is not literally ``\\boxed{`` (``\\boxed {18}``, ``\\boxed 2``) there is
   no answer. ``\\fbox`` and unboxed answers score 0.
3. **Multiple-choice sources** (``conrl/mmlu*``, ``conrl/commonsense_qa*``, ``conrl/truthfulqa*``, and the
   gpqa/arc_c/winogrande/bbh prefixes): the box content up to its first ``.``, stripped, must equal the
   ground truth exactly (``C. five`` counts; ``(C)``, ``c``, ``\\text{C}`` do not).
4. **Everything else**: a ground truth containing ``\\boxed`` (a math75 reference solution) is reduced to its
   last box the same way. Then the answer is right when either

   * the MATH-style string normalisations (:func:`hendrycks_normalize`) are equal, or
   * the looser normalisations (:func:`loose_normalize`: units, ``$``/``%``, ``\\text{}``, LaTeX rendered
     as plain text, lower case, ``18.00`` -> ``18``) are equal, or, element by element of a tuple/interval
     with the same outer brackets, sympy finds the difference 0 - where two plain fractions must be
     identical strings and an integer element only matches an integer element.

Reward is exactly 0.0 or 1.0. Where the official code raises, it scores 0 here. It has no time limit of
its own: :func:`clipo.rewards.score_answer` applies one. Use ``mode="robust"`` for training rewards; this
mode exists so that evaluation numbers are comparable with the paper's.
"""

from __future__ import annotations

import re
from typing import List, Optional, Tuple

from .extract import _match_braces

__all__ = [
    "official_score", "official_last_boxed", "official_visible_text", "hendrycks_normalize", "loose_normalize",
    "latex_to_plain", "OFFICIAL_CHOICE_SOURCES",
]

# data_source prefixes that the paper grades as one option letter.
OFFICIAL_CHOICE_SOURCES = ("conrl/mmlu", "conrl/gpqa", "conrl/arc_c", "conrl/truthfulqa", "conrl/winogrande",
                           "conrl/bbh", "conrl/commonsense_qa")


class _Unparsed(Exception):
    """A normalisation step met input it cannot handle; the step's caller falls back as the original does."""


# --------------------------------------------------------------------------------------------- extraction

def official_visible_text(response: str) -> str:
    """The graded part: after the last ``</think>`` when either think tag appears, else the whole text."""
    if "<think>" in response or "</think>" in response:
        return response.split("</think>")[-1].strip()
    return response.strip()


def official_last_boxed(text: str) -> Optional[str]:
    """Content of the last ``\\boxed``, or None.

    Braces are counted from that ``\\boxed`` on; the span ends at the first ``}`` that brings the count back
    to zero. The span must read ``\\boxed{...}`` exactly, so ``\\boxed {18}`` and ``\\boxed 2`` give None.
    """
    start = text.rfind("\\boxed")
    if start < 0:
        return None
    end = _match_braces(text, start)  # counts braces from the backslash on, as the official loop does
    if end is None:
        return None
    span = text[start:end]
    return span[len("\\boxed{"):-1] if span.startswith("\\boxed{") else None


# ------------------------------------------------------------------------------- MATH-style normalisation

def _whole_text_macro(s: str) -> Optional[str]:
    """``\\text{abc}`` -> ``abc`` when the whole string is one ``\\text{...}`` on one line, else None."""
    body = s[:-1] if s.endswith("\n") else s  # a final newline is tolerated, as a regex `$` would
    if body.startswith("\\text{") and body.endswith("}") and len(body) > len("\\text{}"):
        inner = body[len("\\text{"):-1]
        if "\n" not in inner:
            return inner
    return None


def _braced_sqrt(s: str) -> str:
    """``\\sqrt3`` -> ``\\sqrt{3}``: a one-character argument gets braces."""
    if "\\sqrt" not in s:
        return s
    head, *pieces = s.split("\\sqrt")
    out = [head]
    for piece in pieces:
        if not piece:
            raise _Unparsed("\\sqrt at the end")
        out.append("\\sqrt" + (piece if piece[0] == "{" else "{" + piece[0] + "}" + piece[1:]))
    return "".join(out)


def _braced_fracs(s: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\frac1{2}`` -> ``\\frac{1}{2}``; a ``\\frac`` followed by a single
    character leaves the whole string as it was."""
    head, *pieces = s.split("\\frac")
    out = [head]
    for piece in pieces:
        if not piece:
            raise _Unparsed("\\frac at the end")
        if piece[0] == "{":
            out.append("\\frac" + piece)
        elif len(piece) < 2:
            return s
        elif piece[1] == "{":
            out.append("\\frac{" + piece[0] + "}" + piece[1:])
        else:
            out.append("\\frac{" + piece[0] + "}{" + piece[1] + "}" + piece[2:])
    return "".join(out)


def _slash_to_frac(s: str) -> str:
    """``3/4`` -> ``\\frac{3}{4}`` when both sides are integers written canonically."""
    parts = s.split("/")
    if len(parts) != 2:
        return s
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        return s
    return f"\\frac{{{a}}}{{{b}}}" if s == f"{a}/{b}" else s


def _mathd_steps(s: str) -> str:
    s = s.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac").replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "")
    if "\\text{ " in s:  # a unit written `\text{ cm}`: cut it off; two such units are not handled
        pieces = s.split("\\text{ ")
        if len(pieces) != 2:
            raise _Unparsed("several units")
        s = pieces[0]
    s = s.replace("\\%", "")  # only the escaped percent sign; a bare `%` stays
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:  # `x = 5`, `k=5`: keep the value
        s = sides[1]
    s = _braced_sqrt(s).replace(" ", "")
    s = _braced_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _slash_to_frac(s)


def hendrycks_normalize(s: Optional[str]) -> Optional[str]:
    """The MATH dataset's answer normalisation as the paper applies it (first of its two equality tests).

    Strips, unwraps a whole ``\\text{...}``, then: no newlines, ``\\!``, ``\\left``/``\\right``, degree signs,
    ``\\$``, ``\\%``, a trailing ``\\text{ unit}``, spaces, a short ``x =`` prefix; ``dfrac``/``tfrac`` ->
    ``frac``; braces added to ``\\sqrt3`` / ``\\frac12``; ``0.5`` and ``a/b`` written as ``\\frac``. When a
    step cannot handle the input, the stripped, unwrapped string is returned unchanged.
    """
    if s is None:
        return None
    s = s.strip()
    inner = _whole_text_macro(s)
    if inner is not None:
        s = inner.strip()
    try:
        return _mathd_steps(s)
    except _Unparsed:
        return s


# ------------------------------------------------------------------------------- LaTeX rendered as text

# Macros rendered as a character or a word. Spelling matters only where later steps look at it: sqrt, pi,
# inf, U, * are what sympy reads; letters count as unknowns; anything else just has to stay distinct.
_SYMBOLS = {
    "pi": "π", "infty": "∞", "cup": "∪", "cap": "∩", "cdot": "·", "times": "×", "div": "÷", "pm": "±",
    "mp": "∓", "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥", "neq": "≠", "approx": "≈", "equiv": "≡",
    "in": "∈", "notin": "∉", "subset": "⊂", "subseteq": "⊆", "emptyset": "∅", "varnothing": "∅", "circ": "∘",
    "dots": "…", "ldots": "…", "cdots": "⋯", "to": "→", "rightarrow": "→", "Rightarrow": "⇒",
    "leftarrow": "←", "angle": "∠", "prime": "'", "mid": "|", "vert": "|", "lvert": "|", "rvert": "|",
    "Vert": "‖", "langle": "⟨", "rangle": "⟩", "lfloor": "⌊", "rfloor": "⌋", "lceil": "⌈", "rceil": "⌉",
    "setminus": "∖", "sim": "∼", "cong": "≅", "perp": "⊥", "parallel": "∥", "ell": "ℓ", "star": "⋆",
    "ast": "∗", "bullet": "∙", "partial": "∂", "nabla": "∇", "forall": "∀", "exists": "∃", "neg": "¬",
    "wedge": "∧", "land": "∧", "vee": "∨", "lor": "∨", "oplus": "⊕", "otimes": "⊗", "propto": "∝",
    "sum": "∑", "prod": "∏", "int": "∫", "oint": "∮", "sqrt": "√", "hbar": "ℏ", "Re": "ℜ", "Im": "ℑ",
    "aleph": "ℵ", "degree": "", "ne": "", "gt": "", "lt": "", "colon": "", "triangle": "", "hline": "",
    "displaystyle": "", "textstyle": "", "quad": "  ", "qquad": "    ", "cdotp": "·",
}
_GREEK = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
          "upsilon phi chi psi omega").split()
for _i, _name in enumerate(_GREEK):
    _SYMBOLS.setdefault(_name, chr(0x3B1 + _i + (1 if _i >= 17 else 0)))  # no final-sigma code point
    if _name not in ("alpha", "beta", "epsilon", "zeta", "eta", "iota", "kappa", "mu", "nu", "omicron", "rho",
                     "tau", "chi"):
        _SYMBOLS.setdefault(_name.capitalize(), chr(0x391 + _i + (1 if _i >= 17 else 0)))
_SYMBOLS.update({"varepsilon": "ε", "vartheta": "ϑ", "varphi": "φ", "varpi": "ϖ", "varrho": "ϱ",
                 "varsigma": "ς", "epsilon": "ϵ", "phi": "ϕ"})
# Function names rendered as their own name (other function macros, `\\cot`, `\\gcd`, `\\bmod`, vanish).
_NAMED = {name: name for name in "sin cos tan arcsin arccos arctan sinh cosh tanh log ln exp lim max min sup inf".split()}
_NAMED.update({"limsup": "lim sup", "liminf": "lim inf"})
_SYMBOLS.update({"mathbb": "", "mathbf": ""})  # styling macros: their argument stays as text
_BLACKBOARD = {"R": "ℝ", "Z": "ℤ", "N": "ℕ", "Q": "ℚ", "C": "ℂ"}
# Environments rendered as a bracketed matrix `[ a b; c d ]` (cells right-aligned to the widest cell).
_MATRIX_ENVS = ("pmatrix", "bmatrix", "array")
_ESCAPED = {",": " ", ";": " ", ":": " ", " ": " ", "!": "", "\\": "\n", "{": "{", "}": "}", "%": "%",
            "$": "$", "&": "&", "#": "#", "_": "_", "/": "", "(": "", ")": "", "[": "", "]": ""}
_ONE_ARG_DROPPED = {"mbox", "label", "hspace", "ensuremath"}
# Accents: the argument followed by a combining mark.
_ACCENTS = {"hat": "\u0302", "widehat": "\u0302", "vec": "\u20d7", "bar": "\u0305", "dot": "\u0307",
            "tilde": "\u0303"}


def _skip_space(s: str, i: int) -> int:
    while i < len(s) and s[i] in " \t\n":
        i += 1
    return i


def _argument(s: str, i: int) -> Tuple[str, int]:
    """Render one macro argument: a ``{group}``, a macro, or one character."""
    i = _skip_space(s, i)
    if i >= len(s):
        return "", i
    if s[i] == "{":
        return _render(s, i + 1, closing=True)
    if s[i] == "\\":
        return _macro(s, i, bare=True)
    return s[i], i + 1


def _macro(s: str, i: int, bare: bool = False) -> Tuple[str, int]:
    """Render the macro starting at ``s[i] == '\\\\'``; returns (text, next index)."""
    j = i + 1
    if j >= len(s):
        return "", j
    if not s[j].isalpha():
        return _ESCAPED.get(s[j], s[j]), j + 1
    while j < len(s) and s[j].isalpha():
        j += 1
    name, j = s[i + 1:j], _skip_space(s, j)
    if bare:
        return _SYMBOLS.get(name, _NAMED.get(name, "")), j
    if name == "frac":
        num, j = _argument(s, j)
        den, j = _argument(s, j)
        return num + "/" + den, j
    if name == "sqrt":
        if j < len(s) and s[j] == "[":  # the root's index is dropped
            close = s.find("]", j)
            j = len(s) if close < 0 else _skip_space(s, close + 1)
        arg, j = _argument(s, j)
        return "√(" + arg + ")", j
    if name in _ONE_ARG_DROPPED or name == "vspace":
        _, j = _argument(s, j)
        return ("\n" if name == "vspace" else ""), j
    if name in _ACCENTS:
        arg, j = _argument(s, j)
        return arg + _ACCENTS[name], j
    if name == "begin":
        return _environment(s, j)
    if name == "end":  # an \\end without its \\begin: the name is not text
        _, j = _argument(s, j)
        return "", j
    if name == "mathbb":
        arg, j = _argument(s, j)
        return _BLACKBOARD.get(arg, arg), j
    if name in _SYMBOLS:
        return _SYMBOLS[name], j
    return _NAMED.get(name, ""), j  # unknown macros vanish; a following group stays as text


def _environment(s: str, j: int) -> Tuple[str, int]:
    """Render ``\\begin{env}...\\end{env}`` starting after ``\\begin`` (``s[j]`` is the name's brace)."""
    m = re.match(r"\{([A-Za-z*]+)\}", s[j:])
    if m is None:
        return "", j
    env, j = m.group(1), j + m.end()
    end_tag = "\\end{" + env + "}"
    stop = s.find(end_tag, j)
    body, after = (s[j:], len(s)) if stop < 0 else (s[j:stop], stop + len(end_tag))
    if env not in _MATRIX_ENVS:
        return latex_to_plain(body), after
    if env == "array":  # the column specification is not content
        body = re.sub(r"^\s*\{[^{}]*\}", "", body)
    rows = [[latex_to_plain(cell).strip() for cell in row.split("&")] for row in body.split("\\\\")]
    width = max(len(cell) for row in rows for cell in row)
    return "[ " + "; ".join(" ".join(cell.rjust(width) for cell in row) for row in rows) + " ]", after


def _render(s: str, i: int, closing: bool = False) -> Tuple[str, int]:
    out: List[str] = []
    while i < len(s):
        ch = s[i]
        if ch == "\\":
            text, i = _macro(s, i)
            out.append(text)
        elif ch == "{":
            text, i = _render(s, i + 1, closing=True)
            out.append(text)
        elif ch == "}":
            if closing:
                return "".join(out), i + 1
            i += 1
        elif ch == "$":
            i += 1
        elif ch == "~":
            out.append("\xa0")
            i += 1
        elif ch == "&":  # a column break outside a matrix: spacing
            out.append("   ")
            i += 1
        elif s.startswith("---", i):  # text dashes
            out.append("—")
            i += 3
        elif s.startswith("--", i):
            out.append("–")
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out), i


def latex_to_plain(s: str) -> str:
    """LaTeX as plain text, the way the paper's scorer renders it before sympy reads it.

    ``\\frac{a}{b}`` -> ``a/b`` (no parentheses), ``\\sqrt{x}`` -> ``√(x)``, groups -> their content, known
    symbols -> one Unicode character (``\\pi`` -> ``π``), function names -> their name, unknown macros ->
    nothing (their braced arguments stay as text), ``$`` dropped, ``\\\\`` -> newline.
    """
    return _render(s, 0)[0]


# ------------------------------------------------------------------------------- loose normalisation

_UNITS = ("degree", "cm", "centimeter", "meter", "mile", "second", "minute", "hour", "day", "week", "month",
          "year", "foot", "feet", "inch", "yard")
_UNIT_RES = [re.compile(unit + r"(es)?(s)? *(\^[0-9]+)?") for unit in _UNITS]
_THOUSANDS_RE = re.compile(r"(\d)(,)(\d\d\d)($|\D)")
_MIXED_RE = re.compile(r"([0-9]) +([0-9])")


def _as_float(s: str) -> Optional[float]:
    try:
        return float(s)
    except ValueError:
        return None


def _near_int(x: float) -> bool:
    """Within 1e-7 of an integer (infinities and NaN are not)."""
    try:
        return abs(x - int(round(x))) <= 1e-7
    except (OverflowError, ValueError):
        return False


def _drop_thousands_commas(s: str) -> str:
    """``1,234,567`` -> ``1234567``; a comma not followed by exactly three digits (a tuple) stays."""
    while True:
        nxt = _THOUSANDS_RE.sub(r"\1\3\4", s)
        if nxt == s:
            return s
        s = nxt


def _int_string(s: str) -> bool:
    x = _as_float(_drop_thousands_commas(s))
    return x is not None and _near_int(x)


def _plain_latex(s: str) -> str:
    s = s.replace("\\tfrac", "\\frac").replace("\\dfrac", "\\frac").replace("\\frac", " \\frac")
    s = latex_to_plain(s)
    for sym, word in (("√", "sqrt"), ("π", "pi"), ("∞", "inf"), ("∪", "U"), ("·", "*"), ("×", "*")):
        s = s.replace(sym, word)
    return s.strip()


def loose_normalize(s: Optional[str]) -> Optional[str]:
    """The paper's second normalisation, the one its sympy test works on.

    Unwraps a whole ``\\text{...}``; drops ``$``, ``%``, unit words (``cm``, ``hour``, ``feet`` ... anywhere,
    with a plural and a power), degree signs, outer braces, ``,\\!``; ``million`` -> ``*10^6``;
    `` or ``/`` and `` -> ``,``; a float equal to an integer becomes that integer; LaTeX is rendered as plain
    text (:func:`latex_to_plain`); ``7 3/4`` -> ``7+3/4``; spaces and braces removed; lower case.
    """
    if s is None:
        return None
    inner = _whole_text_macro(s)
    if inner is not None:
        s = inner
    s = s.replace("\\%", "%").replace("\\$", "$").replace("$", "").replace("%", "")
    s = s.replace(" or ", " , ").replace(" and ", " , ")
    s = s.replace("million", "*10^6").replace("billion", "*10^9").replace("trillion", "*10^12")
    for unit_re in _UNIT_RES:
        s = unit_re.sub("", s)
    s = re.sub(r"\^ *\\circ", "", s)
    if s[:1] == "{" and s[-1:] == "}":
        s = s[1:-1]
    s = re.sub(r",\\! *", "", s)
    x = _as_float(s)
    if x is not None and _near_int(x):
        s = str(int(round(x)))
    if "\\" in s:
        try:
            s = _plain_latex(s)
        except RecursionError:  # the original keeps the text when its LaTeX parser fails
            pass
    s = re.sub("- *", "-", s)
    s = _MIXED_RE.sub(r"\1+\2", s)
    s = s.replace(" ", "").replace("{", "").replace("}", "").lower()
    if _int_string(s):
        s = str(int(float(s.replace(",", ""))))  # truncation, as in the original
    return s


# ------------------------------------------------------------------------------- sympy comparison

_TUPLE_CHARS = "()[]"


def _unknown_letters(expr: str) -> int:
    return len({c for c in expr.replace("sqrt", "").replace("frac", "") if c.isalpha()})


def _sympy_allowed(expr: str) -> bool:
    """Refuse expressions sympy may hang on: more than two distinct letters, ``^{``, ``^(``, big powers."""
    if _unknown_letters(expr) > 2 or "^{" in expr or "^(" in expr:
        return False
    return re.search(r"\^[0-9]+\^", expr) is None and re.search(r"\^[0-9][0-9]+", expr) is None


def _sympy_zero_difference(gold: str, given: str) -> bool:
    """sympy simplifies ``(gold)-(given)`` to 0 (implicit multiplication allowed, ``^`` is a power)."""
    expr = f"({gold})-({given})"
    if not _sympy_allowed(expr):
        return False
    try:
        import sympy
        from sympy.parsing import sympy_parser as sp

        transformations = sp.standard_transformations + (sp.implicit_multiplication_application,)
        return sympy.simplify(sp.parse_expr(expr.replace("^", "**"), transformations=transformations)) == 0
    except Exception:  # noqa: BLE001 - input sympy cannot read is "not equal", as in the original
        return False


def _elements(s: str) -> List[str]:
    """The parts of a tuple/interval ``(a,b]`` (no nested brackets), else ``[s]``."""
    s = _drop_thousands_commas(s)
    if not s:
        return []
    if len(s) > 2 and s[0] in _TUPLE_CHARS and s[-1] in _TUPLE_CHARS and \
            not any(c in _TUPLE_CHARS for c in s[1:-1]):
        return [part.strip() for part in s[1:-1].split(",")]
    return [s]


def _plain_fraction(s: str) -> bool:
    return re.search(r"^-?[0-9]+.?/0*[1-9][0-9]*.?$", s) is not None


def _loose_equal(given: str, gold: str) -> bool:
    gold_n, given_n = loose_normalize(gold), loose_normalize(given)
    if gold_n == given_n:
        return True
    if not given_n:
        return False
    gold_parts, given_parts = _elements(gold_n), _elements(given_n)
    if len(gold_parts) > 1 and (gold_n[0] != given_n[0] or gold_n[-1] != given_n[-1]):
        return False  # an interval's or tuple's brackets must match
    if len(gold_parts) != len(given_parts):
        return False
    for g, p in zip(gold_parts, given_parts):
        if _plain_fraction(g) and _plain_fraction(p):
            ok = g == p  # an unreduced fraction is not accepted
        elif _int_string(g) != _int_string(p):
            ok = False  # an integer must be answered with an integer
        else:
            ok = _sympy_zero_difference(g, p)
        if not ok:
            return False
    return True


def _math_correct(answer: str, ground_truth: str) -> bool:
    gold: Optional[str] = ground_truth
    if "\\boxed" in ground_truth:  # a whole reference solution: its last box is the answer
        gold = official_last_boxed(ground_truth)
    if gold is None:
        return False
    if hendrycks_normalize(answer) == hendrycks_normalize(gold):
        return True
    return _loose_equal(answer, gold)


def official_score(response: str, ground_truth: str, data_source: Optional[str] = None) -> float:
    """Score like the paper's reward function: 1.0 or 0.0 (see the module docstring).

    ``data_source`` picks the multiple-choice rule by prefix; None (not a paper row) uses the math rule.
    """
    answer = official_last_boxed(official_visible_text(response))
    if answer is None:
        return 0.0
    ground_truth = str(ground_truth)
    if data_source and data_source.startswith(OFFICIAL_CHOICE_SOURCES):
        return float(answer.split(".")[0].strip() == ground_truth)
    return float(_math_correct(answer, ground_truth))
