"""``clipo eval``: load a model (a hub name, a folder, or a run folder's ``final/``) and score it on ``data.eval``;
the paper's table when the sets are a track's (:mod:`clipo.apps.tracks`)."""
from __future__ import annotations

from typing import Any

import torch

from clipo.apps.compare import paper_table, table_markdown
from clipo.apps.specs import load_eval_sets, resolve_model
from clipo.apps.tracks import Track, get_track, track_eval_sources, track_of_sets, track_sampling_overrides
from clipo.rollout import make_engine
from clipo.training.config import Config
from clipo.training.evaluation import EvalResult, evaluate_all
from clipo.training.precision import autocast_context


def run_evaluation(config: Config, *, model: Any = None, tokenizer: Any = None, seed: int = 0,
                   records: list[dict[str, Any]] | None = None) -> list[EvalResult]:
    """Load ``config.model`` (unless given) and evaluate it on ``config.data.eval`` (``clipo eval``).

    ``records``, when given, receives one dict per scored completion (dataset, index, ground truth, response, score).
    """
    eval_sets = load_eval_sets(config)  # before the model: a bad file is reported at once
    if model is None or tokenizer is None:
        model, tokenizer = resolve_model(config)
    device = "cuda" if torch.cuda.is_available() and config.trainer.device != "cpu" else "cpu"
    engine = make_engine(config, model.to(device).eval(), tokenizer)
    with autocast_context(config.trainer.precision, device, model):  # generation computes as training does
        return evaluate_all(config, eval_sets, engine, seed=seed, records=records)


def track_overrides(name: str) -> list[str]:
    """``clipo eval --track NAME``: the track's files as ``data.eval`` and its eval sampling, as dotted overrides
    (put before the user's own, which win)."""
    return [f"data.eval={','.join(track_eval_sources(name))}", *track_sampling_overrides(name)]


def results_table(results: list[EvalResult], track: str | None = None) -> dict[str, Any] | None:
    """The paper's table (:func:`clipo.apps.compare.paper_table`) of ``results``: for the named track, else for the
    track all the sets belong to; None when they are not one track's."""
    chosen: Track | None = get_track(track) if track else track_of_sets(r.name for r in results)
    if chosen is None:
        return None
    return paper_table({r.name: r.accuracy for r in results}, samples={r.name: r.samples_per_prompt for r in results},
                       problems={r.name: r.num_prompts for r in results}, track=chosen)


def results_markdown(results: list[EvalResult], track: str | None = None) -> str | None:
    """:func:`results_table` as Markdown (None when there is no table)."""
    table = results_table(results, track)
    return table_markdown(table) if table is not None else None


def problem_records(results: list[EvalResult]) -> list[dict[str, Any]]:
    """The ``eval_problems.jsonl`` lines of a ``clipo eval`` (``step`` None: one model, not a training step)."""
    return [{"step": None, **p} for r in results for p in r.problems]
