"""The CLIPO paper's scorer, reproduced from its description (``mode="official"``).

Behaviour (see ``docs/algorithms.md#verifiers``): keep the text after the last ``</think>``; take the
content of the last ``\\boxed{`` (exactly that spelling); multiple choice compares
``content.split('.')[0].strip() == ground_truth`` case-sensitively; everything else is equal after a
Hendrycks-style (MATH) string normalisation, or by a numeric/sympy check in which an integer ground truth
requires an integer string. Reward is exactly 0.0 or 1.0.

Its known bugs are kept on purpose, so that evaluation numbers stay comparable with the paper:
``\\boxed{(C)}`` / ``\\boxed{c}`` / ``\\boxed {18}`` / ``\\fbox{18}`` / unboxed answers score 0,
``[1, 100]`` equals ``(1, 100)`` (commas stripped as thousands separators, then brackets), ``12^2`` is not
``144``, unordered lists and ``\\pm`` are rejected, only the last box counts. Use ``mode="robust"``
for training rewards. This module has no time limit of its own; :func:`clipo.rewards.score_answer`
applies one around it.
"""

from __future__ import annotations

import re
from typing import Optional

from .extract import _match_braces, strip_thinking

__all__ = ["official_score", "hendrycks_normalize", "official_last_boxed", "OFFICIAL_CHOICE_SOURCES"]

OFFICIAL_CHOICE_SOURCES = ("mmlu", "commonsense_qa", "truthfulqa")


def official_last_boxed(text: str) -> Optional[str]:
    """Content of the last ``\\boxed{`` (no space, no ``\\fbox``, no brace-less form), brace-matched."""
    idx = text.rfind("\\boxed{")
    if idx < 0:
        return None
    start = idx + len("\\boxed")
    end = _match_braces(text, start)
    return None if end is None else text[start + 1:end - 1]


def _fix_fracs(s: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\frac1{2}`` -> ``\\frac{1}{2}`` (single-token arguments)."""
    chunks = s.split("\\frac")
    out = chunks[0]
    for chunk in chunks[1:]:
        out += "\\frac"
        if chunk.startswith("{") or len(chunk) < 2:
            out += chunk
            continue
        a, b, rest = chunk[0], chunk[1], chunk[2:]
        out += "{" + a + "}" + (b + rest if b == "{" else "{" + b + "}" + rest)
    return out


def _fix_a_slash_b(s: str) -> str:
    m = re.fullmatch(r"(-?\d+)/(-?\d+)", s)
    return f"\\frac{{{int(m.group(1))}}}{{{int(m.group(2))}}}" if m else s


def _fix_sqrt(s: str) -> str:
    return re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)


def hendrycks_normalize(s: str) -> str:
    """The classic MATH answer normalisation (written from its description)."""
    s = s.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac").replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "")
    if "\\text{ " in s:  # units are written as `\text{ cm}` in MATH: drop everything from there on
        s = s.split("\\text{ ")[0]
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if s.startswith("."):
        s = "0" + s
    parts = s.split("=")
    if len(parts) == 2 and len(parts[0]) <= 2:
        s = parts[1]
    s = _fix_sqrt(s).replace(" ", "")
    s = _fix_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _fix_a_slash_b(s)


def _numeric_text(s: str) -> str:
    """Number clean-up of the sympy check: drop commas (read as thousands separators), spaces and enclosing
    brackets. This is what makes ``[1, 100]`` and ``(1, 100)`` both read as ``1100``."""
    return s.replace(",", "").replace(" ", "").strip("()[]{}")


def _sympy_equal(pred: str, gold: str) -> bool:
    p, g = _numeric_text(pred), _numeric_text(gold)
    if p == g:
        return True
    if re.fullmatch(r"-?\d+", g):  # an integer answer must be written as an integer
        return bool(re.fullmatch(r"-?\d+", p)) and int(p) == int(g)
    try:
        return abs(float(p) - float(g)) < 1e-6
    except ValueError:
        pass
    try:
        import sympy
        from latex2sympy2_extended import latex2sympy

        return bool(sympy.simplify(latex2sympy(p) - latex2sympy(g)) == 0)
    except Exception:  # noqa: BLE001 - unparseable input is simply "not equal", as in the original
        return False


def _is_official_choice(ground_truth: str, data_source: Optional[str]) -> bool:
    if data_source and any(k in data_source for k in OFFICIAL_CHOICE_SOURCES):
        return True
    return bool(re.fullmatch(r"[A-Z]", ground_truth.strip()))


def official_score(response: str, ground_truth: str, data_source: Optional[str] = None) -> float:
    """Score like the paper's reward function: 1.0 or 0.0."""
    content = official_last_boxed(strip_thinking(response))
    if content is None:
        return 0.0
    if _is_official_choice(ground_truth, data_source):
        return float(content.split(".")[0].strip() == ground_truth)
    if hendrycks_normalize(content) == hendrycks_normalize(ground_truth):
        return 1.0
    return float(_sympy_equal(content, ground_truth))
