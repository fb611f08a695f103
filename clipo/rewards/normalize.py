"""String normalisation and cheap parsing of answers (no sympy here).

The functions turn the many ways of writing one answer (``2{,}125``, ``\\$18.90``, ``76^\\circ``,
``x = 5``, ``\\dfrac 34``) into a canonical text, and parse plain numbers exactly (``fractions.Fraction``)
so that most answers are decided without a symbolic engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import List, Optional

__all__ = [
    "Cleaned",
    "clean_answer",
    "parse_number",
    "split_top_level",
    "is_text_answer",
    "looks_explosive",
    "hedge_words",
]

# Unicode that models emit instead of LaTeX; mapped first so every later rule sees one spelling.
_UNICODE = {
    "\u2212": "-", "\u2013": "-", "\u2014": "-", "\u00d7": "\\times ", "\u22c5": "\\cdot ", "\u00b7": "\\cdot ",
    "\u221a": "\\sqrt", "\u03c0": "\\pi ", "\u221e": "\\infty ", "\u222a": "\\cup ", "\u2229": "\\cap ",
    "\u2205": "\\emptyset ", "\u00b1": "\\pm ", "\u2213": "\\mp ", "\u2264": "\\le ", "\u2265": "\\ge ",
    "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u00b0": "^\\circ", "\u2032": "'",
    "\u2248": "\\approx ",
}

# Words that never belong to a mathematical answer but turn one into a hedge: "18 (or maybe 19)",
# "18 but probably not", "C vs D". A LaTeX command (`\not`, `\neq`) is not a word here.
_HEDGE_WORD_RE = re.compile(
    r"(?i)(?<![\\A-Za-z])(maybe|perhaps|possibly|probably|likely|unlikely|not|wrong|incorrect|but|unless|either|"
    r"neither|nor|vs|versus|guess|unsure|sure|think|otherwise|alternatively|instead|actually|could|might|"
    r"wait|hmm|except|rather)(?![A-Za-z])"
)


def hedge_words(text: str) -> List[str]:
    """The hedging words in an answer, casefolded (``18 (or maybe 19)`` -> ``["maybe"]``).

    ``or`` / ``and`` are not among them: answer lists use them (``0 or 4``), and the list structure decides.
    """
    return [m.group(1).casefold() for m in _HEDGE_WORD_RE.finditer(text)]

# Pure spacing / sizing commands that never change the value.
_SPACING_RE = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![a-zA-Z])|\\displaystyle|(?<!\\)\\[!,;:> ]|~")
# `\text{...}` and friends: kept as `\text{...}` so later rules can strip units or read text answers.
_TEXTCMD_RE = re.compile(r"\\(?:textbf|textit|textrm|mathrm|mathbf|mathit|mbox|operatorname|textnormal|text)\s*\{")
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\degree|\\text\{\s*degrees?\s*\}|\bdegrees?\b")
_PERCENT_RE = re.compile(r"\\?%|\\text\{\s*percent\s*\}|\bpercent\b")
_CURRENCY_RE = re.compile(r"\\\$|\$|\\text\{\s*(?:dollars?|USD|cents?)\s*\}|\b(?:dollars?|USD)\b|[\u20ac\u00a3\u00a5]")
# `x =`, `k=`, `a_1 =`, `x \in`: a single variable naming the answer (not a restated computation).
_VAR_PREFIX_RE = re.compile(r"^\s*(?:[a-zA-Z]|\\[a-zA-Z]+)(?:_(?:\{\w+\}|\w))?(?:\([a-z]\))?\s*(?:=|\\in(?![a-zA-Z]))\s*")
_RADIAN_RE = re.compile(r"\\text\{\s*rad(?:ians?)?\s*\}|\brad(?:ians?)?\b")
# Words for "there is no such object" and "infinitely many": one canonical spelling each, so that
# `\\text{none}`, "does not exist", "no solution" and `\\varnothing` compare equal to `\\emptyset` / "not exist".
_NONE_RE = re.compile(
    r"(?i)^(?:none|no\s+solutions?|no\s+such\s+[a-z ]+\s+exists?|(?:does|do)\s+not\s+exist|doesn't\s+exist|"
    r"not\s+exist|dne|there\s+is\s+none|empty\s*set|\\emptyset)$"
)
_INFINITE_RE = re.compile(r"(?i)^(?:infinitely\s+many|infinite(?:ly)?|infinity)$")
# Chained inequality `a < x \\le b` (one variable) -> the interval it describes.
_LE = r"(<=|<|\\le(?:q)?(?![a-zA-Z])|\\leqslant)"
_CHAIN_RE = re.compile(r"^(.+?)\s*" + _LE + r"\s*(?:[a-zA-Z]|\\[a-zA-Z]+)(?:_\{?\w+\}?)?\s*" + _LE + r"\s*(.+)$")
_NUMBER_WORDS = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}


@dataclass(frozen=True)
class Cleaned:
    """An answer after normalisation.

    ``text`` is the canonical string; ``percent`` / ``degrees`` / ``currency`` record the units that were
    stripped (a unit never changes which number is meant, but ``45%`` and ``0.45`` must stay distinct);
    ``invalid`` marks a non-answer such as a restated question ``59 + 63 =``; ``radians`` an explicit
    radian unit (``336 \\text{ radians}`` is not ``336^\\circ``).
    """

    text: str
    percent: bool = False
    degrees: bool = False
    invalid: bool = False
    radians: bool = False
    #: Sides of ``59 + 63 = 122`` dropped before the result: each must have the result's value.
    equated: tuple = ()


def _strip_delimiters(s: str) -> str:
    s = s.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if len(s) > len(left) + len(right) and s.startswith(left) and s.endswith(right):
            s = s[len(left):-len(right)].strip()
    return s


_SHORT_UNITS = r"(?:cm|mm|km|kg|mg|ml|mL|ft|in|mi|lb|lbs|oz|hr|hrs|min|sec|m|g|s|h|L)"


def _strip_trailing_text_units(s: str) -> str:
    """Drop units written after a value: ``15\\text{ cm}^2``, ``5.4 cents``, ``18 apples``.

    Only a trailing ``\\text{...}`` (optionally squared/cubed) or trailing plain words after something that
    ends in a digit, a brace or ``\\pi`` are removed, so text answers (``\\text{east}``) survive.
    """
    prev = None
    while prev != s:
        prev = s
        # A unit has no digits and no punctuation beyond `.`, `/`, `-`: `\\text{ (or maybe 19)}` is no unit.
        m = re.match(r"^(.*?[\w}\)])\s*\\text\{((?:[A-Za-z .,/\-']|\^[23])*)\}(?:\^\{?[23]\}?)?$", s)
        if m and re.search(r"[\d}\)]|\\pi|\\sqrt", m.group(1)) and not hedge_words(m.group(2)):
            s = m.group(1).strip()
        # A unit is a word (>= 3 letters: "apples", "inches") or a common short unit; a lone letter or
        # pair is a variable (`\\pi a^2`, `2 ab`), not a unit.
        m = re.match(r"^(.*?(?:\d|\\pi|\}))\s*(?:[a-zA-Z]{3,}|" + _SHORT_UNITS + r")\b[a-zA-Z .]*(?:\^\{?[23]\}?)?$", s)
        tail = s[m.end(1):] if m else ""
        if m and not re.search(r"(?i)\b(?:or|and|thousand|million|billion|trillion)\b", tail) and not hedge_words(tail):
            s = m.group(1).strip()
    return s


def _unwrap_text(s: str) -> str:
    """``\\text{Evelyn}`` -> ``Evelyn`` when the whole answer is one text command."""
    m = re.fullmatch(r"\\text\{([^{}]*)\}", s)
    return m.group(1).strip() if m else s


def _canon_fracs(s: str) -> str:
    """``\\frac34`` / ``\\frac 34`` / ``\\frac9{19}`` -> ``\\frac{3}{4}``; ``\\sqrt2`` -> ``\\sqrt{2}``."""
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s*(\d)\s*\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\s*\{([^{}]*)\}\s*(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\sqrt\s*(\d+|[a-zA-Z])", r"\\sqrt{\1}", s)
    s = re.sub(r"\\frac\s*(\\[a-zA-Z]+)\s*(\d|\\[a-zA-Z]+|[a-zA-Z])", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s*(\d)\s*(\\[a-zA-Z]+|[a-zA-Z])", r"\\frac{\1}{\2}", s)
    return s


def clean_answer(raw: str) -> Cleaned:
    """Canonicalise one answer string (a box content or a ground truth)."""
    s = raw
    for k, v in _UNICODE.items():
        if k in s:
            s = s.replace(k, v)
    s = _strip_delimiters(s)
    # Thousands separators: `10,\\!080`, `11,\\! 111`, `2{,}125` all mean a plain comma between digit groups.
    s = re.sub(r",\s*\\!\s*", ",", s)
    s = s.replace("{,}", ",").replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\\varnothing", "\\emptyset").replace("\\{\\}", "\\emptyset").replace("\\lbrace", "\\{")
    s = s.replace("\\rbrace", "\\}").replace("\\infin", "\\infty").replace("\\dots", "").replace("\\ldots", "")
    s = _SPACING_RE.sub(" ", s)
    s = _TEXTCMD_RE.sub(r"\\text{", s)
    s = re.sub(r"\\text\{\s*\}", "", s)
    s = re.sub(r"\\(?:phantom|hphantom|vphantom)\s*(?:\{[^{}]*\})?", "", s)
    s = s.strip().rstrip(".").strip()
    degrees = bool(_DEGREE_RE.search(s))
    if degrees:
        s = _DEGREE_RE.sub("", s).strip()
    percent = bool(_PERCENT_RE.search(s))
    if percent:
        s = _PERCENT_RE.sub("", s).strip()
    s = _CURRENCY_RE.sub("", s).strip()
    radians = bool(_RADIAN_RE.search(s))
    if radians:
        s = _RADIAN_RE.sub("", s).strip()
    s = re.sub(r"\\text\{\s*(thousand|million|billion|trillion)\s*\}", r" \1", s)
    s = s.replace("\\angle", "").strip()  # `\\angle A` names the angle A
    s = _strip_trailing_text_units(s)
    # A restated computation ends in `=` with nothing after it: "59 + 63 =" is a question, not an answer.
    if re.search(r"=\s*$", s) or re.match(r"^\s*=", s):
        return Cleaned(s, percent, degrees, invalid=True, radians=radians)
    equated: tuple = ()
    # `x = 5`, `x \in [-2, 7]`: the name of the unknown is not part of the value.
    s = _VAR_PREFIX_RE.sub("", s, count=1) if not re.fullmatch(r"[a-zA-Z]", s.strip()) else s
    # `59 + 63 = 122`: a computation followed by its result; the result after the last `=` is the answer,
    # unless this is an equation (variables on both sides, e.g. `y = 2x + 3` already lost its `y =`).
    if "=" in s and not re.search(r"[a-zA-Z]", s.split("=")[0].replace("\\frac", "").replace("\\times", "")):
        sides = [x.strip() for x in s.split("=")]
        s, equated = sides[-1], tuple(x for x in sides[:-1] if x)
    s = _unwrap_text(s.strip())
    s = _canon_fracs(s)
    s = re.sub(r"\s+", " ", s).strip().rstrip(".").strip()
    if s.startswith("+") and len(s) > 1:
        s = s[1:].strip()
    s = _chain_to_interval(s)
    if _NONE_RE.match(s):
        s = "\\emptyset"
    elif _INFINITE_RE.match(s):
        s = "\\infty"
    return Cleaned(s, percent, degrees, radians=radians, equated=equated)


def _chain_to_interval(s: str) -> str:
    """``3 < \\lambda \\le 4`` -> ``(3, 4]``; ``-2 \\le x \\le 7`` -> ``[-2, 7]``."""
    m = _CHAIN_RE.match(s)
    if not m or re.search(r"[<>=]|\\le|\\ge", m.group(1) + m.group(4)):
        return s
    left = "[" if m.group(2) != "<" else "("
    right = "]" if m.group(3) != "<" else ")"
    return f"{left}{m.group(1).strip()}, {m.group(4).strip()}{right}"


_PLAIN_NUM_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_THOUSANDS_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_SCI_RE = re.compile(
    r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?:\\times|\\cdot|\*|\u00d7|x)\s*10\s*\^\s*\{?\s*([+-]?\d+)\s*\}?"
)
_FRAC_RE = re.compile(r"([+-]?)\s*\\frac\{\s*([+-]?\d+(?:\.\d+)?)\s*\}\{\s*([+-]?\d+(?:\.\d+)?)\s*\}")
_SLASH_RE = re.compile(r"([+-]?\d+(?:\.\d+)?)\s*/\s*([+-]?\d+(?:\.\d+)?)")
_REPEATING_RE = re.compile(r"([+-]?)(\d*)\.(\d*)\\overline\{(\d+)\}")


def _repeating_decimal(sign: str, whole: str, fixed: str, period: str) -> Fraction:
    """``0.\\overline{3}`` = 1/3, ``0.1\\overline{6}`` = 1/6."""
    value = Fraction(int(whole or "0")) + (Fraction(int(fixed), 10 ** len(fixed)) if fixed else 0)
    value += Fraction(int(period), (10 ** len(period) - 1) * 10 ** len(fixed))
    return -value if sign == "-" else value


_MIXED_RE = re.compile(r"(\d+)\s*\\frac\{(\d+)\}\{(\d+)\}")


def parse_number(s: str) -> Optional[Fraction]:
    """Parse a plain number exactly, or return None (then the caller falls back to symbolic checks).

    Accepts ``-12``, ``025``, ``45.0``, ``.35625``, ``2,125`` / ``10,080`` (thousands separators),
    ``1.28e-06``, ``1.45\\times10^6``, ``1.45 million``, ``\\frac{3}{4}``, ``-3/4``, ``1\\frac{4}{5}`` (mixed).
    """
    s = s.strip()
    if len(s) > 80 or re.search(r",\s", s):  # "1, 100" is a list, not a thousands-separated number
        return None
    s = s.replace(" ", "")
    if not s:
        return None
    try:
        if _PLAIN_NUM_RE.fullmatch(s):
            return Fraction(s)
        if _THOUSANDS_RE.fullmatch(s):
            return Fraction(s.replace(",", ""))
        m = _SCI_RE.fullmatch(s)
        if m and abs(int(m.group(2))) < 400:
            return Fraction(m.group(1)) * Fraction(10) ** int(m.group(2))
        m = re.fullmatch(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+|\d{1,3}(?:,\d{3})+))(thousand|million|billion|trillion)", s)
        if m:
            return Fraction(m.group(1).replace(",", "")) * _NUMBER_WORDS[m.group(2)]
        m = _FRAC_RE.fullmatch(s)
        if m and Fraction(m.group(3)) != 0:
            val = Fraction(m.group(2)) / Fraction(m.group(3))
            return -val if m.group(1) == "-" else val
        m = _SLASH_RE.fullmatch(s)
        if m and Fraction(m.group(2)) != 0:
            return Fraction(m.group(1)) / Fraction(m.group(2))
        m = _REPEATING_RE.fullmatch(s)
        if m:
            return _repeating_decimal(m.group(1), m.group(2), m.group(3), m.group(4))
        m = _MIXED_RE.fullmatch(s)
        if m and int(m.group(3)) != 0:
            return int(m.group(1)) + Fraction(int(m.group(2)), int(m.group(3)))
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return None


_OPEN = "([{"
_CLOSE = ")]}"


def split_top_level(s: str, sep: str) -> List[str]:
    """Split ``s`` on ``sep`` where it is outside every bracket (``()[]{}`` and ``\\{ \\}``)."""
    parts, depth, start, i = [], 0, 0, 0
    n, k = len(s), len(sep)
    while i < n:
        ch = s[i]
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
        elif depth == 0 and s.startswith(sep, i):
            parts.append(s[start:i])
            i += k
            start = i
            continue
        i += 1
    parts.append(s[start:])
    return [p.strip() for p in parts]


_LATEX_WORDS = re.compile(r"\\[a-zA-Z]+")


def is_text_answer(s: str) -> bool:
    """True for a word answer (``CAKE``, ``Evelyn``, ``not exist``, ``NaN``, ``east``).

    Such answers are compared as case-insensitive text; a symbolic engine would read ``east`` as the
    product ``e*a*s*t`` and accept any anagram.
    """
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z' -]*[A-Za-z]", s)) and bool(re.search(r"[A-Za-z]{2,}", s)) and not (
        re.fullmatch(r"[a-zA-Z]{1,2}", s)  # "ab", "xy" are more likely products of variables
    )


def looks_explosive(s: str) -> bool:
    """Inputs that can make a symbolic engine run for minutes or exhaust memory (``9^9^9^9``, ``10^{10^{10}}``,
    ``100000!``). They are still compared as strings and numbers, never handed to sympy."""
    if len(s) > 400:
        return True
    if re.search(r"\^\s*(?:\{[^{}]*\^|[\w.]+\s*\^)", s):  # power tower
        return True
    if re.search(r"\^\s*\{?\s*[+-]?\d{4,}", s):  # huge exponent
        return True
    if re.search(r"\d{4,}\s*!|\\(?:prod|sum)", s):
        return True
    return False
