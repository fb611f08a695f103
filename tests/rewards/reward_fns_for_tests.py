"""Custom reward functions that the registry and pool tests import by dotted path (not a test module)."""

from __future__ import annotations

import signal
import time


def length_bonus(response, ground_truth, **row):
    """A user reward: 1.0 for responses under 50 characters."""
    return 1.0 if len(response) < 50 else 0.0


def cannot_score(response, ground_truth, **row):
    """A user reward that gives up (None = could not score)."""
    return None


def raises(response, ground_truth, **row):
    """A buggy user reward."""
    raise RuntimeError("bug in a user reward")


def slow_python(response, ground_truth, **row):
    """Busy Python loop: the in-process SIGALRM limit interrupts it."""
    end = time.monotonic() + 30
    while time.monotonic() < end:
        pass
    return 1.0


def stuck_uninterruptible(response, ground_truth, **row):
    """Blocks SIGALRM and sleeps, like a long C call: only the pool's hard limit (killing the worker) ends it."""
    if response == "stuck":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(60)
    return 1.0 if response == ground_truth else 0.0


def echo_row(response, ground_truth, **row):
    """Returns the `bonus` field of the row, to check that row fields reach custom rewards."""
    return float(row.get("bonus", 0.0))


# Misbehaving rewards: each value must score 0 and be counted, never raise into the trainer.
def returns_nan(response, ground_truth, **row):
    return float("nan")


def returns_inf(response, ground_truth, **row):
    return float("inf")


def returns_neg_inf(response, ground_truth, **row):
    return float("-inf")


def returns_string(response, ground_truth, **row):
    return "1.0"


def returns_list(response, ground_truth, **row):
    return [1.0]


def returns_none_always(response, ground_truth, **row):
    return None
