"""clipo.integrations.rewards.math_reward: clipo's verifier in TRL's reward-function signature."""
from __future__ import annotations

import pytest

from clipo.integrations.rewards import make_math_reward, math_reward, message_text
from clipo.rewards import score_answer


def test_plain_text_with_a_ground_truth_column():
    completions = [r"so \boxed{2{,}125}", r"\boxed{2124}", "The answer is 2125"]
    got = math_reward(prompts=["q"] * 3, completions=completions, ground_truth=["2,125"] * 3,
                      trainer_state=None, log_metric=print)
    assert got == [1.0, 0.0, 0.0]  # strict format: an unboxed answer does not count
    assert got == [score_answer(c, "2,125") for c in completions]


def test_chat_messages_and_verl_reward_model_column_with_data_source():
    prompts = [[{"role": "user", "content": "Pick one: (A) 1 (B) 2 (C) 3 ... within \\boxed{}"}]] * 2
    completions = [[{"role": "assistant", "content": r"\boxed{(C)}"}],
                   [{"role": "assistant", "content": [{"type": "text", "text": r"\boxed{B}"}]}]]
    columns = {"reward_model": [{"ground_truth": "C", "style": "rule"}] * 2, "data_source": ["conrl/mmlu2k"] * 2}
    assert math_reward(prompts=prompts, completions=completions, **columns) == [1.0, 0.0]
    # The paper's scorer rejects "(C)" (a documented bug it reproduces).
    official = make_math_reward(mode="official")
    assert official(prompts=prompts, completions=completions, **columns) == [0.0, 0.0]
    assert official.__name__ == "math_reward"


def test_lenient_format_and_message_text():
    lenient = make_math_reward(format_policy="lenient")
    assert lenient(prompts=["q"], completions=["#### 18"], answer=["18"]) == [1.0]
    assert message_text([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]) == "b"


def test_missing_ground_truth_names_the_columns():
    with pytest.raises(ValueError, match="no ground-truth column.*'question'"):
        math_reward(prompts=["q"], completions=["a"], question=["q"])
    with pytest.raises(ValueError, match="'reward_model' column must hold dicts"):
        math_reward(prompts=["q"], completions=["a"], reward_model=["7"])
