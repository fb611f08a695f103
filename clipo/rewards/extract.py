"""Locate the final answer inside a model response or a reference solution.

Everything here is plain string processing (no sympy), so it is cheap and can never hang.

Public helpers:

* :func:`strip_thinking` - keep only the text after the last ``</think>``.
* :func:`find_boxed` - contents of every ``\\boxed{...}`` / ``\\fbox{...}`` / ``\\boxed 2`` in order.
* :func:`extract_final_answer` - reduce a whole reference solution (MATH / math75 style) to its answer.
* :func:`extract_candidates` - the answer strings a response commits to, honouring a format policy.
"""

from __future__ import annotations

import re
from typing import List, Optional

__all__ = [
    "strip_thinking",
    "find_boxed",
    "last_boxed",
    "extract_final_answer",
    "reference_answer_parts",
    "extract_candidates",
    "unclosed_thinking",
]

THINK_CLOSE = "</think>"
THINK_OPEN = "<think>"

# `\boxed{`, `\boxed {`, `\fbox{`; also `\boxed 2` (MATH writes a one-token answer without braces).
_BOX_RE = re.compile(r"\\(?:boxed|fbox)\b")

# Lenient-format answer markers, tried on the text after the last `</think>` when there is no box.
# Each captures the rest of the line; trailing punctuation is trimmed by the caller.
_LENIENT_RES = (
    re.compile(r"^[ \t]*####[ \t]*(.+?)[ \t]*$", re.MULTILINE),
    re.compile(r"(?i)\b(?:the\s+)?final\s+answer\s*(?:is|:)\s*[:\-]?\s*(.+)$", re.MULTILINE),
    re.compile(r"(?i)\bthe\s+answer\s+is\s*[:\-]?\s*(.+)$", re.MULTILINE),
    re.compile(r"(?im)^[ \t*_]*answer[ \t*_]*:[ \t*_]*(.+)$"),
)


def strip_thinking(text: str) -> str:
    """Return the text after the last ``</think>`` (the whole text when there is none).

    Only the visible answer is graded: a box inside the reasoning is a draft, not a commitment.
    """
    idx = text.rfind(THINK_CLOSE)
    return text if idx < 0 else text[idx + len(THINK_CLOSE):]


def unclosed_thinking(text: str) -> bool:
    """True when the response opened ``<think>`` after its last ``</think>`` (or never closed it).

    Such a response was cut off while still reasoning, so it has no final answer yet.
    """
    open_idx = text.rfind(THINK_OPEN)
    return open_idx >= 0 and text.rfind(THINK_CLOSE) < open_idx


