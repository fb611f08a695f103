"""Reward registry: names, data-source prefixes, dotted paths, combinations, errors."""

from __future__ import annotations

import pytest

from clipo.rewards import (
    CombinedReward,
    RewardLookupError,
    VerifierStats,
    available_rewards,
    call_reward,
    get_reward,
    register_reward,
    reward_for_source,
)

FNS = "reward_fns_for_tests"


def test_builtin_names():
    assert {"math", "math_lenient", "choice", "official", "format"} <= set(available_rewards())
    assert get_reward("math")(r"\boxed{2{,}125}", "2,125") == 1.0
    assert get_reward("math_lenient")("#### 7", "7") == 1.0
    assert get_reward("choice")(r"\boxed{(b)}", "B") == 1.0
    assert get_reward("official")(r"\boxed{(B)}", "B", data_source="conrl/mmlu2k") == 0.0
    assert get_reward("format")(r"\boxed{1}", "2") == 1.0


def test_data_source_prefix_selects_robust_scorer():
    fn = get_reward("conrl/gsm8k")
    assert fn is reward_for_source("conrl/anything")
    assert fn(r"\boxed {18}", "18") == 1.0
    with pytest.raises(RewardLookupError, match="known prefixes"):
        get_reward("openai/gsm8k")


def test_dotted_paths():
    assert get_reward(f"{FNS}:length_bonus")("short", "x") == 1.0
    assert get_reward(f"{FNS}.length_bonus")("short", "x") == 1.0


@pytest.mark.parametrize(
    "spec,message",
    [
        ("no_such_module_xyz:fn", "cannot import module 'no_such_module_xyz'"),
        (f"{FNS}:nope", "has no attribute 'nope'"),
        ("mathh", "not a registered name"),
    ],
)
def test_lookup_errors_say_what_to_fix(spec, message):
    with pytest.raises(RewardLookupError, match=message):
        get_reward(spec)


def test_combined_reward_weights_and_none():
    combo = get_reward([("math", 1.0), (f"{FNS}:length_bonus", 0.1)])
    assert isinstance(combo, CombinedReward)
    assert combo(r"\boxed{5}", "5") == pytest.approx(1.1)
    assert combo(r"\boxed{4}" + " " * 60, "5") == 0.0
    stats = VerifierStats()
    value = call_reward([("math", 1.0), (f"{FNS}:cannot_score", 1.0)],
                        {"response": r"\boxed{5}", "ground_truth": "5"}, stats=stats)
    assert value == 1.0 and stats.unscored == 1
    with pytest.raises(ValueError, match="finite number"):
        get_reward([("math", "heavy")])


def test_call_reward_counts_none_and_errors():
    stats = VerifierStats()
    row = {"response": "a", "ground_truth": "a"}
    assert call_reward(f"{FNS}:cannot_score", row, stats=stats) == 0.0
    assert call_reward(f"{FNS}:raises", row, stats=stats) == 0.0
    assert (stats.unscored, stats.errors, stats.calls) == (1, 1, 2)


def test_register_reward():
    @register_reward("always_half_for_tests")
    def half(response, ground_truth, **row):
        return 0.5

    assert get_reward("always_half_for_tests") is half
    with pytest.raises(ValueError, match="already registered"):
        register_reward("always_half_for_tests", lambda r, g, **k: 0.0)
    register_reward("always_half_for_tests", half)  # re-registering the same function is fine
