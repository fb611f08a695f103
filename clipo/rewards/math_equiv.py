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

No hedges: a prediction that states a second, different answer never matches. ``421 = 321`` and
``-3x = -2x`` (a dropped side of ``=`` must have the result's value), ``18 \\approx 19`` / ``y=3 \\to y=2`` (each
part after a relation must be the answer again, or a decimal off by less than its last digit), words left beside
a value (``18 \\text{ (19 pears)}``, never handed to sympy, which would drop them), ``0 (1)`` (a constant beside
a bracketed constant), ``0 OR 1`` (``or``/``and`` split lists in any case), and near-equal decimals
(``18.0000000001`` for 18: see :func:`numbers_match`).

Nothing here enforces a time limit; :func:`clipo.rewards.score_answer` wraps the call in one.

One file (~560 lines) on purpose: the five steps above call each other recursively (a list's parts go back
through the whole cascade, the hedge checks guard every step), so splitting them would spread one decision
procedure over several modules; the text rules live in :mod:`clipo.rewards.normalize`, the limits in
:mod:`clipo.rewards.limits`.
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

from .limits import ByteBudgetCache, VerificationTimeout, sympy_would_explode
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

_ALT_SEP_RE = re.compile(r"(?i:\\text\{\s*(or|and)\s*\}|\s+(or|and)\s+)|\\(?:quad|qquad)\b|;")
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


def numbers_match(pred: Fraction, gold: Fraction, gold_text: str = "", rounded: bool = True,
                  computed: bool = False) -> bool:
    """Whether two exact numbers agree, given how the ground truth was written.

    A number written out (``18.0000000001``, ``0.25``) must equal the ground truth exactly, with two
    exceptions: a ground truth written as a decimal accepts, when ``rounded``, a prediction that rounds to it
    (half a unit of its last digit, when it has >= 2 significant digits: the ground truth is given to fewer
    digits); and a ground truth without a finite decimal expansion (``\\frac{1}{3}``) accepts a decimal within
    a relative 1e-9, i.e. about ten correct significant digits (``0.3333333333``). ``computed`` says ``pred``
    was evaluated from an expression (30 significant digits), which adds a relative noise of 1e-20.
    """
    if pred == gold:
        return True
    if pred.denominator == 1 and gold.denominator == 1:
        return False
    diff = abs(pred - gold)
    noise = Fraction(1, 10**20) * max(1, abs(gold)) if computed else Fraction(0)
    if re.search(r"[.eE]", gold_text):
        step = (_significant_step(gold_text) if rounded else None) or Fraction(0)
        return diff <= max(step, noise)
    if _terminates(gold):
        return diff <= noise  # 18, 1/4: an exact decimal exists, so a near one is another number
    return diff <= Fraction(1, 10**9) * max(1, abs(gold))


def _terminates(x: Fraction) -> bool:
    """Whether ``x`` has a finite decimal expansion (its denominator has no prime factor but 2 and 5)."""
    d = x.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def _canon_text(s: str) -> str:
    s = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
    return re.sub(r"\s+", " ", s).strip().strip(".").casefold()


# Caches bounded in (estimated) bytes, so that long distinct responses cannot grow the process without limit.
_PARSE_CACHE = ByteBudgetCache(64 << 20, 4 << 20, cost=lambda e: 200 * len(e) + 4096)
_STRUCTURE_CACHE = ByteBudgetCache(32 << 20, 256 << 10, cost=lambda t: 3 * len(t) + 256)
_REFUSED_CACHE = ByteBudgetCache(8 << 20, 1 << 20)


def _mv_parse(expr: str, ground_truth: bool = False):
    """math-verify parse of one expression; raises :class:`VerificationTimeout` (counted as a timeout) for one
    whose evaluation could build a huge number, which no time limit could interrupt (checked once per text)."""
    if _refused(expr):
        if ground_truth:
            _warn_refused_gold(expr)
        raise VerificationTimeout(f"{'ground truth' if ground_truth else 'answer'} {expr[:60]!r} is too large to verify")
    return _mv_parse_cached(expr)


