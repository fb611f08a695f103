"""The robust scorer meets its accuracy goal on the hand-labelled responses (tests/fixtures/verifier_cases.jsonl).

Goal (issue): >= 97% accuracy and <= 1% false positives. The labels follow a "lenient-human" policy (an
unboxed but explicit final answer counts), so the scorer runs with ``format_policy="lenient"``. When the
paper's data is beside the checkout, each case gets its question text, as in training.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CASES = REPO / "tests" / "fixtures" / "verifier_cases.jsonl"


def _bench():
    spec = importlib.util.spec_from_file_location("verifier_accuracy", REPO / "benchmarks" / "verifier_accuracy.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not CASES.exists(), reason=f"no labelled cases at {CASES}")
def test_robust_mode_meets_accuracy_goal():
    bench = _bench()
    cases = bench.load_cases(CASES)
    assert len(cases) >= 300
    bench.attach_prompts(cases)
    from clipo.rewards import VerifierStats

    stats = VerifierStats()
    score = bench._robust("lenient", stats)
    r = bench.rates([(int(c["label"]), score(c)) for c in cases])
    assert r["acc"] >= 0.97, r
    assert r["fpr"] <= 0.01, r
    assert stats.timeouts == 0 and stats.errors == 0


@pytest.mark.skipif(not CASES.exists(), reason=f"no labelled cases at {CASES}")
def test_robust_beats_official():
    bench = _bench()
    cases = bench.load_cases(CASES)[::4]  # a quarter keeps this quick; the benchmark runs all
    labels = [int(c["label"]) for c in cases]
    from clipo.rewards import VerifierStats

    robust = bench.rates(list(zip(labels, map(bench._robust("lenient", VerifierStats()), cases))))
    official = bench.rates(list(zip(labels, map(bench._official(VerifierStats()), cases))))
    assert robust["acc"] > official["acc"]
