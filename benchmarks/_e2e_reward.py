"""The rewards of the end-to-end benchmark, importable by both processes (`clipo train reward.verifier=...` and the
TRL runner) without importing torch: a parity reward for the tiny workload, clipo's math verifier for GSM8K."""


def parity(response, ground_truth=None, **_):
    """Deterministic in the text and ~50% positive on random text, so groups mix right and wrong rollouts."""
    return 1.0 if sum(map(ord, response)) % 2 == 0 else 0.0


def trl_parity(prompts=None, completions=None, **_):
    """:func:`parity` in TRL's reward-function signature."""
    return [parity(c[-1]["content"] if isinstance(c, list) else c) for c in completions]


def trl_math(prompts=None, completions=None, answer=None, **_):
    """clipo's robust math verifier (what ``clipo train`` uses on GSM8K) in TRL's reward-function signature."""
    from clipo.rewards import score_answer

    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [score_answer(t, a, data_source="conrl/gsm8k") for t, a in zip(texts, answer)]
