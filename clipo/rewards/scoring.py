"""``score_answer``: one response against one ground truth, under a time limit, never raising."""

from __future__ import annotations

import logging
import re
import time
from typing import List, Optional

from .choice import OptionsArg, choice_matches, parse_gold_letter, resolve_choices, stated_choice
from .extract import extract_candidates, extract_final_answer, find_boxed
from .limits import GLOBAL_STATS, VerificationTimeout, VerifierStats, time_limit
from .math_equiv import BOOLEAN_WORDS, answers_match, parse_answer_structure
from .normalize import clean_answer, hedge_words
from .official import official_score

__all__ = ["score_answer", "answer_type", "robust_score", "ANSWER_TYPES", "MODES", "DEFAULT_TIMEOUT_S"]

_log = logging.getLogger(__name__)

ANSWER_TYPES = ("numeric", "math", "choice", "boolean")
MODES = ("robust", "official")
DEFAULT_TIMEOUT_S = 5.0

# Data sources whose answers are always one option letter.
_CHOICE_SOURCES = ("mmlu", "commonsense_qa", "truthfulqa")
_NUMERIC_SOURCES = ("gsm8k", "gsm_p1", "gsm_p2", "gsm_symbolic", "aime", "amc")
# Data sources whose bracketed answers are lists (`[1, 6]`), not intervals, and whose decimal answers are
# roundings of the exact result (`0.6705`), so a more precise value that rounds to them is right.
_ROUNDED_LIST_SOURCES = ("theoremqa",)
_NUMBER_RE = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def answer_type(ground_truth: str, data_source: Optional[str] = None) -> str:
    """Which kind of answer a ground truth is: ``numeric``, ``math``, ``choice`` or ``boolean``.

    The data source decides where it is unambiguous (``conrl/mmlu2k`` -> choice); otherwise the ground
    truth's shape does: one letter (``C``, ``(c)``, ``\\text{(B)}``) is a choice, ``True``/``False`` a
    boolean, a plain number numeric, anything else LaTeX math.
    """
    if data_source and any(k in data_source for k in _CHOICE_SOURCES):
        return "choice"
    gt = ground_truth.strip()
    if parse_gold_letter(gt) is not None and (gt.isupper() or "(" in gt):
        return "choice"
    if gt.casefold() in ("true", "false"):
        return "boolean"
    if _NUMBER_RE.fullmatch(gt):
        return "numeric"
    return "math"


def _unique(cands: List[str]) -> List[str]:
    """Drop repeated boxes (``\\boxed{5}`` ... ``\\boxed{5}``): restating one answer is not hedging."""
    seen, out = set(), []
    for c in cands:
        key = clean_answer(c).text.replace(" ", "")
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


_OPERATOR_RE = re.compile(r"[+\-*/^]|\\times|\\cdot|\\frac|\\sqrt|!")


def _squash(text: str) -> str:
    return re.sub(r"[\s$]", "", text)


def _restates_question(candidate: str, ground_truth: str, prompt: str) -> bool:
    """An unevaluated expression copied from the question (``99^2+99+1`` for "Compute $99^2+99+1$").

    Only expressions with an operator count (a bare number that happens to appear in the question can be
    the answer), and never when the ground truth itself is written that way.
    """
    cand = _squash(clean_answer(candidate).text)
    if len(cand) < 3 or not _OPERATOR_RE.search(cand) or cand == _squash(clean_answer(ground_truth).text):
        return False
    return cand in _squash(prompt)


_INNER_BOX_RE = re.compile(r"\\(?:boxed|fbox)\b")


def _unwrap_box(candidate: str) -> str:
    """``\\boxed{\\boxed{18}}`` -> ``18``: a box boxed again is still one answer."""
    while _INNER_BOX_RE.search(candidate):
        m = re.fullmatch(r"[\s$]*\\(?:boxed|fbox)\s*\{(.*)\}[\s$.]*", candidate, re.DOTALL)
        if not m or find_boxed(candidate) != [m.group(1)]:
            break
        candidate = m.group(1).strip()
    return candidate


