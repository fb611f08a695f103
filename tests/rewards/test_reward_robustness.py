"""Reliability of the verifier: time limits that hold whatever libraries catch, byte-bounded caches, a worker
pool that never drops a task, and bad reward values counted as errors instead of silent zeros."""

from __future__ import annotations

import math
import time

import pytest

from clipo.rewards import (
    VerificationTimeout,
    VerifierPool,
    VerifierStats,
    call_reward,
    score_answer,
    score_batch,
    time_limit,
)
from clipo.rewards.limits import ByteBudgetCache, sympy_would_explode

FNS = "reward_fns_for_tests"
TOWER_OF_PRODUCTS = r"\boxed{10^{" + r" \cdot ".join(["10"] * 40) + "}}"


# --------------------------------------------------------------------------- 1. the time limit holds

def test_timeout_is_not_swallowed_by_except_exception():
    assert not issubclass(VerificationTimeout, Exception)
    t0 = time.monotonic()
    with pytest.raises(VerificationTimeout):
        with time_limit(0.2):
            for _ in range(100):
                try:
                    _busy(30)
                except Exception:  # noqa: BLE001 - what math-verify does around sympy
                    pass
    assert time.monotonic() - t0 < 2


def _busy(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_a_swallowed_timeout_is_raised_again():
    t0 = time.monotonic()
    with pytest.raises(VerificationTimeout):
        with time_limit(0.2):
            try:
                _busy(30)
            except BaseException:  # noqa: BLE001 - a library's bare except swallows the first alarm...
                pass
            _busy(30)  # ...and carries on with the rest of its work: the repeated alarm ends it
    assert time.monotonic() - t0 < 2


@pytest.mark.parametrize("response, gold", [
    (TOWER_OF_PRODUCTS, r"\sqrt{5}"),
    (r"\boxed{10^{" + r" \cdot ".join(["10"] * 10) + "}}", r"\sqrt{5}"),
    (r"\boxed{5}", r"9^{9^{9^{9}}}"),
    (r"\boxed{3.5}", r"9^{9^{9^{9}}}"),
])
def test_explosive_inputs_return_within_the_limit_and_count_as_timeouts(response, gold):
    stats = VerifierStats()
    t0 = time.monotonic()
    assert score_answer(response, gold, timeout_s=2, stats=stats) == 0.0
    assert time.monotonic() - t0 < 4
    assert stats.timeouts == 1 and stats.calls == 1


def test_explosive_ground_truth_is_checked_once_and_still_matches_verbatim():
    gold = r"9^{9^{9^{9}}}"
    stats = VerifierStats()
    t0 = time.monotonic()
    scores = [score_answer(rf"\boxed{{{k}}}", gold, timeout_s=2, stats=stats) for k in range(20)]
    assert scores == [0.0] * 20 and stats.timeouts == 20
    assert time.monotonic() - t0 < 4  # flagged once, refused fast afterwards
    assert score_answer(r"\boxed{9^{9^{9^{9}}}}", gold, timeout_s=2) == 1.0


def test_size_guard_keeps_ordinary_answers():
    from clipo.rewards.math_equiv import _mv_parse_cached

    for ok in (r"\sqrt{5}", r"2^{2023}", r"\frac{1}{2^{98}}", r"100!", r"10^{1000}", r"x^{2}+3x"):
        assert not sympy_would_explode(_mv_parse_cached(ok)), ok
    for bad in (r"10^{10^{10}}", r"(10^{10})!", r"2^{-100000000}", r"9^{9^{9^{9}}}"):
        assert sympy_would_explode(_mv_parse_cached(bad)), bad
    assert score_answer(r"\boxed{2^{10}}", "1024") == 1.0
    assert score_answer(r"\boxed{\frac{\sqrt{20}}{2}}", r"\sqrt{5}") == 1.0


# --------------------------------------------------------------------------- 2. caches bounded in bytes

def test_structure_cache_stays_within_its_byte_budget(monkeypatch):
    from clipo.rewards import math_equiv

    cache = math_equiv._STRUCTURE_CACHE
    cache.clear()  # earlier tests filled it with small answers
    assert not math_equiv.answers_match("1 + " + "x + " * 250_000, "5", allow_symbolic=False)  # one real 1 MB answer
    # The cache mechanics alone (parsing 300 MB of text would take minutes): 300 distinct 1 MB responses, then
    # 300 distinct 100 kB ones (small enough to be kept, so the budget must evict).
    monkeypatch.setattr(math_equiv, "parse_answer_structure", lambda text: ("atom", text))
    for size in (1_000_000, 100_000):
        for i in range(300):
            text = f"{i:04d}" + "x" * size
            assert math_equiv._structure(text) == ("atom", text)
            assert cache.nbytes <= cache.max_bytes
    assert 0 < len(cache) < 300 and cache.nbytes <= 32 << 20
    cache.clear()


def test_byte_budget_cache_evicts_oldest_and_skips_huge_items():
    cache = ByteBudgetCache(max_bytes=10_000, max_item_bytes=3_000, cost=len)
    for i in range(100):
        cache.put(str(i) * 1000, i)  # 1-3 kB keys
    assert cache.nbytes <= 10_000 and len(cache) >= 3
    assert cache.get("99" * 1000) == 99 and cache.get("0" * 1000) is None
    cache.put("y" * 5000, 1)
    assert cache.get("y" * 5000) is None
    calls = []
    f = cache.cached(lambda k: calls.append(k) or len(k))
    assert f("abc") == 3 and f("abc") == 3 and calls == ["abc"]


# --------------------------------------------------------------------------- 3. the pool never drops a task

def test_pool_with_two_stuck_tasks_scores_every_other_task():
    responses = [str(i) for i in range(64)]
    responses[5] = responses[40] = "stuck"
    gts = [str(i) if i % 3 else "no" for i in range(64)]
    expected = [0.0 if r == "stuck" or i % 3 == 0 else 1.0 for i, r in enumerate(responses)]
    with VerifierPool(2, timeout_s=0.5, reward=f"{FNS}:stuck_uninterruptible", mp_context="fork") as pool:
        res = pool.score([{"response": r, "ground_truth": g} for r, g in zip(responses, gts)])
    assert res.scores == expected
    assert res.stats.timeouts == 2 and res.stats.worker_restarts == 2 and res.stats.calls == 64


def test_pool_one_worker_stuck_first_then_the_rest():
    tasks = [{"response": r, "ground_truth": g} for r, g in (("stuck", "x"), ("18", "18"), ("5", "5"), ("7", "7"))]
    with VerifierPool(1, timeout_s=0.5, reward=f"{FNS}:stuck_uninterruptible", mp_context="fork") as pool:
        res = pool.score(tasks)  # chunks of one: the stuck task's chunk has nothing left after it
    assert res.scores == [0.0, 1.0, 1.0, 1.0]
    assert res.stats.timeouts == 1 and res.stats.calls == 4


# --------------------------------------------------------------------------- 4. bad reward values are errors

BAD = [("returns_nan", "returned nan", "bad_values"), ("returns_inf", "returned inf", "bad_values"),
       ("returns_neg_inf", "returned -inf", "bad_values"), ("returns_string", "returned str '1.0'", "bad_values"),
       ("returns_list", "returned list [1.0]", "bad_values"), ("returns_none_always", "returned None", "unscored"),
       ("raises", "raised RuntimeError: bug in a user reward", "errors")]


@pytest.mark.parametrize("fn, example, counter", BAD)
def test_bad_reward_values_score_zero_and_are_counted(fn, example, counter):
    stats = VerifierStats()
    assert call_reward(f"{FNS}:{fn}", {"response": "a", "ground_truth": "a"}, stats=stats) == 0.0
    assert getattr(stats, counter) == 1 and stats.example == example and stats.correct == 0
    res = score_batch(["a", "b", "c"], ["a", "b", "c"], reward=f"{FNS}:{fn}")
    assert res.scores == [0.0, 0.0, 0.0] and all(not math.isnan(s) for s in res.scores)
    assert getattr(res.stats, counter) == 3 and res.stats.example == example


def test_bad_reward_values_are_counted_by_workers():
    for fn, example, counter in BAD:
        res = score_batch(["a", "b", "c"], ["a", "b", "c"], reward=f"{FNS}:{fn}", num_workers=1, mp_context="fork")
        assert res.scores == [0.0, 0.0, 0.0], fn
        assert getattr(res.stats, counter) == 3 and res.stats.example == example, fn


def test_stats_example_is_not_a_metric_and_merges_first():
    a, b = VerifierStats(errors=1, example="raised X"), VerifierStats(bad_values=2, example="returned nan")
    c = a + b
    assert (c.errors, c.bad_values, c.example) == (1, 2, "raised X")
    assert "verifier/example" not in c.as_dict() and c.as_dict()["verifier/bad_values"] == 2
    c.reset()
    assert c.example == "" and c.bad_values == 0


# --------------------------------------------------------------------------- 4b. the trainer logs and stops

def _tiny_trainer(tmp_path, *overrides):
    import json

    from clipo.testing import build_tiny_trainer

    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{a}+1=?", "answer": str(a + 1)}) + "\n" for a in range(16)))
    return build_tiny_trainer([f"data.train={data}", "data.eval=[]", f"trainer.output_dir={tmp_path / 'run'}",
                               "clipo.enabled=false", "trainer.max_steps=1", *overrides])


def test_a_reward_returning_nan_stops_the_run_with_one_line(tmp_path):
    from clipo.training.pipeline import RewardFunctionError

    trainer = _tiny_trainer(tmp_path, f"reward.verifier={FNS}:returns_nan")
    with pytest.raises(RewardFunctionError) as info:
        trainer.fit()
    message = str(info.value)
    assert "\n" not in message and f"reward.verifier='{FNS}:returns_nan'" in message and "returned nan" in message
    assert "16 of 16 rollouts" in message


def test_reward_errors_are_logged_per_step_below_the_threshold(tmp_path):
    from clipo.training.tracking import read_metrics

    trainer = _tiny_trainer(tmp_path, f"reward.verifier={FNS}:returns_nan", "reward.max_error_rate=1")
    trainer.fit()
    row = read_metrics(tmp_path / "run")[0]
    assert row["verify/bad_values"] == 16 and row["verify/calls"] == 16 and row["verify/errors"] == 0


def test_max_error_rate_is_validated():
    from clipo.training.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="reward.max_error_rate"):
        load_config(overrides=["data.train=builtin:arithmetic", "reward.max_error_rate=1.5"])
