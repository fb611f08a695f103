"""Equivalence of two mathematical answers (a prediction and a ground truth).

Decision order, cheapest first:

1. canonical text equality (:func:`clipo.rewards.normalize.clean_answer`);
2. structure: unordered answer lists (``0 or 4``, ``3, 5, 7``, ``\\{1, 2\\}``, ``1 \\pm \\sqrt{19}``),
   ordered tuples / intervals / bracketed lists (bracket kinds must agree: ``[1, 100] != (1, 100)``),
   unions of intervals; parts are compared recursively;
3. exact numbers (``fractions.Fraction``): thousands separators, ``x.0``, ``025``, e-notation, ``million``,
   fractions, mixed numbers; a ground truth given with >= 2 significant digits after rounding accepts any
   prediction that rounds to it;
4. word answers (``CAKE``, ``\\text{east}``, ``True``) as case-insensitive text;
5. math-verify (sympy) for remaining LaTeX expressions, unless the prediction looks explosive.

Nothing here enforces a time limit; :func:`clipo.rewards.score_answer` wraps the call in one.
"""

from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import List, Optional, Sequence, Tuple, Union

from .normalize import clean_answer, is_text_answer, looks_explosive, parse_number, split_top_level

__all__ = ["answers_match", "parse_answer_structure", "numbers_match", "symbolic_equal", "BOOLEAN_WORDS"]

_log = logging.getLogger(__name__)