def _nested_hedge(candidate: str) -> bool:
    """A box holding a box and something else (``\\boxed{\\boxed{18} 19}``) states two answers."""
    return bool(_INNER_BOX_RE.search(_unwrap_box(candidate)))


def _hedges(candidate: str, ground_truth: str) -> bool:
    """Hedging language in a non-choice answer: a question mark or a hedge word (``maybe``, ``not``, ``but``,
    ``vs``, ...) that the ground truth does not contain itself. "does not exist" as a whole is an answer."""
    if "?" in candidate and "?" not in ground_truth:
        return True
    words = set(hedge_words(candidate)) - set(hedge_words(ground_truth))
    return bool(words) and clean_answer(candidate).text not in ("\\emptyset", "\\infty")


def _gold_is_multi(ground_truth: str) -> bool:
    node = parse_answer_structure(clean_answer(ground_truth).text)
    return node[0] == "multi" and len(node[1]) > 1


def robust_score(response: str, ground_truth: str, *, data_source: Optional[str] = None,
                 format_policy: str = "strict", options: OptionsArg = None, prompt: Optional[str] = None,
                 kind: Optional[str] = None, stats: Optional[VerifierStats] = None) -> float:
    """The robust rules without a time limit (use :func:`score_answer` in training code)."""
    if "\\boxed" in ground_truth or "\\fbox" in ground_truth:
        # A whole reference solution (conrl/math75): grade against its final answer.
        reduced = extract_final_answer(ground_truth)
        if reduced is None:
            raise ValueError("the reference solution has no final answer (empty or missing \\boxed{})")
        ground_truth = reduced
    kind = kind or answer_type(ground_truth, data_source)
    cands = extract_candidates(response, format_policy)
    stated = stated_choice(response) if kind == "choice" and format_policy == "lenient" else None
    if stated is not None:
        # No box, and the closing words name one option ("The correct option is C."): that is the answer.
        cands = [stated]
    if any(_nested_hedge(c) for c in cands):
        return 0.0
    cands = _unique([_unwrap_box(c) for c in cands])
    if not cands:
        if stats is not None:
            stats.no_answer += 1
        return 0.0
    if kind == "choice":
        spec = resolve_choices(options, prompt, data_source)
        # Every box must pick the gold option: two different letters are a hedge.
        if all(choice_matches(c, ground_truth, spec) for c in cands):
            return 1.0
        if data_source and any(k in data_source for k in _CHOICE_SOURCES):
            return 0.0
        # Outside multiple-choice datasets a one-letter answer may name a point or an angle (`\angle A`).
        # `C = (B)` equates the letter with another option: a hedge, not a name.
        return float(all("=" not in c and answers_match(c, ground_truth) for c in cands))
    if kind == "boolean":
        gold = BOOLEAN_WORDS[ground_truth.strip().casefold()]
        picked = {BOOLEAN_WORDS.get(re.sub(r"\\text\{([^{}]*)\}", r"\1", c).strip(" .$").casefold()) for c in cands}
        return float(picked == {gold})
    if prompt and any(_restates_question(c, ground_truth, prompt) for c in cands):
        return 0.0
    if any(_hedges(c, ground_truth) for c in cands):
        return 0.0
    rounded = lists = bool(data_source and any(k in data_source for k in _ROUNDED_LIST_SOURCES))
    kw = {"brackets_are_lists": lists, "rounded_golds": rounded}
    if len(cands) > 1 and _gold_is_multi(ground_truth):
        # A multi-part answer may be boxed part by part: \boxed{0} and \boxed{4} for "0 or 4".
        if answers_match("; ".join(cands), ground_truth, **kw):
            return 1.0
    return float(all(answers_match(c, ground_truth, **kw) for c in cands))


