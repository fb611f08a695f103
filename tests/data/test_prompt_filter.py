"""PromptDataset.drop_long_prompts: the pure half of data.max_prompt_tokens (the trainer supplies the lengths)."""
from __future__ import annotations

import pytest

from clipo.data import LoadReport, PromptDataset, PromptExample

LENGTHS = [5, 12, 8, 20, 8, 9, 30, 1, 10, 11]  # example k has this many tokens


def _ds() -> PromptDataset:
    report = LoadReport(source="toy.jsonl", format="jsonl", rows_read=10, rows_loaded=10)
    return PromptDataset([PromptExample(f"q{i}", str(i), "toy", i) for i in range(10)], report)


def test_keeps_exactly_the_prompts_within_the_limit():
    kept, dropped = _ds().drop_long_prompts(LENGTHS, 10)
    # ≤ 10: 5, 8, 8, 9, 1, 10 at positions 0, 2, 4, 5, 7, 8; over: 12, 20, 30, 11 → 4 dropped.
    assert [ex.index for ex in kept] == [0, 2, 4, 5, 7, 8] and dropped == 4
    assert kept.report is not None and kept.report.source == "toy.jsonl"  # the load report travels along


def test_limit_boundaries():
    ds = _ds()
    assert ds.drop_long_prompts(LENGTHS, 0) == (ds, 0)  # 0: no limit, the same object
    assert ds.drop_long_prompts(LENGTHS, 30) == (ds, 0)  # the longest fits exactly
    kept, dropped = ds.drop_long_prompts(LENGTHS, 29)
    assert len(kept) == 9 and dropped == 1 and 6 not in [ex.index for ex in kept]
    kept, dropped = ds.drop_long_prompts(LENGTHS, 1)
    assert [ex.index for ex in kept] == [7] and dropped == 9
    kept, dropped = ds.drop_long_prompts([length + 100 for length in LENGTHS], 100)
    assert len(kept) == 0 and dropped == 10  # empty: the caller decides whether that is an error


def test_lengths_must_match():
    with pytest.raises(ValueError, match="9 lengths for 10 examples"):
        _ds().drop_long_prompts(LENGTHS[:9], 10)
