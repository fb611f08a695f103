"""Verifiable rewards for RL post-training: answer extraction, equivalence, time limits, batching, registry.

Quick use::

    from clipo.rewards import score_answer, score_batch
    score_answer(r"... so the total is \\boxed{2{,}125}.", "2,125", data_source="conrl/gsm8k")   # 1.0
    score_answer(r"\\boxed{(C)}", "C", data_source="conrl/mmlu2k")                                # 1.0
    score_answer(r"\\boxed{(C)}", "C", data_source="conrl/mmlu2k", mode="official")              # 0.0
    res = score_batch(responses, gts, data_sources=sources, num_workers=2, timeout_s=5)
    res.scores, res.stats.as_dict()

Modules: :mod:`.extract` (find the final answer), :mod:`.normalize` / :mod:`.math_equiv` (robust
equivalence), :mod:`.choice` (multiple choice), :mod:`.official` (the paper's scorer),
:mod:`.limits` (time limits, counters), :mod:`.batch` (worker pool), :mod:`.registry` (reward lookup).
"""

from .batch import BatchResult, VerifierPool, default_num_workers, score_batch, shutdown_pools
from .choice import ChoiceSpec, extract_choice, resolve_choices
from .extract import extract_candidates, extract_final_answer, find_boxed, last_boxed, strip_thinking
from .limits import GLOBAL_STATS, VerificationTimeout, VerifierStats, time_limit
from .math_equiv import answers_match
from .official import official_score
from .registry import (
    CombinedReward,
    RewardLookupError,
    available_rewards,
    call_reward,
    get_reward,
    register_reward,
    reward_for_source,
)
from .scoring import ANSWER_TYPES, DEFAULT_TIMEOUT_S, MODES, answer_type, score_answer

__all__ = [
    "score_answer", "answer_type", "answers_match", "official_score",
    "score_batch", "BatchResult", "VerifierPool", "shutdown_pools", "default_num_workers",
    "VerifierStats", "GLOBAL_STATS", "VerificationTimeout", "time_limit",
    "extract_final_answer", "extract_candidates", "find_boxed", "last_boxed", "strip_thinking",
    "ChoiceSpec", "resolve_choices", "extract_choice",
    "register_reward", "get_reward", "reward_for_source", "call_reward", "CombinedReward",
    "available_rewards", "RewardLookupError",
    "ANSWER_TYPES", "MODES", "DEFAULT_TIMEOUT_S",
]
