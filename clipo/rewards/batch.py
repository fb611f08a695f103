"""Score many responses, optionally in worker processes with a hard per-task time limit.

Why processes: the SIGALRM limit of :func:`clipo.rewards.limits.time_limit` only works on the main thread
and cannot interrupt a long C call (a huge integer power inside sympy). A worker process runs every
task on its own main thread (so the soft limit works there too), and the parent watches each worker:
a task that makes no progress for ``timeout_s + grace`` gets its worker killed and restarted, the task
scores 0 and is counted as a timeout, and the rest of that worker's chunk is handed to the new worker.

Example::

    from clipo.rewards import score_batch
    res = score_batch(responses, ground_truths, data_sources=sources, num_workers=2, timeout_s=5)
    res.scores, res.stats.as_dict()
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .limits import VerifierStats
from .registry import call_reward, get_reward
from .scoring import score_answer

__all__ = ["BatchResult", "VerifierPool", "score_batch", "shutdown_pools"]

# Extra seconds a worker gets beyond the soft limit before the parent kills it (covers process
# scheduling on a busy machine; the soft SIGALRM limit inside the worker normally fires first).
HARD_TIMEOUT_GRACE_S = 2.0
# Workers that die before their first result this many times in a row mean a broken setup, not bad input.
MAX_STARTUP_FAILURES = 3
#: Seconds a new worker may take to start (import) before it counts as a failed start.
STARTUP_TIMEOUT_S = 300.0
_READY = "ready"  # a worker's first message


@dataclass
class BatchResult:
    """Scores in input order and the counters of this batch."""

    scores: List[float]
    stats: VerifierStats = field(default_factory=VerifierStats)


def _score_task(task: Dict[str, Any], reward: Any, timeout_s: Optional[float], stats: VerifierStats) -> float:
    """Score one task dict in the current process (shared by the serial path and the workers)."""
    if reward is None:
        return score_answer(
            task["response"], task["ground_truth"], data_source=task.get("data_source"),
            mode=task.get("mode", "robust"), format_policy=task.get("format_policy", "strict"),
            options=task.get("options"), prompt=task.get("prompt"), timeout_s=timeout_s, stats=stats,
        )
    return call_reward(reward, task, timeout_s=timeout_s, stats=stats)


def _worker_main(conn: Connection, reward: Any, timeout_s: Optional[float]) -> None:
    """Worker loop: receive chunks of (index, task), send back (index, score, stats) per task."""
    try:
        conn.send(_READY)  # imports are done: from now on the parent's clock runs against the tasks
        while True:
            msg = conn.recv()
            if msg is None:
                return
            for idx, task in msg:
                st = VerifierStats()
                score = _score_task(task, reward, timeout_s, st)
                conn.send((idx, score, st))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        return


class _Worker:
    def __init__(self, ctx, reward: Any, timeout_s: Optional[float]):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, reward, timeout_s), daemon=True)
        self.proc.start()
        child.close()
        self.pending: List[Tuple[int, Dict[str, Any]]] = []
        self.started = self.last_progress = time.monotonic()
        self.ready = False  # set when the worker has finished importing (its first message)
        self.ever_replied = False

    def assign(self, chunk: List[Tuple[int, Dict[str, Any]]]) -> None:
        self.pending = list(chunk)
        self.last_progress = time.monotonic()
        self.conn.send(chunk)

    def stuck(self, now: float, hard_timeout_s: Optional[float]) -> bool:
        """Whether the head task has run out of time. A worker's start-up (a fresh interpreter importing torch
        and the verifiers, seconds on a busy machine) is not a task's time: it has STARTUP_TIMEOUT_S of its own."""
        if not self.ready:
            return now - self.started > STARTUP_TIMEOUT_S
        return bool(hard_timeout_s) and now - self.last_progress > hard_timeout_s

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.join(timeout=5)
        finally:
            self.conn.close()


