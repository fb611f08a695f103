"""``clipo eval``: load a model (a hub name, a folder, or a run folder's ``final/``) and score it on ``data.eval``."""
from __future__ import annotations

from typing import Any

import torch

from clipo.apps.specs import load_eval_sets, resolve_model
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
    with autocast_context(config.trainer.precision, device):  # generation computes as training does
        return evaluate_all(config, eval_sets, engine, seed=seed, records=records)