def score_answer(response: str, ground_truth: str, *, data_source: Optional[str] = None,
                 mode: str = "robust", format_policy: str = "strict", options: OptionsArg = None,
                 prompt: Optional[str] = None, answer_type: Optional[str] = None,
                 timeout_s: Optional[float] = DEFAULT_TIMEOUT_S,
                 stats: Optional[VerifierStats] = None) -> float:
    """Score one response against its ground truth: 1.0 correct, 0.0 otherwise.

    Args:
        response: the model's text; only the part after the last ``</think>`` is graded.
        ground_truth: the reference answer string (``"2,125"``, ``"\\frac{1}{2}"``, ``"C"``, ``"True"``).
        data_source: e.g. ``"conrl/gsm8k"`` / ``"conrl/mmlu2k"``; picks the answer type. Without it the
            type is inferred from the ground truth (:func:`answer_type`).
        mode: ``"robust"`` (default, for training) or ``"official"`` (the CLIPO paper's scorer, bugs
            included, for numbers comparable to the paper).
        format_policy: ``"strict"`` (only ``\\boxed{}``/``\\fbox{}`` answers count) or ``"lenient"``
            (also ``#### x``, "The answer is x", "Answer: x" when nothing is boxed; for multiple choice also
            "The correct option is C", "C is the correct answer", see :func:`clipo.rewards.choice.stated_choice`).
            Robust mode only. Two different boxed answers score 0 under both (no "last box wins").
        options: multiple choice: option count, letters or texts (see :mod:`clipo.rewards.choice`).
        prompt: the question text; multiple choice reads the option letters from it when ``options`` is
            not given.
        answer_type: force ``"numeric"``, ``"math"``, ``"choice"`` or ``"boolean"``.
        timeout_s: time limit of this verification (None/0 disables it). A timeout scores 0 and is counted.
            Enforced on the main thread only; elsewhere use :func:`clipo.rewards.score_batch` with workers.
        stats: counters to update (default: the process-wide ``GLOBAL_STATS``).

    No hedges (robust mode): an answer that names a wrong answer besides the right one scores 0, e.g.
    ``\\boxed{18 \\text{ (or maybe 19)}}``, ``\\boxed{\\boxed{18} 19}``, ``\\boxed{18 \\approx 19}``, ``\\boxed{19 = 18}``,
    ``\\boxed{18 but probably not}``, ``\\boxed{18.0000000001}`` for 18, ``\\boxed{C vs D}`` or the whole option
    list. Official mode keeps the paper's behaviour.

    Never raises for bad model output: errors and timeouts score 0 and are counted in ``stats``.
    Raises ``ValueError`` for invalid arguments (unknown mode / policy / answer type).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if format_policy not in ("strict", "lenient"):
        raise ValueError(f"format_policy must be 'strict' or 'lenient', got {format_policy!r}")
    if answer_type is not None and answer_type not in ANSWER_TYPES:
        raise ValueError(f"answer_type must be one of {ANSWER_TYPES}, got {answer_type!r}")
    st = GLOBAL_STATS if stats is None else stats
    st.calls += 1
    t0 = time.perf_counter()
    score = 0.0
    try:
        with time_limit(timeout_s):
            if mode == "official":
                score = official_score(response, ground_truth, data_source)
            else:
                score = robust_score(response, ground_truth, data_source=data_source,
                                     format_policy=format_policy, options=options, prompt=prompt,
                                     kind=answer_type, stats=st)
    except VerificationTimeout:
        st.timeouts += 1
        score = 0.0
    except (RecursionError, MemoryError, Exception) as exc:  # noqa: BLE001 - a reward must never crash training
        st.errors += 1
        _log.debug("verifier error on gt=%r: %r", ground_truth, exc)
        score = 0.0
    st.seconds += time.perf_counter() - t0
    if score > 0:
        st.correct += 1
    return score
