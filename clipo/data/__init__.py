"""Prompt datasets for RL post-training: loading that never fails silently, chat rendering, resumable order.

Quick use::

    from clipo.data import load_prompts, render_prompt

    ds = load_prompts("data/train/gsm8k.parquet")                     # verl parquet, JSONL, CSV, HF datasets
    print(ds.report)                                                   # rows, bad rows, duplicates, ...
    it = ds.iterator(seed=0)                                           # endless, shuffled per epoch
    batch = it.next_batch(8)
    text = render_prompt(batch[0], tokenizer)                          # chat template + generation prompt
    state = it.state_dict()                                            # checkpoint; it.load_state_dict(state)

Modules: :mod:`.loaders` (reading and checking rows), :mod:`.records` (``PromptExample``, ``LoadReport``),
:mod:`.dataset` (``PromptDataset``, ``PromptIterator``, ``DataPosition``), :mod:`.render`
(``render_prompt``), :mod:`.answers` (math75 solutions -> final answer), :mod:`.errors` (``DataError``), :mod:`.paths`
(where relative paths are looked up: the working directory, then ``data.root`` / ``$CLIPO_DATA_DIR``).
"""
from .answers import SOLUTION_SOURCES, reduce_solution
from .dataset import DataPosition, PromptDataset, PromptIterator, epoch_order
from .errors import BadRow, DataError
from .loaders import DEFAULT_ANSWER_FIELDS, FORMATS, load_examples, load_many, load_prompts
from .paths import DATA_DIR_ENV, data_root, resolve_data_path
from .records import LoadReport, PromptExample
from .render import render_prompt, render_prompts, to_messages

__all__ = [
    "load_prompts", "load_examples", "load_many", "FORMATS", "DEFAULT_ANSWER_FIELDS",
    "PromptExample", "LoadReport", "PromptDataset", "PromptIterator", "DataPosition", "epoch_order",
    "DataError", "BadRow", "render_prompt", "render_prompts", "to_messages",
    "SOLUTION_SOURCES", "reduce_solution", "DATA_DIR_ENV", "data_root", "resolve_data_path",
]
