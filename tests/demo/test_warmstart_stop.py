"""The demo warm-start's stop: bisection back to the step where validation accuracy crosses the target."""
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clipo.apps.demo.warmstart import first_step_at_target


def crossings(curve, low, high, target):
    """Every k in (low, high] with curve[k] >= target > curve[k-1] (the naive definition)."""
    return [k for k in range(low + 1, high + 1) if curve[k] >= target > curve[k - 1]]


def test_monotone_curve_gives_the_first_step_at_the_target():
    curve = [0.0, 0.1, 0.2, 0.3, 0.42, 0.49, 0.51, 0.6, 0.7, 0.8, 0.83]
    calls = []
    k, accuracy = first_step_at_target(0, 10, lambda s: calls.append(s) or curve[s], 0.5, curve[10])
    assert (k, accuracy) == (6, 0.51)
    assert len(calls) <= 4 and 10 not in calls  # ⌈log2 10⌉ evaluations; the high end is not measured again


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=40), st.floats(0.05, 0.95))
def test_any_curve_returns_a_crossing(values, target):
    curve = [0.0, *values]
    low = 0
    highs = [i for i in range(1, len(curve)) if curve[i] >= target]
    if not highs:
        return
    high = highs[-1]
    k, accuracy = first_step_at_target(low, high, curve.__getitem__, target, curve[high])
    assert k in crossings(curve, low, high, target)
    assert accuracy == curve[k]


def test_adjacent_checks_need_no_evaluation():
    k, accuracy = first_step_at_target(4, 5, lambda s: pytest.fail("evaluated"), 0.5, 0.9)
    assert (k, accuracy) == (5, 0.9)


def test_a_sudden_jump_is_traced_back_to_the_step_that_made_it():
    rng = random.Random(0)
    curve = [rng.uniform(0.3, 0.45) for _ in range(11)]
    curve[7:] = [0.52, 0.7, 0.8, 0.83]  # 42% -> 83% between two checks, as the demo once did
    assert first_step_at_target(0, 10, curve.__getitem__, 0.5, curve[10]) == (7, 0.52)
