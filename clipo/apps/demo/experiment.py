"""``clipo experiment``: base algorithm vs base + CLIPO on the demo task, several seeds, same budget.

Every run starts from the same cached warm-started model and differs only in the RL seed and in whether
CLIPO is on. The table reports the mean and a 95% t-interval over seeds of: held-out accuracy, shifted-split
accuracy, the right-answer-wrong-reasoning rate of sampled answers, and RL steps per second.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from clipo.apps.demo.run import RECIPE, measure, train_and_measure
from clipo.apps.demo.warmstart import WarmStartSpec, load_or_warm_start
from clipo.training.config import load_config

# Two-sided 97.5% Student-t quantiles for n − 1 degrees of freedom (n = number of seeds).
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         15: 2.131, 20: 2.086, 30: 2.042}

METRICS = (
    ("accuracy_after", "held-out acc", 100.0),
    ("shifted_accuracy_after", "shifted acc", 100.0),
    ("right_answer_wrong_reasoning_after", "right ans, wrong steps", 100.0),
    ("steps_per_second", "steps/s", 1.0),
)


def mean_interval(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95% t-interval (half-width NaN for a single value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan")
    dof = len(values) - 1
    t = _T975.get(dof) or _T975[max(k for k in _T975 if k <= dof)]
    return mean, t * statistics.stdev(values) / math.sqrt(len(values))


def variants(algorithms: list[str]) -> list[tuple[str, str, bool]]:
    """``["grpo", "dapo"]`` → (label, algorithm, clipo) for each algorithm with CLIPO off and on."""
    return [(f"{a}{'+clipo' if on else ''}", a, on) for a in algorithms for on in (False, True)]


def run_experiment(overrides: list[str], *, seeds: int, algorithms: list[str], output_dir: str,
                   log: Any = print) -> dict[str, Any]:
    """Train every variant for every seed; write ``experiment.json`` and ``experiment.md``; return the results."""
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    base = load_config(RECIPE, overrides)
    model, tokenizer, _ = load_or_warm_start(WarmStartSpec(), log=log)
    before = measure(model, tokenizer, base, seed=0)
    log(f"warm-started model: held-out {100 * before['accuracy']:.1f}%, shifted {100 * before['shifted_accuracy']:.1f}%, "
        f"right answer with wrong steps {100 * before['right_answer_wrong_reasoning']:.1f}%")
    runs: dict[str, list[dict[str, Any]]] = {}
    for label, algorithm, clipo_on in variants(algorithms):
        for seed in range(seeds):
            config = load_config(RECIPE, [*overrides, f"algorithm.name={algorithm}", f"clipo.enabled={str(clipo_on).lower()}",
                                          f"trainer.seed={seed}", f"trainer.output_dir={root / f'{label}-seed{seed}'}",
                                          "trainer.progress=false", "trainer.eval_every=0", "trainer.save_every=0"])
            summary = train_and_measure(config, before=before, log=log)
            runs.setdefault(label, []).append(summary)
            log(f"{label:<14} seed {seed}: held-out {100 * summary['accuracy_after']:.1f}%, "
                f"shifted {100 * summary['shifted_accuracy_after']:.1f}%, "
                f"wrong steps {100 * summary['right_answer_wrong_reasoning_after']:.1f}%, {summary['steps_per_second']:.2f} steps/s")
    table = format_table(runs, before, seeds=seeds, steps=base.trainer.max_steps)
    result = {"before": before, "runs": runs, "seeds": seeds, "overrides": overrides}
    (root / "experiment.json").write_text(json.dumps(result, indent=2))
    (root / "experiment.md").write_text(table + "\n")
    log("")
    log(table)
    return result


def format_table(runs: dict[str, list[dict[str, Any]]], before: dict[str, float], *, seeds: int, steps: int) -> str:
    """A Markdown table: one row per variant, mean ± 95% interval over seeds."""
    header = "| variant | " + " | ".join(name for _, name, _ in METRICS) + " |"
    lines = [f"Demo task, {seeds} seed(s) × {steps} RL steps per variant; mean ± 95% t-interval over seeds.",
             f"Warm-started model before RL: held-out {100 * before['accuracy']:.1f}%, shifted "
             f"{100 * before['shifted_accuracy']:.1f}%, right answer with wrong steps {100 * before['right_answer_wrong_reasoning']:.1f}%.",
             "", header, "|" + "---|" * (len(METRICS) + 1)]
    for label, summaries in runs.items():
        cells = []
        for key, _, scale in METRICS:
            mean, half = mean_interval([s[key] * scale for s in summaries])
            cells.append(f"{mean:.1f} ± {half:.1f}" if scale == 100.0 else f"{mean:.2f} ± {half:.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
