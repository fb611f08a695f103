"""Multiple-choice answers: read the chosen letter from a box and check it is one of the options.

Accepted spellings of option C: ``C``, ``(C)``, ``\\text{C}``, ``\\textbf{(C)}``, ``c``, ``C:``, ``C)``,
``C. option text``, ``Option C``, and the option's own text when the options are known. A letter that
is not one of the question's options, or two letters (``A or B``, ``C vs D``, the whole option list), is no
answer; text after the letter must be the option's own text or name no other option and not hedge.

Where the valid letters come from (first that applies):

1. ``options=``: an int (count, letters from A), a string of letters (``"ABCD"``), a sequence of letters,
   a sequence of option texts (lettered A, B, ...) or a ``{letter: text}`` mapping;
2. ``prompt=``: lines like ``A. three`` / ``(B) four`` / ``C) five``, or inline ``(a) ... (b) ...``
   (TheoremQA) in the question text;
3. the data source's known option range (``conrl/mmlu2k`` A-D, ``conrl/commonsense_qa`` A-E,
   ``conrl/truthfulqa`` A-T, ``conrl/theoremqa`` (a)-(e));
4. otherwise any letter A-Z.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence, Union

from .extract import find_boxed, strip_thinking, unclosed_thinking
from .normalize import hedge_words

__all__ = ["ChoiceSpec", "resolve_choices", "parse_gold_letter", "extract_choice", "choice_matches",
           "stated_choice"]

OptionsArg = Union[int, str, Sequence[str], Mapping[str, str], None]

_SOURCE_LETTERS = {
    "mmlu": "ABCD",
    "commonsense_qa": "ABCDE",
    "truthfulqa": string.ascii_uppercase[:20],
    "theoremqa": "abcde",
}

_LINE_OPTION_RE = re.compile(r"^[ \t]*\(?([A-Z])[.):][ \t]+(\S.*)$", re.MULTILINE)
_INLINE_OPTION_RE = re.compile(r"\(([a-z])\)\s*(.+?)(?=\s*\([a-z]\)\s|\s*Which option|\s*$)", re.DOTALL)
_WRAPPER_RE = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|underline|boxed)\s*\{([^{}]*)\}")
_PREFIX_RE = re.compile(r"^(?:the\s+)?(?:correct\s+)?(?:final\s+)?(?:answer|option|choice)\s*(?:is\s*)?[:\-]?\s*", re.I)


@dataclass(frozen=True)
class ChoiceSpec:
    """Valid option letters (as written in the question) and, when known, their texts."""

    letters: str
    texts: Dict[str, str] = field(default_factory=dict)


def _from_options_arg(options: OptionsArg) -> Optional[ChoiceSpec]:
    if options is None:
        return None
    if isinstance(options, bool):
        raise TypeError("options must be a count, letters, option texts or a {letter: text} mapping")
    if isinstance(options, int):
        if not 1 <= options <= 26:
            raise ValueError(f"options count must be in 1..26, got {options}")
        return ChoiceSpec(string.ascii_uppercase[:options])
    if isinstance(options, str):
        letters = re.sub(r"[^A-Za-z]", "", options)
        return ChoiceSpec(letters)
    if isinstance(options, Mapping):
        return ChoiceSpec("".join(options), {k: str(v) for k, v in options.items()})
    opts = [str(o) for o in options]
    if all(len(o.strip("() ")) == 1 and o.strip("() ").isalpha() for o in opts):
        return ChoiceSpec("".join(o.strip("() ") for o in opts))
    letters = string.ascii_uppercase[: len(opts)]
    return ChoiceSpec(letters, dict(zip(letters, opts)))


def _from_prompt(prompt: str) -> Optional[ChoiceSpec]:
    """Options listed in the question: consecutive letters from A (or a) so stray lines are not options."""
    found = {}
    for m in _LINE_OPTION_RE.finditer(prompt):
        found.setdefault(m.group(1), m.group(2).strip())
    letters = ""
    for ch in string.ascii_uppercase:
        if ch not in found:
            break
        letters += ch
    if len(letters) >= 2:
        return ChoiceSpec(letters, {k: found[k] for k in letters})
    inline = {m.group(1): m.group(2).strip().rstrip(".") for m in _INLINE_OPTION_RE.finditer(prompt)}
    letters = ""
    for ch in string.ascii_lowercase:
        if ch not in inline:
            break
        letters += ch
    if len(letters) >= 2:
        return ChoiceSpec(letters, {k: inline[k] for k in letters})
    return None


def resolve_choices(options: OptionsArg = None, prompt: Optional[str] = None,
                    data_source: Optional[str] = None) -> ChoiceSpec:
    """Valid letters for one question (see the module docstring for the order of sources)."""
    spec = _from_options_arg(options)
    if prompt and (spec is None or not spec.texts):
        # The prompt supplies the letters, or the texts of the letters that `options` named.
        found = _from_prompt(prompt)
        if spec is None:
            spec = found
        elif found is not None and found.letters.casefold() == spec.letters.casefold():
            spec = ChoiceSpec(spec.letters, {a: found.texts[b] for a, b in zip(spec.letters, found.letters)})
    if spec is None and data_source:
        for key, letters in _SOURCE_LETTERS.items():
            if key in data_source:
                return ChoiceSpec(letters)
    return spec or ChoiceSpec(string.ascii_uppercase)


def parse_gold_letter(ground_truth: str) -> Optional[str]:
    """``C`` / ``(c)`` / ``\\text{(B)}`` -> the letter; None if the ground truth is not a single letter."""
    s = _WRAPPER_RE.sub(r"\1", ground_truth.strip()).strip().strip("$ ")
    m = re.fullmatch(r"\(?([A-Za-z])\)?", s)
    return m.group(1) if m else None


def _unwrap(content: str) -> str:
    prev = None
    s = content.strip()
    while prev != s:
        prev = s
        s = _WRAPPER_RE.sub(r"\1", s).strip().strip("$*_ ").strip()
    return s


def extract_choice(content: str, spec: ChoiceSpec) -> Optional[str]:
    """The option letter a box content names, as written in ``spec.letters``; None if none or several."""
    s = _PREFIX_RE.sub("", _unwrap(content)).strip()
    m = re.match(r"^\(?([A-Za-z])(?:\)|(?=[.:\s])|$)[.:)]?\s*(.*)$", s, re.DOTALL)
    if m:
        letter, rest = m.group(1), m.group(2).strip()
        # A lowercase letter followed by words is English ("a cat"), not option (a), unless options are a-e.
        if rest and letter.islower() and not spec.letters.islower() and not re.match(r"^\(?[a-z][.:)]", s):
            letter = None
        # "A or B", "A, C", "A and B": naming two options is a hedge.
        elif re.match(r"^(?:,|/|&|\bor\b|\band\b|\s)+\(?[A-Za-z]\)?(?:\W|$)", rest, re.I):
            return None
        if letter is not None:
            for valid in spec.letters:
                if valid.casefold() == letter.casefold():
                    return valid if not rest or _rest_is_clean(rest, valid, spec) else None
            return None
    # The option text itself ("five" for "C. five"), compared without spaces, `$` and final periods.
    folded = _fold(s)
    for letter, text in spec.texts.items():
        if folded and _fold(text) == folded:
            return letter
    return None


def _rest_is_clean(rest: str, letter: str, spec: ChoiceSpec) -> bool:
    """Whether the text after the chosen letter (``C. five``) names no other option.

    The option's own text always passes. Otherwise the rest must not hedge (``maybe``, ``vs``, ``?``), name
    another valid letter as a token (``C vs D``, ``(A) ... (B) ...``, ``C \\neq D``) or contain another
    option's text (unless the chosen option's text contains it too).
    """
    folded = _fold(rest)
    own = _fold(spec.texts.get(letter, ""))
    if own and folded == own:
        return True
    if "?" in rest or hedge_words(rest):
        return False
    bare = re.sub(r"\\[a-zA-Z]+", " ", rest.replace("\\\\", " "))  # commands (`\\neq`) and line breaks are no letters
    for other in spec.letters:
        if other == letter:
            continue
        if re.search(r"(?<![A-Za-z])" + re.escape(other) + r"(?![A-Za-z])", bare):
            return False
        text = _fold(spec.texts.get(other, ""))
        if text and text in folded and text not in own:
            return False
    return True


def _fold(text: str) -> str:
    return re.sub(r"[\s$]", "", _unwrap(text)).rstrip(".").casefold()


def choice_matches(content: str, ground_truth: str, spec: ChoiceSpec) -> bool:
    """Whether a box content picks the ground-truth option."""
    gold = parse_gold_letter(ground_truth)
    if gold is None:
        raise ValueError(f"ground truth {ground_truth!r} is not an option letter")
    got = extract_choice(content, spec)
    return got is not None and got.casefold() == gold.casefold()


# ------------------------------------------------------------------ unboxed statements of a choice (lenient)

# One option letter as a word: `C`, `(C)`, `**C**`, `(c)`; a lower-case letter only in parentheses, so the
# article "a" is never read as option (a).
_LETTER = r"(?:\*\*|__)?(?:\((?P<p>[A-Za-z])\)|(?P<l>[A-Z]))(?:\*\*|__)?"
_WORD_END = r"(?=[\s.,;:!)*]|$)"
_STATED_RES = (
    # "the correct option is C", "The best answer would be (C)", "Answer: C", "final choice = C"
    re.compile(r"(?i:\b(?:the\s+)?(?:(?:correct|right|best|final|most\s+likely|most\s+appropriate)\s+)?"
               r"(?:answer|option|choice)\s*(?:is|would\s+be|should\s+be|must\s+be|=|:)\s*[:\-]?\s*"
               r"(?:option\s+|choice\s+)?)" + _LETTER + _WORD_END),
    # "C is the correct answer", "Option C is correct", "(C) is right"
    re.compile(r"(?:^|(?<=[\s,:]))(?i:(?:option|choice)\s+)?" + _LETTER
               + r"\s+(?i:is\s+(?:the\s+)?(?:correct|right|best)\b)"),
    # "I choose C", "I'd go with option C", "I will select (C)"
    re.compile(r"(?i:\bI\s*(?:would\s+|will\s+|'d\s+|'ll\s+)?(?:choose|pick|select|go\s+with)\s+"
               r"(?:option\s+|choice\s+)?)" + _LETTER + _WORD_END),
)
# A second option right after the stated one ("C or D", "C/D", "C and D", "C vs D") makes it a hedge.
_SECOND_OPTION_RE = re.compile(r"\s*(?:,|/|&|\bor\b|\band\b|\bvs\b\.?)\s*(?i:option\s+)?\(?[A-Za-z]\)?(?![A-Za-z])",
                               re.I)


def stated_choice(response: str) -> Optional[str]:
    """The option a response names in words without a box (lenient policy), or None.

    Reads the text after the last ``</think>`` (none when the thinking never closed, or when there is a
    box: boxes take precedence) and takes the last statement of the forms "the (correct|best|final) answer/
    option/choice is C", "Answer: (C)", "C is the correct answer", "I choose option C". A statement that
    names a second option right after the first ("C or D", "C/D") is a hedge and gives None.
    """
    if unclosed_thinking(response):
        return None
    text = strip_thinking(response)
    if find_boxed(text):
        return None
    best: Optional[re.Match] = None
    for rx in _STATED_RES:
        for m in rx.finditer(text):
            if best is None or m.start() > best.start():
                best = m
    if best is None or _SECOND_OPTION_RE.match(text, best.end()) or _names_another_option(text, best.end()):
        return None
    return best.group("p") or best.group("l")


# The rest of a sentence: up to a full stop followed by a space, a line break, "!" or "?".
_SENTENCE_REST_RE = re.compile(r"(?:[^.!?\n]|\.(?!\s|$))*")
# Another option letter in it: a lone capital (not the pronoun "I") or a parenthesised letter.
_OTHER_LETTER_RE = re.compile(r"(?<![A-Za-z\\])(?:[A-HJ-Z]|\([A-Za-z]\))(?![A-Za-z])")


def _names_another_option(text: str, start: int) -> bool:
    """Whether the sentence that states the choice goes on to name another option ("C \\text{ or maybe } A",
    "C, unless it is B"): a hedge, as in a box."""
    rest = _SENTENCE_REST_RE.match(text, start).group(0)
    return _OTHER_LETTER_RE.search(rest) is not None
