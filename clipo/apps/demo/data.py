"""The demo task's prompt splits as :class:`clipo.data.PromptDataset` (``builtin:arithmetic`` and friends)."""
from __future__ import annotations

from clipo.apps.demo.task import DATA_SOURCE, make_problems
from clipo.data import PromptDataset, PromptExample
from clipo.training.config import ConfigError

# Splits: (number of problems, seed, operand-count range). "shifted" has longer sums than training.
SPLITS = {
    "arithmetic": (5000, 11, (3, 5)),
    "arithmetic-test": (200, 12, (3, 5)),
    "arithmetic-shifted": (200, 13, (6, 6)),
}


def builtin_dataset(name: str) -> PromptDataset:
    """A :class:`clipo.data.PromptDataset` of a demo split (``arithmetic``, ``arithmetic-test``, ``arithmetic-shifted``)."""
    if name not in SPLITS:
        raise ConfigError(f"unknown built-in dataset 'builtin:{name}'; choose one of {', '.join('builtin:' + s for s in SPLITS)}")
    count, seed, operands = SPLITS[name]
    problems = make_problems(count, seed=seed, num_operands=operands)
    return PromptDataset([PromptExample(prompt=[{"role": "user", "content": p.prompt}], ground_truth=p.answer,
                                        data_source=DATA_SOURCE, index=i, extra={"operands": list(p.operands)})
                          for i, p in enumerate(problems)])
