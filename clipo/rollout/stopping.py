"""Where a generated response ends: first EOS, first stop string, or the token budget.

Two pieces that agree by construction:

* `StopStringCriteria` stops a row during generation as soon as a stop string shows up in the decoded
  tail of its *response* (the prompt is never searched, unlike transformers' `stop_strings`, whose match
  may straddle the prompt/response boundary) and remembers at which response token that happened.
* `find_response_end` decides, after generation, the exact response length and finish reason of one row,
  and `cut_response_text` trims the decoded text at the stop string.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

import torch
from transformers import StoppingCriteria

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["StopStringCriteria", "cut_response_text", "find_response_end"]


class StopStringCriteria(StoppingCriteria):
    """Per-row stopping on stop strings, searched in the decoded response tail (special tokens skipped).

    `stopped_at[i]` is the index (within the response) of the token that completed a stop string in row i,
    or None. Each step decodes only the last `window` tokens of the still-running rows: a stop string of c
    characters is always covered, because every token decodes to at least one character except special
    tokens, and the window leaves room for a few of those.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop: Sequence[str], prompt_width: int,
                 done_token_ids: Collection[int]):
        self.tokenizer = tokenizer
        self.stop = tuple(stop)
        self.prompt_width = prompt_width
        self.done_token_ids = set(done_token_ids)  # rows whose last token is EOS/pad are finished anyway
        self.window = 2 * max(len(s) for s in self.stop) + 8
        self.stopped_at: list[int | None] | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        rows, width = input_ids.shape
        if self.stopped_at is None:
            self.stopped_at = [None] * rows
        step = width - self.prompt_width - 1  # response index of the newest token
        start = max(self.prompt_width, width - self.window)
        tails = input_ids[:, start:].tolist()
        active = [i for i in range(rows)
                  if self.stopped_at[i] is None and tails[i][-1] not in self.done_token_ids]
        if active:
            texts = self.tokenizer.batch_decode([tails[i] for i in active], skip_special_tokens=True)
            for i, text in zip(active, texts):
                if any(s in text for s in self.stop):
                    self.stopped_at[i] = step
        done = [s is not None for s in self.stopped_at]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def find_response_end(
    tokens: Sequence[int],
    *,
    eos_ids: Collection[int],
    stop: Sequence[str],
    tokenizer: PreTrainedTokenizerBase,
    stopped_at: int | None = None,
) -> tuple[int, str]:
    """Length (incl. the EOS / stop-completing token) and finish reason of one generated row.

    tokens: the row's generated ids (padding after the end included). The end is the earliest of: the
    first EOS (reason "eos"); the first token after which the decoded response contains a stop string
    (reason "stop"); otherwise every token counts (reason "length"). `stopped_at` is the criterion's
    record for this row, which bounds the search (after it the row holds only padding, which may equal EOS).
    """
    cap = len(tokens) if stopped_at is None else stopped_at + 1
    window = list(tokens[:cap])
    # list.index scans in C: one pass per EOS id instead of a Python loop over every token.
    eos_pos = min((window.index(e) for e in eos_ids if e in window), default=None)
    end, reason = (eos_pos + 1, "eos") if eos_pos is not None else (cap, "length")
    if stop:
        stop_len = _first_stop_prefix(tokens[:end], stop, tokenizer)
        if stop_len is not None:
            return stop_len, "stop"
    if stopped_at is not None and reason == "length":
        return cap, "stop"  # the criterion saw the stop string in a decoded window; trust it
    return end, reason


def _first_stop_prefix(tokens: Sequence[int], stop: Sequence[str], tokenizer: PreTrainedTokenizerBase) -> int | None:
    """Smallest k such that decode(tokens[:k]) contains a stop string, or None.

    Binary search (O(log L) decodes): once a prefix contains a stop string, every longer prefix does.
    """
    def contains(k: int) -> bool:
        text = tokenizer.decode(list(tokens[:k]), skip_special_tokens=True)
        return any(s in text for s in stop)

    if not tokens or not contains(len(tokens)):
        return None
    lo, hi = 1, len(tokens)
    while lo < hi:
        mid = (lo + hi) // 2
        if contains(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def cut_response_text(text: str, stop: Sequence[str], *, include_stop: bool) -> str:
    """Cut `text` at the first completed stop string (kept when `include_stop`); unchanged if none occurs.

    "First completed" = the occurrence that ends earliest, which is the one generation stopped on (with
    stop strings "abc" and "b", text "abc" stops at "ab": "b" was complete one character before "abc").
    Of two occurrences ending at the same place, the longer one is cut.
    """
    hits = [(i + len(s), -len(s)) for s in stop if (i := text.find(s)) >= 0]
    if not hits:
        return text
    end, minus_len = min(hits)
    return text[:end] if include_stop else text[: end + minus_len]
