"""Read a run folder into :class:`RunData`: the report's only contact with the files a run writes.

File names and record shapes come from :class:`clipo.training.run_folder.RunFolder` (docs/architecture.md). The
reader is lenient, because a report is often made from a run that is still going or was killed: missing files
and keys, null/NaN values, half-written JSONL lines and unreadable snapshots are skipped and noted in
``RunData.notes`` instead of failing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import yaml

from clipo.apps.report.numerics import to_float
from clipo.training.run_folder import RunFolder, read_jsonl, step_of

__all__ = ["RunData", "Snapshot", "eval_metric_name", "load_run", "load_snapshot"]


@dataclass
class Snapshot:
    """One ``embeddings/step_XXXXXX.pt`` file, as numpy arrays."""

    step: int
    path: Path
    embedding: np.ndarray          # [N, D] float32: ``z`` when present, else ``pooled``
    source: str                    # "z" or "pooled"
    correct: np.ndarray            # [N] bool
    group_ids: np.ndarray          # [N] int
    contrastive_reward: Optional[np.ndarray]
    extras: dict[str, np.ndarray]


@dataclass
class RunData:
    """Everything the report reads from a run folder (each part may be empty)."""

    run_dir: Path
    steps: np.ndarray = field(default_factory=lambda: np.zeros(0))     # [T] sorted unique steps
    metrics: dict[str, np.ndarray] = field(default_factory=dict)        # key -> [T] float, NaN where missing
    evals: list[tuple[int, dict[str, dict[str, Any]]]] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)                      # problems met while reading

    @property
    def folder(self) -> RunFolder:
        """The run folder's paths (file names come from :mod:`clipo.training.run_folder`)."""
        return RunFolder(self.run_dir)

    def has(self, key: str) -> bool:
        values = self.metrics.get(key)
        return values is not None and bool(np.isfinite(values).any())

    def first_present(self, *keys: str) -> Optional[str]:
        return next((k for k in keys if self.has(k)), None)


def eval_metric_name(result: dict[str, Any]) -> Optional[str]:
    """The headline metric of one dataset's eval result: ``accuracy`` (greedy), else ``avg@k`` or ``pass@1``."""
    if "accuracy" in result:
        return "accuracy"
    for key in result:
        if key.startswith("avg@") or key == "pass@1":
            return key
    return None


def _read_jsonl(path: Path, notes: list[str]) -> list[dict]:
    skipped: list[int] = []
    rows = read_jsonl(path, skipped=skipped)  # e.g. the half-written last line of a killed run is skipped
    if skipped:
        notes.append(f"`{path.name}`: {len(skipped)} unreadable line(s) skipped")
    return rows


def _load_metrics(path: Path, notes: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    by_step: dict[int, dict] = {}
    for row in _read_jsonl(path, notes):
        step = to_float(row.get("step"))
        if not math.isfinite(step):
            continue
        by_step.setdefault(int(step), {}).update(row)  # a repeated step (resume): the later line wins
    steps = np.array(sorted(by_step), dtype=np.int64)
    keys: list[str] = []
    seen = set()
    for step in steps:
        for key in by_step[int(step)]:
            if key != "step" and key not in seen:
                seen.add(key)
                keys.append(key)
    metrics = {key: np.array([to_float(by_step[int(s)].get(key)) for s in steps], dtype=np.float64) for key in keys}
    return steps, metrics


def _load_evals(path: Path, notes: list[str]) -> list[tuple[int, dict[str, dict[str, Any]]]]:
    evals = []
    for row in _read_jsonl(path, notes):
        step, results = to_float(row.get("step")), row.get("results")
        if math.isfinite(step) and isinstance(results, dict):
            evals.append((int(step), {str(k): v for k, v in results.items() if isinstance(v, dict)}))
    evals.sort(key=lambda item: item[0])
    return evals


def _np(tensor: Any) -> np.ndarray:
    if isinstance(tensor, torch.Tensor):
        tensor = tensor.detach().cpu()
        if tensor.dtype in (torch.float16, torch.bfloat16):
            tensor = tensor.float()
        return tensor.numpy()
    return np.asarray(tensor)


def load_snapshot(path: Path) -> Snapshot:
    """One ``embeddings/step_XXXXXX.pt`` as numpy arrays; ValueError when its arrays disagree in length."""
    data = RunFolder.read_snapshot(path)
    z = data.get("z")
    source = "z" if z is not None else "pooled"
    emb = _np(z if z is not None else data["pooled"]).astype(np.float32)
    emb = emb[:, None] if emb.ndim == 1 else emb.reshape(emb.shape[0], -1)
    n = emb.shape[0]
    correct = _np(data.get("correct", np.zeros(n, dtype=bool))).astype(bool).reshape(-1)
    groups = _np(data.get("group_ids", np.arange(n))).reshape(-1)
    if correct.size != n or groups.size != n:
        raise ValueError(f"{n} embeddings but {correct.size} correctness flags and {groups.size} group ids")
    reward = data.get("contrastive_reward")
    extras = {str(k): _np(v).reshape(-1) for k, v in (data.get("extras") or {}).items()
              if _np(v).size == n}
    step = data.get("step")
    if step is None:
        step = step_of(path) or 0
    return Snapshot(step=int(step), path=path, embedding=emb, source=source, correct=correct,
                    group_ids=groups, contrastive_reward=None if reward is None else _np(reward).reshape(-1),
                    extras=extras)


def load_run(run_dir: str | Path) -> RunData:
    """Read ``metrics.jsonl``, ``eval.jsonl``, ``embeddings/*.pt``, ``config.yaml`` and ``summary.json``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    run = RunData(run_dir=run_dir)
    folder = run.folder
    if folder.metrics.is_file():
        run.steps, run.metrics = _load_metrics(folder.metrics, run.notes)
    else:
        run.notes.append(f"no `{folder.metrics.name}`: no training curves")
    if folder.evals.is_file():
        run.evals = _load_evals(folder.evals, run.notes)
    for path in folder.embedding_snapshots():
        try:
            run.snapshots.append(load_snapshot(path))
        except Exception as error:  # noqa: BLE001 - a bad snapshot must not stop the report
            run.notes.append(f"`{path.relative_to(run_dir).as_posix()}` skipped: {type(error).__name__}: {error}")
    run.snapshots.sort(key=lambda s: s.step)
    if folder.config.is_file():
        try:
            loaded = yaml.safe_load(folder.config.read_text())
            run.config = loaded if isinstance(loaded, dict) else {}
        except Exception as error:  # noqa: BLE001
            run.notes.append(f"`{folder.config.name}` unreadable: {error}")
    if folder.summary.is_file():
        try:
            run.summary = folder.read_summary()
        except Exception as error:  # noqa: BLE001
            run.notes.append(f"`{folder.summary.name}` unreadable: {error}")
    return run