class _DropNoTimeoutWarning(logging.Filter):
    """math-verify warns when its own (SIGALRM) timeout is off; ours replaces it, so the warning misleads."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropNoTimeoutWarning())

# Structure tree: ("atom", text) | ("multi", [nodes]) unordered | ("seq", open, close, [nodes]) ordered
# | ("union", [nodes]) unordered union of intervals.
Node = Tuple

BOOLEAN_WORDS = {
    "true": True, "yes": True, "correct": True, "t": True,
    "false": False, "no": False, "incorrect": False, "f": False,
}

_ALT_SEP_RE = re.compile(r"\\text\{\s*(or|and)\s*\}|\\(?:quad|qquad)\b|\s+(or|and)\s+|;")
_DECIMAL_LITERAL_RE = re.compile(r"[+-]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_BASE_RE = re.compile(r"([0-9A-Za-z]+)_\{?(\d+)\}?")
_THOUSANDS_ONLY_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def _outer_group_spans_all(s: str) -> bool:
    """True when the first bracket of ``s`` closes at its last character (``(1,2)`` yes, ``(1)(2)`` no)."""
    depth = 0
    for i, ch in enumerate(s):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i == len(s) - 1
    return False


def _expand_pm(s: str) -> List[str]:
    """``1 \\pm \\sqrt{19}`` -> ``["1 + \\sqrt{19}", "1 - \\sqrt{19}"]`` (at most 3 signs expanded)."""
    pieces = re.split(r"\\(pm|mp)(?![a-zA-Z])", s)
    n = (len(pieces) - 1) // 2
    if n == 0 or n > 3:
        return [s]
    out = []
    for signs in itertools.product("+-", repeat=n):
        buf = pieces[0]
        for k, sign in enumerate(signs):
            op = sign if pieces[1 + 2 * k] == "pm" else ("-" if sign == "+" else "+")
            buf += f" {op} " + pieces[2 + 2 * k]
        out.append(buf.strip())
    return out


_MATRIX_RE = re.compile(r"\\begin\{([pbv]?matrix)\}(.*)\\end\{\1\}", re.DOTALL)


def _vector_entries(s: str) -> Optional[List[str]]:
    """Entries of a one-row or one-column matrix (a vector, which may also be written as a tuple)."""
    m = _MATRIX_RE.fullmatch(s.strip())
    if not m:
        return None
    rows = [r for r in re.split(r"\\\\", m.group(2)) if r.strip()]
    cells = [[c.strip() for c in r.split("&")] for r in rows]
    if all(len(r) == 1 for r in cells) and len(cells) > 1:
        return [r[0] for r in cells]
    if len(cells) == 1 and len(cells[0]) > 1:
        return cells[0]
    return None


def _flatten(nodes: List[Node]) -> List[Node]:
    """Parts of parts are parts: ``\\{1 \\pm \\sqrt{5}, -2\\}`` has three elements."""
    out: List[Node] = []
    for n in nodes:
        out.extend(_flatten(list(n[1])) if n[0] == "multi" else [n])
    return out


def parse_answer_structure(text: str) -> Node:
    """Build the structure tree of a cleaned answer (see module docstring)."""
    node = _parse_structure(text)
    if node[0] == "multi":
        return ("multi", _flatten(list(node[1])))
    return node


def _parse_structure(text: str) -> Node:
    s = text.strip()
    if _ALT_SEP_RE.search(s):
        # "0 or 4", "2, 3, and 4", "x = 1; x = 2": every separator splits, empty pieces are dropped.
        pieces = []
        for chunk in split_top_level(_ALT_SEP_RE.sub(" \x00 ", s), "\x00"):
            pieces += split_top_level(chunk, ",") if "," in chunk and not _THOUSANDS_ONLY_RE.fullmatch(chunk) else [chunk]
        parts = [p for p in pieces if p]
        if len(parts) > 1:
            return ("multi", [parse_answer_structure(clean_answer(p).text) for p in parts])
    cup = split_top_level(s, "\\cup")
    if len(cup) > 1:
        return ("union", [parse_answer_structure(p) for p in cup])
    if s.startswith("\\{") and s.endswith("\\}"):
        inner = s[2:-2].strip()
        return ("multi", [parse_answer_structure(p) for p in split_top_level(inner, ",") if p] if inner else [])
    if s[:1] in "([" and s[-1:] in ")]" and _outer_group_spans_all(s):
        inner = s[1:-1]
        items = split_top_level(inner, ",")
        if len(items) > 1 and all(items):
            return ("seq", s[0], s[-1], [parse_answer_structure(clean_answer(p).text) for p in items])
    if "," in s and not _THOUSANDS_ONLY_RE.fullmatch(s):
        items = split_top_level(s, ",")
        if len(items) > 1 and all(items):
            return ("multi", [parse_answer_structure(clean_answer(p).text) for p in items])
    vec = _vector_entries(s)
    if vec is not None:
        return ("seq", "(", ")", [parse_answer_structure(clean_answer(p).text) for p in vec])
    expanded = _expand_pm(s)
    if len(expanded) > 1:
        return ("multi", [("atom", e) for e in expanded])
    return ("atom", s)


def _significant_step(gold_text: str) -> Optional[Fraction]:
    """Half the last-digit step of a rounded decimal ground truth (``0.6705`` -> 0.00005), else None.

    Only decimals with >= 2 significant digits and a non-zero last digit count as rounded: ``45.0`` and
    ``142.0`` are integers written as floats, and ``0.5`` is too coarse to tell rounding from exactness.
    """
    t = gold_text.replace(" ", "")
    if not re.fullmatch(r"[+-]?(?:\d+\.\d+|\.\d+)(?:[eE][+-]?\d+)?|[+-]?\d+[eE][+-]?\d+", t):
        return None
    mant = re.split(r"[eE]", t)[0]
    if mant.endswith("0"):
        return None
    d = Decimal(t)
    digits = d.as_tuple()
    sig = len(str(int("".join(map(str, digits.digits)))))  # drop leading zeros
    if sig < 2:
        return None
    return Fraction(1, 2) * Fraction(10) ** digits.exponent


def numbers_match(pred: Fraction, gold: Fraction, gold_text: str = "", rounded: bool = True) -> bool:
    """Whether two exact numbers agree, given how the ground truth was written.

    Integers must be equal. A ground truth written as a decimal (``0.6705``, ``3.54e-07``) accepts float
    noise (relative 1e-12) and, when ``rounded``, a prediction that rounds to it (half a unit of its last
    digit, when it has >= 2 significant digits). Other ground truths (``\\frac{1}{3}``) accept predictions within a
    relative 1e-9, i.e. about ten correct significant digits (``0.3333333333``).
    """
    if pred == gold:
        return True
    if pred.denominator == 1 and gold.denominator == 1:
        return False
    diff = abs(pred - gold)
    if re.search(r"[.eE]", gold_text):
        step = (_significant_step(gold_text) if rounded else None) or Fraction(0)
        return diff <= max(step, Fraction(1, 10**12) * abs(gold))
    return diff <= Fraction(1, 10**9) * max(1, abs(gold))


def _canon_text(s: str) -> str:
    s = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
    return re.sub(r"\s+", " ", s).strip().strip(".").casefold()


@lru_cache(maxsize=4096)
def _mv_parse(expr: str):
    """math-verify parse of one expression (cached: ground truths repeat across a group of samples)."""
    from math_verify import LatexExtractionConfig, parse  # deferred: importing sympy costs ~0.5 s

    # LaTeX only and no fallback: with its default plain-expression extractor, math-verify answers an
    # unparseable input with a fragment of it (`2007 + \\frac\\pi 2` -> 2), which matches too much.
    return parse(f"${expr}$", extraction_config=[LatexExtractionConfig()], fallback_mode="no_fallback",
                 parsing_timeout=None)


def symbolic_equal(pred: str, gold: str) -> bool:
    """math-verify equivalence of two LaTeX expressions (no timeout of its own: callers set one)."""
    from math_verify import verify

    g = _mv_parse(gold)
    p = _mv_parse(pred)
    if not g or not p:
        return False
    if not verify(g, p, timeout_seconds=None):
        try:
            return _difference_vanishes(g[0], p[0])
        except (TypeError, ValueError, AttributeError):
            return False
    return _values_agree(g[0], p[0])


def _constant_value(expr: str) -> Optional[Fraction]:
    """Exact-enough real value of a constant LaTeX expression (30 significant digits), else None."""
    parsed = _mv_parse(expr)
    if not parsed:
        return None
    try:
        import sympy

        e = parsed[0]
        if not isinstance(e, sympy.Expr) or e.free_symbols:
            return None
        v = sympy.N(e, 30)
        if not v.is_real or not v.is_finite:
            return None
        return Fraction(str(v))
    except (TypeError, ValueError, AttributeError, OverflowError, ZeroDivisionError):
        return None


def _difference_vanishes(gold, pred) -> bool:
    """``gold - pred`` expands to zero (up to float noise in its coefficients).

    math-verify misses some identities such as ``\\frac{1 - 7i}{25}`` = ``\\frac{1}{25}-\\frac{7}{25}i``.
    """
    import sympy

    if not (isinstance(gold, sympy.Expr) and isinstance(pred, sympy.Expr)):
        return False
    # Parsers can create two symbols with one name but different assumptions (`i` real here, plain there),
    # which never cancel; identify symbols by name.
    def by_name(e):
        return e.xreplace({x: sympy.Symbol(x.name) for x in e.free_symbols if isinstance(x, sympy.Symbol)})

    diff = sympy.expand(by_name(gold) - by_name(pred))
    if diff == 0:
        return True
    coeffs = diff.as_coefficients_dict().values()
    return all(c.is_number and abs(complex(c)) < 1e-12 for c in coeffs)


def _values_agree(gold, pred) -> bool:
    """Re-check a math-verify match of two constant expressions at full precision.

    math-verify compares numbers after rounding to 6 decimals, so ``\\frac{1}{2^{98}}`` "equals"
    ``\\frac{2}{2^{98}}``; a relative comparison of 30-digit values removes those false matches.
    """
    try:
        import sympy

        if not (isinstance(gold, sympy.Expr) and isinstance(pred, sympy.Expr)):
            return True
        if gold.free_symbols or pred.free_symbols:
            return True
        gv, pv = complex(sympy.N(gold, 30)), complex(sympy.N(pred, 30))
    except (TypeError, ValueError, AttributeError, OverflowError):
        return True  # not a plain number (sets, relations, ...): keep math-verify's verdict
    scale = max(abs(gv), abs(pv))
    return scale == 0 or abs(gv - pv) <= 1e-9 * scale


def _atoms_match(pred: str, gold: str, opts: "MatchOptions") -> bool:
    if pred.replace(" ", "") == gold.replace(" ", ""):
        return True
    if not pred:
        return False
    base = _BASE_RE.fullmatch(gold.replace(" ", ""))
    if base:
        # `2516_8`: digits in a base. The digits must agree; the base subscript may be left out, but a
        # symbolic engine would read `_8` as a subscript and drop it, so never go there.
        pb = _BASE_RE.fullmatch(pred.replace(" ", ""))
        if pb:
            return pb.group(1).casefold() == base.group(1).casefold() and int(pb.group(2)) == int(base.group(2))
        return pred.replace(" ", "").casefold() == base.group(1).casefold()
    gn = parse_number(gold)
    pn = parse_number(pred)
    if gn is not None and pn is not None:
        # A decimal prediction only gets the rounding tolerance where golds are known to be rounded;
        # elsewhere 24.61 is not 24.6. An exact value (a fraction) that rounds to the gold is consistent.
        return numbers_match(pn, gn, gold, rounded=opts.rounded_golds or not _DECIMAL_LITERAL_RE.fullmatch(pred))
    if gn is not None and opts.symbolic and not looks_explosive(pred):
        # A number answered by a constant expression (`12^2`, `-\\frac{\\pi}{3}` for the rounded -1.047):
        # evaluate it and apply the same number rules, including the gold's rounding.
        value = _constant_value(pred)
        if value is not None:
            return numbers_match(value, gn, gold, rounded=True)
    gt_text = _canon_text(gold)
    if gt_text in BOOLEAN_WORDS and len(gt_text) > 1:
        pt = _canon_text(pred)
        return pt in BOOLEAN_WORDS and BOOLEAN_WORDS[pt] == BOOLEAN_WORDS[gt_text]
    if is_text_answer(gt_text.replace("\\", "")) and not gold.startswith("\\"):
        return _canon_text(pred) == gt_text
    if is_text_answer(_canon_text(pred)):
        # A word answer cannot equal a number or an expression (and sympy would read it as a product).
        return False
    if not opts.symbolic or looks_explosive(pred):
        return False
    return symbolic_equal(pred, gold)


def _match_unordered(preds: Sequence[Node], golds: Sequence[Node], opts: "MatchOptions") -> bool:
    """Perfect matching between two equally long lists of parts (order-free)."""
    if len(preds) != len(golds):
        return False
    remaining = list(preds)
    for g in golds:  # greedy is exact when equivalence is transitive, which holds for answers
        for i, p in enumerate(remaining):
            if _nodes_match(p, g, opts):
                del remaining[i]
                break
        else:
            return False
    return True


def _nodes_match(pred: Node, gold: Node, opts: "MatchOptions") -> bool:
    kp, kg = pred[0], gold[0]
    if kg == "atom" and kp == "atom":
        return _atoms_match(pred[1], gold[1], opts)
    if kg == "seq":
        if kp == "seq":
            same_brackets = (pred[1], pred[2]) == (gold[1], gold[2])
            return same_brackets and len(pred[3]) == len(gold[3]) and all(
                _nodes_match(p, g, opts) for p, g in zip(pred[3], gold[3])
            )
        # A bare list "1, 2, 3" answers a bracketed list "[1, 2, 3]" in the same order. A pair is
        # only a list when the data says so (TheoremQA); elsewhere "[1, 2]" is an interval.
        if kp == "multi" and gold[1] == "[" and gold[2] == "]" and (len(gold[3]) >= 3 or opts.lists):
            return len(pred[1]) == len(gold[3]) and all(
                _nodes_match(p, g, opts) for p, g in zip(pred[1], gold[3])
            )
        return False
    if kg == "multi":
        if kp == "multi":
            return _match_unordered(pred[1], gold[1], opts)
        return len(gold[1]) == 1 and _nodes_match(pred, gold[1][0], opts)
    if kg == "union":
        return kp == "union" and _match_unordered(pred[1], gold[1], opts)
    # Gold is an atom but the prediction has structure: a one-element list is still that element;
    # anything else (a hedge "3 or 5", a tuple for a number) is wrong. Matrices stay atoms on both sides.
    if kp == "multi" and len(pred[1]) == 1:
        return _nodes_match(pred[1][0], gold, opts)
    return False


@dataclass(frozen=True)
class MatchOptions:
    """How to compare: ``symbolic`` allows sympy; ``lists`` reads bracketed golds as lists (TheoremQA);
    ``rounded_golds`` says decimal golds are roundings of the true value (TheoremQA), so a more precise
    decimal prediction that rounds to the gold is right."""

    symbolic: bool = True
    lists: bool = False
    rounded_golds: bool = False


def answers_match(pred_raw: str, gold_raw: str, *, allow_symbolic: bool = True,
                  brackets_are_lists: bool = False, rounded_golds: bool = False) -> bool:
    """Whether prediction ``pred_raw`` states the same answer as ground truth ``gold_raw``.

    Both are single answer strings (a box content, or a ground-truth field). Units, currency, degrees,
    percent signs and ``x =`` prefixes are ignored on both sides. ``brackets_are_lists`` says that a
    bracketed ground truth ``[1, 6]`` is a list (TheoremQA), not an interval, so ``1, 6`` and
    ``x = 1, y = 6`` also answer it (in order); ``rounded_golds`` see :class:`MatchOptions`. Raises nothing but
    :class:`~clipo.rewards.limits.VerificationTimeout` from an enclosing time limit.
    """
    gold = clean_answer(gold_raw)
    pred = clean_answer(pred_raw)
    if pred.invalid or not pred.text:
        return False
    if (gold.degrees and pred.radians) or (gold.radians and pred.degrees):
        return False  # an angle in the wrong unit
    ptext = pred.text
    pnode = _structure(ptext)
    if pnode[0] == "atom" and "=" in ptext and "=" not in gold.text:
        # `p + q = 23` when the gold is a value: the value after the last `=` is the answer.
        ptext = ptext.rsplit("=", 1)[1].strip()
        if not ptext:
            return False
        pnode = _structure(ptext)
    if ptext == gold.text:
        return True
    opts = MatchOptions(allow_symbolic, brackets_are_lists, rounded_golds)
    return _nodes_match(pnode, _structure(gold.text), opts)


@lru_cache(maxsize=8192)
def _structure(text: str) -> Node:
    return _freeze(parse_answer_structure(text))


def _freeze(node: Union[Node, list]) -> Node:
    """Make a structure tree hashable/immutable so it can be cached."""
    if node[0] == "atom":
        return node
    if node[0] == "seq":
        return ("seq", node[1], node[2], tuple(_freeze(n) for n in node[3]))
    return (node[0], tuple(_freeze(n) for n in node[1]))
