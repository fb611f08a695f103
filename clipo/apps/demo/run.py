"""The built-in CPU demo: ``clipo train`` with no arguments.

1. warm-start a tiny Qwen2-style model on step-by-step demonstrations of the last-digit task (cached);
2. measure it: held-out accuracy, shifted-split accuracy (longer sums), and the share of correct answers
   whose intermediate steps are wrong ("right answer, wrong reasoning");
3. RL with GRPO + CLIPO (the recipe ``clipo/recipes/demo.yaml``);
4. measure again, write ``summary.json`` and the report.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from clipo.apps.demo.data import builtin_dataset
from clipo.apps.demo.task import Problem, check_process
from clipo.apps.demo.warmstart import WarmStartSpec, load_or_warm_start
from clipo.apps.report import make_report
from clipo.apps.specs import build_trainer
from clipo.rollout import make_engine
from clipo.training.pipeline import render_fn, sampling_params
from clipo.training.precision import autocast_context
from clipo.training.run_folder import RunFolder
from clipo.training.threads import set_threads

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "demo.yaml"


def process_metrics(batch: Any) -> dict[str, float]:
    """Per step: the share of correct rollouts whose intermediate steps are wrong, and of fully correct ones."""
    checks = [check_process(Problem(tuple(e.extra["operands"])), text)
              for e, text in zip(batch.examples, batch.rollouts.response_texts)]
    batch.extras["process_ok"] = torch.tensor([c.steps_correct for c in checks])
    correct = sum(c.answer_correct for c in checks)
    wrong_reasoning = sum(c.answer_correct and not c.steps_correct for c in checks)
    return {"task/right_answer_wrong_reasoning": wrong_reasoning / correct if correct else float("nan"),
            "task/process_correct": sum(c.steps_correct for c in checks) / max(1, len(checks))}


def measure(model: Any, tokenizer: Any, config: Any, *, samples: int = 4, seed: int = 0) -> dict[str, float]:
    """Greedy accuracy on the held-out and shifted splits, and the right-answer-wrong-reasoning rate of
    sampled rollouts (T = rollout.temperature, ``samples`` per prompt) on the held-out split."""
    engine = make_engine(config, model.eval(), tokenizer, micro_batch_size=256)
    render = render_fn(config, tokenizer)
    device = next(model.parameters()).device

    def generate(prompts: list[str], params: Any) -> Any:  # under trainer.precision's autocast, as in training
        with autocast_context(config.trainer.precision, device, model):
            return engine.generate(prompts, params)

    out: dict[str, float] = {}
    for split, key in (("arithmetic-test", "accuracy"), ("arithmetic-shifted", "shifted_accuracy")):
        examples = list(builtin_dataset(split))
        batch = generate([render(e) for e in examples], sampling_params(config, n=1, temperature=0.0, seed=seed))
        checks = [check_process(Problem(tuple(e.extra["operands"])), t) for e, t in zip(examples, batch.response_texts)]
        out[key] = sum(c.answer_correct for c in checks) / len(checks)
        if split == "arithmetic-test":
            out["process_accuracy"] = sum(c.steps_correct for c in checks) / len(checks)
    examples = list(builtin_dataset("arithmetic-test"))
    batch = generate([render(e) for e in examples], sampling_params(config, n=samples, temperature=config.rollout.temperature, seed=seed))
    checks = [check_process(Problem(tuple(examples[i].extra["operands"])), t)
              for i, t in zip(batch.prompt_index.tolist(), batch.response_texts)]
    correct = [c for c in checks if c.answer_correct]
    out["sampled_accuracy"] = len(correct) / len(checks)
    out["right_answer_wrong_reasoning"] = sum(not c.steps_correct for c in correct) / max(1, len(correct))
    return out


def train_and_measure(config: Any, *, before: dict[str, float] | None = None, log: Any = print) -> dict[str, Any]:
    """One RL run of the demo from the (cached) warm-started model; writes and returns ``summary.json``."""
    start = time.perf_counter()
    output = Path(config.trainer.output_dir)
    model, tokenizer, cached = load_or_warm_start(WarmStartSpec(), log=log)
    if not cached:
        log(f"      warm-start done in {time.perf_counter() - start:.0f}s (cached for next time)")
    if before is None:
        before = measure(model, tokenizer, config, seed=config.trainer.seed)
    trainer = build_trainer(config, model=model, tokenizer=tokenizer, rollout_metrics=process_metrics)
    rl_start = time.perf_counter()
    trainer.fit()
    rl_seconds = time.perf_counter() - rl_start
    after = measure(trainer.model, tokenizer, config, seed=config.trainer.seed)
    summary: dict[str, Any] = {"algorithm": config.algorithm.name, "clipo": config.clipo.enabled,
                               "seed": config.trainer.seed, "steps": trainer.step}
    for key in ("accuracy", "shifted_accuracy", "process_accuracy", "right_answer_wrong_reasoning"):
        summary[f"{key}_before"], summary[f"{key}_after"] = before[key], after[key]
    summary.update(rl_seconds=rl_seconds, steps_per_second=trainer.step / rl_seconds,
                   wall_seconds=time.perf_counter() - start)
    RunFolder(output).write_summary(summary)
    return summary


def run_demo(config: Any, *, log: Any = print) -> int:
    """Warm-start (or load), measure, train with RL, measure again, write summary.json and the report."""
    start = time.perf_counter()
    output = Path(config.trainer.output_dir)
    log("clipo demo: the last digit of a sum, worked out step by step, on a tiny model (CPU, no downloads)")
    set_threads(config.trainer.num_threads, announce=True)  # the warm-start too
    log("[1/4] warm-start (supervised, on demonstrations; ~30% of them box the right digit after a wrong step)")
    model, tokenizer, cached = load_or_warm_start(WarmStartSpec(), log=log)
    log("      loaded from the cache" if cached else f"      done in {time.perf_counter() - start:.0f}s (cached for next time)")
    log("[2/4] measuring the warm-started model")
    before = measure(model, tokenizer, config, seed=config.trainer.seed)
    log(f"      held-out accuracy {100 * before['accuracy']:.1f}%, shifted {100 * before['shifted_accuracy']:.1f}%, "
        f"right answer with wrong reasoning {100 * before['right_answer_wrong_reasoning']:.1f}%")
    name = config.algorithm.name.upper() + (" + CLIPO" if config.clipo.enabled else "")
    log(f"[3/4] RL with {name}: {config.trainer.max_steps} steps × {config.trainer.prompts_per_step} prompts × {config.rollout.n} samples")
    summary = train_and_measure(config, before=before, log=log)
    log("[4/4] measured the trained model; writing the report")
    summary["wall_seconds"] = time.perf_counter() - start
    RunFolder(output).write_summary(summary)
    report_dir = None
    try:
        report_dir = make_report(output).out_dir
    except Exception as error:  # the run's results stand even if a plot fails
        log(f"      (report failed: {error})")
    log("")
    log(f"held-out accuracy          {100 * summary['accuracy_before']:5.1f}% → {100 * summary['accuracy_after']:5.1f}%  (warm-start → after RL)")
    log(f"shifted-split accuracy     {100 * summary['shifted_accuracy_before']:5.1f}% → {100 * summary['shifted_accuracy_after']:5.1f}%")
    log(f"right answer, wrong steps  {100 * summary['right_answer_wrong_reasoning_before']:5.1f}% → "
        f"{100 * summary['right_answer_wrong_reasoning_after']:5.1f}%  (of correct sampled answers)")
    log(f"wall time {summary['wall_seconds']:.0f}s; run folder {output}" + (f"; report {report_dir}/report.md" if report_dir else ""))
    return 0