def _match_braces(text: str, start: int) -> Optional[int]:
    """Index just after the ``}`` closing the ``{`` at ``text[start]``; None if unbalanced.

    Escaped braces (``\\{`` / ``\\}``) count too: LaTeX sets like ``\\{1,2\\}`` are balanced that way.
    """
    depth = 0
    for i in range(start, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _box_at(text: str, m: re.Match) -> tuple[Optional[str], int]:
    """Parse one box whose command ends at ``m.end()``. Returns (content or None, resume index)."""
    i = m.end()
    while i < len(text) and text[i] in " \t":
        i += 1
    if i < len(text) and text[i] == "{":
        end = _match_braces(text, i)
        if end is None:  # truncated response: an unterminated box is not an answer
            return None, len(text)
        return text[i + 1:end - 1], end
    # `\boxed 2`: the argument is the next token (a run of non-space, non-`$` characters).
    tok = re.match(r"[^\s$]+", text[i:]) if i > m.end() else None
    if tok:
        return tok.group(0).rstrip(".,;"), i + tok.end()
    return None, i


def find_boxed(text: str) -> List[str]:
    """Contents of every box in ``text``, in order of appearance (brace-matched, unstripped)."""
    return [content for _, _, content in _box_spans(text)]


def last_boxed(text: str) -> Optional[str]:
    """Content of the last box in ``text``, or None."""
    boxes = find_boxed(text)
    return boxes[-1] if boxes else None


def _box_spans(text: str) -> List[tuple]:
    """(start, end, content) of every box in ``text``."""
    spans, pos = [], 0
    while True:
        m = _BOX_RE.search(text, pos)
        if not m:
            return spans
        content, end = _box_at(text, m)
        if content is not None:
            spans.append((m.start(), end, content))
        pos = end


# Text allowed between two boxes that are parts of one answer: "$\boxed{(-2,18)}$ and $\boxed{(8,38)}$".
_PART_GAP_RE = re.compile(r"(?:[\s$,;.]|\\text\{\s*and\s*\}|\band\b|\\quad)*")


def reference_answer_parts(solution: str) -> List[str]:
    """The boxed parts of a reference solution's final answer (empty list when it has no usable box).

    Usually the last box alone. Boxes written one after another joined only by "and" / commas
    (two intersection points) are parts of one answer and are all returned. Boxes joined by "or" are
    alternative spellings of one answer (``\\boxed{28}`` or ``\\boxed{28_9}``), so only the last is kept.
    """
    spans = _box_spans(solution)
    if not spans:
        return []
    group = [spans[-1]]
    for span in reversed(spans[:-1]):
        gap = solution[span[1]:group[0][0]]
        if not _PART_GAP_RE.fullmatch(gap):
            break
        group.insert(0, span)
    parts: List[str] = []
    for *_, content in group:
        content = content.strip()
        if content and content not in parts:
            parts.append(content)
    return parts


def extract_final_answer(solution: str) -> Optional[str]:
    """Reduce a whole reference solution (math75 / MATH style) to its final answer.

    The answer is the content of the last ``\\boxed{...}`` (brace-matched), also ``\\boxed 2`` written
    without braces. When the solution boxes several parts of one answer side by side ("the points are
    ``\\boxed{(-2,18)}`` and ``\\boxed{(8,38)}``") the parts are joined with ``"; "``, which the
    scorers read as an unordered list that must be given in full. Returns None when the solution has no
    box or the last box is empty (math75 rows 5341 and 5343), so the caller can report or drop the row
    instead of training on ``""``.
    """
    spans = _box_spans(solution)
    if not spans or not spans[-1][2].strip():
        return None
    return "; ".join(reference_answer_parts(solution))


def _lenient_candidates(text: str) -> List[str]:
    """Answers written without a box: ``#### x``, ``The answer is x``, ``Answer: x`` (last one wins)."""
    best: tuple[int, str] | None = None
    for rx in _LENIENT_RES:
        for m in rx.finditer(text):
            if best is None or m.start() >= best[0]:
                best = (m.start(), m.group(1))
    if best is None:
        return _closing_statement(text)
    ans = best[1].strip()
    # A trailing sentence period is punctuation, not part of the answer ("... is 18.").
    ans = re.sub(r"[.\s]+$", "", ans)
    # "$18$" -> "18"; markdown bold "**18**" -> "18".
    ans = ans.strip("*_ ").strip()
    if ans.startswith("$") and ans.endswith("$"):
        ans = ans.strip("$").strip()
    return [ans] if ans else []


_NUM_TOKEN_RE = re.compile(r"(?<![\w.])[-+]?\$?\d[\d,]*(?:\.\d+)?(?![\w.]*\d)")


def _closing_statement(text: str) -> List[str]:
    """The answer stated by the last sentence of an unmarked response (lenient policy only).

    Tried in order: the whole response when it is one short line (a bare ``A`` or ``18``); a bold
    ``**x**``; the last ``$...$`` formula; the only number in the sentence ("Liam has 1122 pineapples").
    A sentence with several numbers states no single answer.
    """
    body = text.strip()
    if not body:
        return []
    if "\n" not in body and len(body) <= 30:
        return [body.rstrip(".")]
    last = [ln for ln in body.splitlines() if ln.strip()][-1]
    sentences = [x for x in re.split(r"(?<=[.!?])\s+(?=[A-Z])", last.strip()) if x.strip()]
    sentence = sentences[-1] if sentences else last
    bold = re.findall(r"\*\*([^*]+)\*\*", sentence)
    if bold:
        return [bold[-1].strip().rstrip(".")]
    maths = re.findall(r"\$([^$]+)\$", sentence)
    if maths:
        return [maths[-1].strip()]
    nums = _NUM_TOKEN_RE.findall(sentence)
    if len(nums) == 1:
        return [nums[0].strip().rstrip(",")]
    return []


def extract_candidates(response: str, format_policy: str = "strict") -> List[str]:
    """The answers a response commits to, after its last ``</think>``.

    ``strict``: only boxed answers count (the prompts all ask for ``\\boxed{}``).
    ``lenient``: when there is no box, also ``#### x``, "The answer is x", "Answer: x", and else the
    answer stated by the closing sentence (see :func:`_closing_statement`).
    Every box is returned (not just the last) so the caller can reject hedges with two different answers.
    """
    if format_policy not in ("strict", "lenient"):
        raise ValueError(f"format_policy must be 'strict' or 'lenient', got {format_policy!r}")
    if unclosed_thinking(response):
        return []
    text = strip_thinking(response)
    boxes = [b.strip() for b in find_boxed(text)]
    boxes = [b for b in boxes if b]
    if boxes or format_policy == "strict":
        return boxes
    return _lenient_candidates(text)