@_REFUSED_CACHE.cached
def _refused(expr: str) -> bool:
    return sympy_would_explode(_mv_parse_cached(expr) or ())


@lru_cache(maxsize=1024)
def _warn_refused_gold(expr: str) -> None:
    _log.warning("ground truth %r is too large for symbolic verification: responses that do not state it "
                 "verbatim score 0 and count as timeouts", expr[:200])


@_PARSE_CACHE.cached
def _mv_parse_cached(expr: str):
    """math-verify parse of one expression (cached: ground truths repeat across a group of samples)."""
    from math_verify import LatexExtractionConfig, parse  # deferred: importing sympy costs ~0.5 s

    # LaTeX only and no fallback: with its default plain-expression extractor, math-verify answers an
    # unparseable input with a fragment of it (`2007 + \\frac\\pi 2` -> 2), which matches too much.
    return parse(f"${expr}$", extraction_config=[LatexExtractionConfig()], fallback_mode="no_fallback",
                 parsing_timeout=None)


def symbolic_equal(pred: str, gold: str) -> bool:
    """math-verify equivalence of two LaTeX expressions (no timeout of its own: callers set one)."""
    from math_verify import verify

    g = _mv_parse(gold, ground_truth=True)
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


def _juxtaposed_constants(pred: str) -> bool:
    """``0 (1)``, ``\\frac23 (\\frac33)``: a constant followed by a bracketed constant reads as an answer and an
    alternative (a symbolic engine would multiply them: 0 * 1 = 0)."""
    s = pred.strip()
    if not s.endswith(")"):
        return False
    depth = 0
    for i in range(len(s) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(s[i], 0)
        if depth == 0:
            head = s[:i].strip()
            return bool(head) and head[-1] not in "+-*/^_=,(" and not head.endswith(("\\cdot", "\\times")) \
                and not _variables(head) and not _variables(s[i:])
    return False


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
    if pn is None and (("\\text{" in pred and "\\text{" not in gold) or _juxtaposed_constants(pred)):
        # Words left beside a value (`18 \\text{ (19 pears)}`) or a number beside a bracketed number
        # (`0 (1)`) read as a second answer; a symbolic engine would drop the words or multiply.
        return False
    if gn is not None and pn is not None:
        # A decimal prediction only gets the rounding tolerance where golds are known to be rounded;
        # elsewhere 24.61 is not 24.6. An exact value (a fraction) that rounds to the gold is consistent.
        return numbers_match(pn, gn, gold, rounded=opts.rounded_golds or not _DECIMAL_LITERAL_RE.fullmatch(pred))
    if gn is not None and opts.symbolic and not looks_explosive(pred):
        # A number answered by a constant expression (`12^2`, `-\\frac{\\pi}{3}` for the rounded -1.047):
        # evaluate it and apply the same number rules, including the gold's rounding.
        value = _constant_value(pred)
        if value is not None:
            return numbers_match(value, gn, gold, rounded=True, computed=True)
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
    :class:`~clipo.rewards.limits.VerificationTimeout` from an enclosing time limit, or for an expression too
    large to verify (:func:`~clipo.rewards.limits.sympy_would_explode`), even without a limit.
    """
    gold = clean_answer(gold_raw)
    pred = clean_answer(pred_raw)
    if pred.invalid or not pred.text:
        return False
    if (gold.degrees and pred.radians) or (gold.radians and pred.degrees):
        return False  # an angle in the wrong unit
    opts = MatchOptions(allow_symbolic, brackets_are_lists, rounded_golds)
    ptext = pred.text
    relation = _RELATION_RE.search(ptext)
    if relation and not _RELATION_RE.search(gold.text):
        return _relation_match(ptext, gold_raw, opts)
    pnode = _structure(ptext)
    equated = list(pred.equated)
    if pnode[0] == "atom" and "=" in ptext and "=" not in gold.text:
        # `p + q = 23` when the gold is a value: the value after the last `=` is the answer.
        sides = [x.strip() for x in ptext.split("=")]
        ptext = sides[-1]
        if not ptext:
            return False
        equated += sides[:-1]
        pnode = _structure(ptext)
    if equated and not all(_same_value(side, ptext, pred.percent, opts) for side in equated):
        return False  # `421 = 321`: a constant side with another value names a second answer
    if ptext == gold.text:
        return True
    return _nodes_match(pnode, _structure(gold.text), opts)


# `18 \\approx 18.0`, `y = 3 \\to y = 2`: relations that join two statements of the answer.
_RELATION_RE = re.compile(r"\\(?:approx|simeq|sim|to|rightarrow|Rightarrow|implies|longrightarrow|Longrightarrow)(?![a-zA-Z])")


def _relation_match(ptext: str, gold_raw: str, opts: "MatchOptions") -> bool:
    """``\\frac{1}{3} \\approx 0.333``: the first part must be the answer and each later part the answer
    again, or (after ``\\approx``) a decimal rounding or truncating it to its own last digit. ``18 \\approx 19``
    and ``y = 3 \\to y = 2`` name a second answer."""
    parts = [p for p in split_top_level(_RELATION_RE.sub("\x00", ptext), "\x00") if p]
    if not parts or not answers_match(parts[0], gold_raw, allow_symbolic=opts.symbolic,
                                      brackets_are_lists=opts.lists, rounded_golds=opts.rounded_golds):
        return False
    gold_value = _value(clean_answer(gold_raw).text, opts)
    for part in parts[1:]:
        num = parse_number(part) if _DECIMAL_LITERAL_RE.fullmatch(part.replace(" ", "")) else None
        if num is not None and gold_value is not None:
            unit = Fraction(10) ** Decimal(part.replace(" ", "").replace(",", "")).as_tuple().exponent
            if abs(num - gold_value) >= unit:  # more than its last digit off
                return False
        elif not answers_match(part, gold_raw, allow_symbolic=opts.symbolic, brackets_are_lists=opts.lists,
                               rounded_golds=opts.rounded_golds):
            return False
    return True


def _variables(text: str) -> set:
    """Letters standing for unknowns in a LaTeX expression (commands, environments and text removed)."""
    t = re.sub(r"\\(?:begin|end)\{[a-zA-Z*]+\}|\\text\{[^{}]*\}|\\[a-zA-Z]+", " ", text)
    return set(re.findall(r"[a-zA-Z]", t))


def _value(text: str, opts: "MatchOptions") -> Optional[Fraction]:
    """The exact number a constant answer stands for (plain numbers cheaply, else sympy), or None."""
    num = parse_number(text)
    if num is not None or not opts.symbolic or looks_explosive(text) or "\\text{" in text:
        return num
    if re.search(r"[a-zA-Z]", re.sub(r"\\[a-zA-Z]+", "", text)):
        return None  # has a variable
    return _constant_value(text)


def _same_value(side: str, result: str, percent: bool, opts: "MatchOptions") -> bool:
    """Whether a dropped side of ``59 + 63 = 122`` has the result's value. A side naming what the value is
    of (``p + q = 23``) passes; a side in the result's own variables must equal it symbolically
    (``-3x = -2x`` does not); a constant side that cannot be evaluated does not pass."""
    side = clean_answer(side).text
    side_vars, result_vars = _variables(side), _variables(result)
    if side_vars:
        # `p + q = 23` names what the value is of; `-3x = -2x` states a second, different expression.
        if not side_vars & result_vars:
            return True
        return opts.symbolic and not looks_explosive(side) and symbolic_equal(side, result)
    a, b = _value(side, opts), _value(result, opts)
    if a is None or b is None:
        return False
    tol = Fraction(1, 10**20) * max(1, abs(b))
    return abs(a - b) <= tol or (percent and (abs(a * 100 - b) <= tol or abs(a - b * 100) <= tol))


@_STRUCTURE_CACHE.cached
def _structure(text: str) -> Node:
    return _freeze(parse_answer_structure(text))


def _freeze(node: Union[Node, list]) -> Node:
    """Make a structure tree hashable/immutable so it can be cached."""
    if node[0] == "atom":
        return node
    if node[0] == "seq":
        return ("seq", node[1], node[2], tuple(_freeze(n) for n in node[3]))
    return (node[0], tuple(_freeze(n) for n in node[1]))
