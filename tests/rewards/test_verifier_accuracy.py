"""The robust scorer meets its accuracy goal on the hand-labelled responses (tests/fixtures/verifier_cases.jsonl).

Goal (issue): >= 97% accuracy and <= 1% false positives. The labels follow a "lenient-human" policy (an
unboxed but explicit final answer counts), so the scorer runs with ``format_policy="lenient"``. When the
paper's data is present (the ``paper_data_or_none`` fixture of tests/conftest.py), each case gets its question
text, as in training. Everything is computed here from clipo's public API; benchmarks/verifier_accuracy.py
prints the same numbers as a table, but this test does not depend on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipo.rewards import VerifierStats, score_answer

CASES = Path(__file__).resolve().parents[1] / "fixtures" / "verifier_cases.jsonl"

pytestmark = pytest.mark.skipif(not CASES.exists(), reason=f"no labelled cases at {CASES}")


@pytest.fixture(scope="module")
def cases(paper_data_or_none):
    """The labelled cases; each gets ``prompt`` (its row's question text) when the paper's data is present."""
    cases = [json.loads(line) for line in CASES.read_text(encoding="utf-8").splitlines() if line.strip()]
    if paper_data_or_none is not None:
        import pandas as pd

        frames = {}
        for case in cases:
            split, name = case.get("split", "test"), case["data_source"].split("/", 1)[1]
            path = paper_data_or_none / split / f"{name}.parquet"
            if path not in frames:
                frames[path] = pd.read_parquet(path, columns=["prompt"]) if path.exists() else None
            frame = frames[path]
            if frame is not None and 0 <= case.get("row", -1) < len(frame):
                case["prompt"] = "\n".join(m["content"] for m in frame.prompt.iloc[case["row"]])
    return cases


def robust_score(case: dict, stats: VerifierStats) -> float:
    return score_answer(case["response"], case["ground_truth"], data_source=case["data_source"],
                        options=case.get("options"), prompt=case.get("prompt"), format_policy="lenient", stats=stats)


def official_score(case: dict, stats: VerifierStats) -> float:
    # The whole math75 reference solution, as the paper's scorer receives it (it reads the last box itself).
    return score_answer(case["response"], case["ground_truth"], data_source=case["data_source"], mode="official",
                        stats=stats)


def rates(labels: list[int], scores: list[float]) -> dict[str, float]:
    """Accuracy (a score > 0 means "correct") and false-positive rate (label-0 cases scored correct / label-0)."""
    negatives = [s for label, s in zip(labels, scores, strict=True) if label == 0]
    right = sum((s > 0) == (label == 1) for label, s in zip(labels, scores, strict=True))
    return {"n": len(labels), "acc": right / len(labels), "fpr": sum(s > 0 for s in negatives) / len(negatives),
            "fp": sum(s > 0 for s in negatives)}


def test_robust_mode_meets_accuracy_goal(cases):
    assert len(cases) >= 300
    labels = [int(c["label"]) for c in cases]
    assert 0 < sum(labels) < len(labels)
    stats = VerifierStats()
    r = rates(labels, [robust_score(c, stats) for c in cases])
    assert r["acc"] >= 0.97, r
    assert r["fpr"] <= 0.01, r
    assert stats.timeouts == 0 and stats.errors == 0


def test_robust_beats_official(cases):
    cases = cases[::4]  # a quarter keeps this quick; benchmarks/verifier_accuracy.py runs all
    labels = [int(c["label"]) for c in cases]
    robust = rates(labels, [robust_score(c, VerifierStats()) for c in cases])
    official = rates(labels, [official_score(c, VerifierStats()) for c in cases])
    assert robust["acc"] > official["acc"], (robust, official)
