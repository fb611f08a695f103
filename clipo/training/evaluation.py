"""Evaluation: pass@1 (greedy), avg@k and pass@k (sampled) on one or more prompt datasets (in the training
loop, and for ``clipo eval`` through :mod:`clipo.apps.evaluate`)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from clipo.training.pipeline import render_fn, sampling_params, score_responses


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """Unbiased pass@k of Chen et al. (2021): ``1 − C(n − c, k) / C(n, k)`` for n samples with c correct."""
    if not 0 < k <= num_samples:
        raise ValueError(f"pass_at_k: need 0 < k <= n, got k={k}, n={num_samples}")
    if num_samples - num_correct < k:
        return 1.0
    return 1.0 - math.comb(num_samples - num_correct, k) / math.comb(num_samples, k)


@dataclass
class EvalResult:
    """Per-dataset scores: ``accuracy`` is avg@k (pass@1 when k = 1 greedy); ``pass_at_k`` the unbiased pass@k.

    ``problems`` holds one :class:`clipo.training.run_folder.EvalProblemRecord` (without ``step``) per problem, in
    order: ``correct`` of ``n`` samples, ``score = correct / n``; their mean is ``accuracy``. Not in ``as_dict``.
    """

    name: str
    num_prompts: int
    samples_per_prompt: int
    accuracy: float
    pass_at_k: float
    mean_response_tokens: float
    truncation_rate: float
    problems: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, float]:
        return {"num_prompts": self.num_prompts, "samples_per_prompt": self.samples_per_prompt,
                "accuracy": self.accuracy, f"pass@{self.samples_per_prompt}": self.pass_at_k,
                "mean_response_tokens": self.mean_response_tokens, "truncation_rate": self.truncation_rate}


def evaluate_dataset(
    name: str,
    examples: Sequence[Any],
    *,
    engine: Any,
    render: Any,
    score: Any,
    sampling: Any,
    batch_size: int = 32,
) -> tuple[EvalResult, list[dict[str, Any]]]:
    """Generate ``sampling.n`` answers per example, score them, and aggregate.

    Args:
        examples: :class:`clipo.data.PromptExample` rows.
        engine: a :class:`clipo.rollout.RolloutEngine`.
        render: ``example -> prompt text``.
        score: ``(responses, examples) -> list[float]`` (1 = correct).
        sampling: :class:`clipo.rollout.SamplingParams` (``temperature=0`` for greedy pass@1).
    Returns:
        The result and one record per response (for inspection).
    """
    correct_counts, lengths, truncated, records = [], [], [], []
    n = sampling.n
    for start in range(0, len(examples), batch_size):
        chunk = list(examples[start:start + batch_size])
        batch = engine.generate([render(e) for e in chunk], sampling)
        per_rollout_examples = [chunk[i] for i in batch.prompt_index.tolist()]
        scores = score(batch.response_texts, per_rollout_examples)
        lengths.extend(batch.response_lengths.tolist())
        truncated.extend(batch.truncated.tolist())
        for b in range(len(chunk)):
            group = scores[b * n:(b + 1) * n]
            correct_counts.append(sum(1 for s in group if s > 0))
        for text, example, value in zip(batch.response_texts, per_rollout_examples, scores):
            records.append({"dataset": name, "index": example.index, "ground_truth": example.ground_truth,
                            "response": text, "score": value})
    num = len(correct_counts)
    accuracy = sum(correct_counts) / (num * n) if num else float("nan")
    pass_k = sum(pass_at_k(n, c, n) for c in correct_counts) / num if num else float("nan")
    # Per problem, for paired comparisons of runs (clipo compare bootstraps over problems).
    problems = [{"set": name, "problem": position, "index": example.index, "correct": c, "n": n, "score": c / n}
                for position, (example, c) in enumerate(zip(examples, correct_counts))]
    result = EvalResult(name, num, n, accuracy, pass_k,
                        float(torch.tensor(lengths, dtype=torch.float32).mean()) if lengths else 0.0,
                        sum(truncated) / len(truncated) if truncated else 0.0, problems)
    return result, records


def format_table(results: Sequence[EvalResult]) -> str:
    """A plain-text table, one row per dataset."""
    header = f"{'dataset':<28} {'prompts':>7} {'k':>3} {'avg@k':>7} {'pass@k':>7} {'tokens':>7} {'trunc':>6}"
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r.name:<28} {r.num_prompts:>7} {r.samples_per_prompt:>3} {100 * r.accuracy:>6.1f}% "
                     f"{100 * r.pass_at_k:>6.1f}% {r.mean_response_tokens:>7.1f} {100 * r.truncation_rate:>5.1f}%")
    return "\n".join(lines)


def evaluate_all(config: Any, datasets: dict[str, Any], engine: Any, *, seed: int = 0,
                 records: list[dict[str, Any]] | None = None) -> list[EvalResult]:
    """Evaluate ``engine``'s model on each dataset with ``config.rollout``'s eval sampling.

    ``records``, when given, receives one dict per scored completion (dataset, index, ground truth, response, score).
    """
    r = config.rollout
    render = render_fn(config, engine.tokenizer)
    results = []
    for name, dataset in datasets.items():
        examples = list(dataset)
        if config.data.max_eval_examples:
            examples = examples[: config.data.max_eval_examples]
        result, scored = evaluate_dataset(
            name, examples, engine=engine, render=render,
            score=lambda texts, exs: score_responses(config, texts, exs)[0],
            sampling=sampling_params(config, n=r.eval_n, temperature=r.eval_temperature, top_p=r.eval_top_p,
                                     seed=seed),
            batch_size=max(1, r.micro_batch_size // max(1, r.eval_n)))
        results.append(result)
        if records is not None:
            records.extend(scored)
    return results
