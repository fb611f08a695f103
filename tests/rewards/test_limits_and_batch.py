"""Time limits, counters and batch scoring (in process and in worker processes)."""

from __future__ import annotations

import threading
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

FNS = "reward_fns_for_tests"


def test_time_limit_interrupts_python():
    t0 = time.monotonic()
    with pytest.raises(VerificationTimeout):
        with time_limit(0.2):
            while True:
                pass
    assert time.monotonic() - t0 < 2


def test_time_limit_restores_outer_timer():
    with pytest.raises(VerificationTimeout):
        with time_limit(0.5):
            with time_limit(0.05):
                pass  # inner finished in time; the outer limit must still fire
            while True:
                pass


def test_timeout_scores_zero_and_is_counted():
    stats = VerifierStats()
    score = call_reward(f"{FNS}:slow_python", {"response": "x", "ground_truth": "x"}, timeout_s=0.2, stats=stats)
    assert score == 0.0 and stats.timeouts == 1 and stats.calls == 1
    assert stats.as_dict()["verifier/timeout_rate"] == 1.0


def test_explosive_answer_is_fast():
    t0 = time.monotonic()
    for bad in (r"\boxed{9^9^9^9}", r"\boxed{10^{10^{10}}}", r"\boxed{99999!}", r"\boxed{2^{100000000}}"):
        assert score_answer(bad, "5") == 0.0
    assert time.monotonic() - t0 < 2


def test_score_answer_never_raises_on_garbage():
    stats = VerifierStats()
    for junk in ("\\boxed{" + "(" * 500 + "}", "\\boxed{\\frac{}{}}", "\\boxed{\\begin{pmatrix}}", "\x00\\boxed{1/0}"):
        assert score_answer(junk, "1", stats=stats) in (0.0, 1.0)
    assert stats.calls == 4


def test_score_answer_in_a_thread_runs_without_signal():
    # Off the main thread SIGALRM cannot be used; scoring must still work (without the soft limit).
    out = []
    t = threading.Thread(target=lambda: out.append(score_answer(r"\boxed{\frac{1}{2}}", "0.5")))
    t.start()
    t.join()
    assert out == [1.0]


def test_stats_add_and_reset():
    a, b = VerifierStats(calls=2, correct=1), VerifierStats(calls=3, timeouts=1)
    c = a + b
    assert (c.calls, c.correct, c.timeouts) == (5, 1, 1)
    c.reset()
    assert c.calls == 0


def test_score_batch_serial_matches_score_answer():
    responses = [r"\boxed{18}", r"\boxed{19}", "#### 18", r"\boxed{(C)}"]
    gts = ["18", "18", "18", "C"]
    sources = ["conrl/gsm8k", "conrl/gsm8k", "conrl/gsm8k", "conrl/mmlu2k"]
    res = score_batch(responses, gts, data_sources=sources)
    assert res.scores == [1.0, 0.0, 0.0, 1.0]
    assert res.stats.calls == 4 and res.stats.correct == 2 and res.stats.no_answer == 1


def test_score_batch_checks_lengths():
    with pytest.raises(ValueError, match="ground truths"):
        score_batch(["a"], [])
    with pytest.raises(ValueError, match="data_sources"):
        score_batch(["a"], ["a"], data_sources=[])


def test_pool_scores_in_order_with_workers():
    responses = [rf"\boxed{{{i}}}" for i in range(60)]
    gts = [str(i if i % 3 else i + 1) for i in range(60)]
    res = score_batch(responses, gts, num_workers=2, timeout_s=5)
    assert res.scores == [0.0 if i % 3 == 0 else 1.0 for i in range(60)]
    assert res.stats.calls == 60


def test_pool_kills_and_restarts_a_stuck_worker():
    # The task blocks SIGALRM (like a long C call), so only the pool's hard limit can end it.
    tasks = [{"response": r, "ground_truth": "ok"} for r in ("ok", "stuck", "ok", "no", "ok")]
    with VerifierPool(1, timeout_s=0.5, reward=f"{FNS}:stuck_uninterruptible", mp_context="fork") as pool:
        t0 = time.monotonic()
        res = pool.score(tasks, chunk_size=5)
        assert time.monotonic() - t0 < 20
        assert res.scores == [1.0, 0.0, 1.0, 0.0, 1.0]
        assert res.stats.timeouts == 1 and res.stats.worker_restarts == 1
        # The restarted worker keeps serving.
        assert pool.score([{"response": "ok", "ground_truth": "ok"}]).scores == [1.0]


def test_custom_reward_in_batch_receives_row_fields():
    res = score_batch(["a", "b"], ["a", "b"], rows=[{"bonus": 0.5}, {"bonus": 2.0}], reward=f"{FNS}:echo_row")
    assert res.scores == [0.5, 2.0]


def test_a_workers_start_up_is_not_counted_as_task_time():
    # The clock against the head task starts when the worker says it has finished importing, not when the task
    # was sent: a fresh 'spawn' interpreter importing torch can take longer than timeout_s + grace on a busy machine.
    from clipo.rewards.batch import STARTUP_TIMEOUT_S, _Worker

    worker = _Worker.__new__(_Worker)  # the clock logic alone, no process
    worker.started = worker.last_progress = 100.0
    worker.ready = False
    assert not worker.stuck(100.0 + 60.0, hard_timeout_s=2.5)  # still importing after a minute: not stuck
    assert worker.stuck(100.0 + STARTUP_TIMEOUT_S + 1, hard_timeout_s=2.5)  # never started: a failed start
    worker.ready, worker.last_progress = True, 160.0
    assert not worker.stuck(162.0, hard_timeout_s=2.5) and worker.stuck(163.0, hard_timeout_s=2.5)
    assert not worker.stuck(1e9, hard_timeout_s=None)  # no time limit


def test_spawned_replacement_worker_scores_the_rest_of_the_chunk():
    # After the stuck task is killed, the new worker (a fresh 'spawn' interpreter, seconds to import) scores the
    # rest of the chunk: [stuck, ok, no, ok] -> [0, 1, 0, 1], one timeout, nothing else lost.
    tasks = [{"response": r, "ground_truth": "ok"} for r in ("stuck", "ok", "no", "ok")]
    with VerifierPool(1, timeout_s=0.5, reward=f"{FNS}:stuck_uninterruptible", mp_context="spawn") as pool:
        res = pool.score(tasks, chunk_size=4)
    assert res.scores == [0.0, 1.0, 0.0, 1.0]
    assert res.stats.timeouts == 1 and res.stats.worker_restarts == 1 and res.stats.errors == 0