class VerifierPool:
    """A persistent pool of verifier processes (reuse it across training steps; close it at the end).

    Args:
        num_workers: processes to run (>= 1).
        timeout_s: soft limit per task inside the worker; the hard limit is ``timeout_s + 2 s``.
        reward: None for :func:`clipo.rewards.score_answer` on each task, or a reward spec accepted by
            :func:`clipo.rewards.registry.get_reward` (a name, a dotted path, or a list of
            ``(spec, weight)``); it must be picklable, so pass names rather than lambdas.
        mp_context: multiprocessing start method; ``spawn`` (default) is safe in processes that already
            hold CUDA contexts or threads, ``fork`` starts faster.
    """

    def __init__(self, num_workers: int, timeout_s: Optional[float] = 5.0, reward: Any = None,
                 mp_context: str = "spawn"):
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        if reward is not None:
            get_reward(reward)  # fail fast here, not in every worker
        self.num_workers = num_workers
        self.timeout_s = timeout_s
        self.reward = reward
        self._ctx = mp.get_context(mp_context)
        self._startup_failures = 0
        self._workers = [_Worker(self._ctx, reward, timeout_s) for _ in range(num_workers)]

    @property
    def hard_timeout_s(self) -> Optional[float]:
        return None if not self.timeout_s else self.timeout_s + HARD_TIMEOUT_GRACE_S

    def _replace(self, i: int) -> _Worker:
        self._workers[i].kill()
        self._workers[i] = _Worker(self._ctx, self.reward, self.timeout_s)
        return self._workers[i]

    def score(self, tasks: Sequence[Dict[str, Any]], chunk_size: Optional[int] = None) -> BatchResult:
        """Score task dicts (keys: response, ground_truth, and optionally data_source, prompt, options,
        mode, format_policy, plus any row fields a custom reward reads); returns scores in order."""
        n = len(tasks)
        scores = [0.0] * n
        stats = VerifierStats()
        if n == 0:
            return BatchResult(scores, stats)
        chunk_size = chunk_size or max(1, min(64, n // (self.num_workers * 4) or 1))
        queue = [list(enumerate(tasks))[i:i + chunk_size] for i in range(0, n, chunk_size)]
        queue.reverse()  # pop() from the end keeps input order roughly first-come
        while True:
            # Every idle worker (including one just restarted with nothing left of its chunk) takes the next chunk,
            # so no chunk is left behind when a worker is killed.
            for w in self._workers:
                if not w.pending and queue:
                    w.assign(queue.pop())
            busy = [w for w in self._workers if w.pending]
            if not busy:
                break
            ready = wait([w.conn for w in busy], timeout=0.5)
            now = time.monotonic()
            for i, w in enumerate(self._workers):
                if not w.pending:
                    continue
                if w.conn in ready:
                    try:
                        while w.pending and w.conn.poll():
                            message = w.conn.recv()
                            if message == _READY:
                                w.ready, w.last_progress = True, now
                                continue
                            idx, score, st = message
                            scores[idx] = score
                            stats.merge(st)
                            w.pending.pop(0)
                            w.last_progress = now
                            w.ever_replied = True
                            self._startup_failures = 0
                    except (EOFError, OSError):
                        # The worker died (segfault, OOM kill): its current task is an error.
                        self._fail_head(i, stats, timeout=False)
                elif w.stuck(now, self.hard_timeout_s) and not w.conn.poll():
                    # (a result that arrived since `wait` returned is read on the next round, not thrown away)
                    self._fail_head(i, stats, timeout=w.ready)
        return BatchResult(scores, stats)

    def _fail_head(self, i: int, stats: VerifierStats, timeout: bool) -> None:
        """Score the stuck task 0, restart worker ``i`` and give it the rest of its chunk."""
        if not timeout and not self._workers[i].ever_replied:
            self._startup_failures += 1
            if self._startup_failures >= MAX_STARTUP_FAILURES:
                self.close()
                raise RuntimeError(
                    f"verifier workers died {MAX_STARTUP_FAILURES} times before scoring anything; with the "
                    "'spawn' start method the calling script must guard its entry point with "
                    "`if __name__ == '__main__':`, and any custom reward must be importable by name"
                )
        rest = self._workers[i].pending[1:]
        stats.calls += 1
        if timeout:
            stats.timeouts += 1
        else:
            stats.errors += 1
        stats.worker_restarts += 1
        if not timeout:
            stats.note("crashed a verifier worker process")
        w = self._replace(i)
        if rest:
            w.assign(rest)

    def close(self) -> None:
        """Stop the workers."""
        for w in self._workers:
            try:
                w.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        for w in self._workers:
            w.proc.join(timeout=2)
            if w.proc.is_alive():
                w.kill()
        self._workers = []

    def __enter__(self) -> "VerifierPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_POOLS: Dict[Tuple[int, Optional[float], str, str], VerifierPool] = {}


def shutdown_pools() -> None:
    """Close the pools that :func:`score_batch` keeps between calls."""
    for pool in _POOLS.values():
        pool.close()
    _POOLS.clear()


atexit.register(shutdown_pools)


def _tasks(responses, ground_truths, data_sources, prompts, options, mode, format_policy, rows):
    n = len(responses)
    if len(ground_truths) != n:
        raise ValueError(f"got {n} responses but {len(ground_truths)} ground truths")
    for name, seq in (("data_sources", data_sources), ("prompts", prompts), ("options", options), ("rows", rows)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries, expected {n} (one per response)")
    out = []
    for i in range(n):
        t: Dict[str, Any] = dict(rows[i]) if rows is not None else {}
        t.update(response=responses[i], ground_truth=ground_truths[i], mode=mode, format_policy=format_policy)
        if data_sources is not None:
            t["data_source"] = data_sources[i]
        if prompts is not None:
            t["prompt"] = prompts[i]
        if options is not None:
            t["options"] = options[i]
        out.append(t)
    return out


def score_batch(responses: Sequence[str], ground_truths: Sequence[str], *,
                data_sources: Optional[Sequence[Optional[str]]] = None,
                prompts: Optional[Sequence[Optional[str]]] = None,
                options: Optional[Sequence[Any]] = None,
                rows: Optional[Sequence[Dict[str, Any]]] = None,
                mode: str = "robust", format_policy: str = "strict", reward: Any = None,
                num_workers: int = 0, timeout_s: Optional[float] = 5.0,
                mp_context: str = "spawn") -> BatchResult:
    """Score a batch; returns :class:`BatchResult` (``scores`` in input order, ``stats``).

    ``num_workers=0`` scores in this process (soft time limit on the main thread only); ``>= 1`` uses a
    :class:`VerifierPool` that is created on first use and kept for later calls with the same settings
    (``shutdown_pools()`` closes them). ``reward`` (a registry spec) replaces the default
    :func:`~clipo.rewards.score_answer`; ``rows`` are extra per-row fields passed to custom rewards.
    """
    tasks = _tasks(responses, ground_truths, data_sources, prompts, options, mode, format_policy, rows)
    if num_workers <= 0:
        stats = VerifierStats()
        if reward is not None:
            get_reward(reward)
        return BatchResult([_score_task(t, reward, timeout_s, stats) for t in tasks], stats)
    key = (num_workers, timeout_s, mp_context, repr(reward))
    pool = _POOLS.get(key)
    if pool is None:
        pool = _POOLS[key] = VerifierPool(num_workers, timeout_s, reward, mp_context)
    return pool.score(tasks)


def default_num_workers() -> int:
    """A sensible worker count: the CPUs this process may use, minus one for the trainer."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, n - 1)
