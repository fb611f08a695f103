"""Where a run's numbers go: ``metrics.jsonl`` (one line per step), TensorBoard, optional wandb, samples.

The file names and line shapes belong to :mod:`clipo.training.run_folder` (docs/architecture.md); this module
decides what is logged when.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from clipo.training.run_folder import EvalRecord, MetricsRow, RunFolder, append_jsonl, read_jsonl, truncate_jsonl


def to_float(value: Any) -> float:
    """A metric as a plain float (tensors are read once here, at logging time)."""
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().cpu().item())
    return float(value)


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


class MetricsLogger:
    """Appends one JSON line per step to ``metrics.jsonl`` and mirrors scalars to TensorBoard / wandb.

    On resume, lines of steps after the checkpoint (written by the killed run after its last checkpoint)
    are dropped, so the file reads as one uninterrupted run.
    """

    def __init__(self, output_dir: str | Path, *, tensorboard: bool = True, wandb_project: str | None = None,
                 resume_step: int | None = None, config: dict | None = None, enabled: bool = True):
        self.enabled = enabled
        self.dir = Path(output_dir)
        self.run = RunFolder(self.dir)
        self._tb = self._wandb = None
        if not enabled:  # a non-main data-parallel process: metrics are written by the main one
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path, self.samples_path, self.eval_path, _ = self.run.jsonl_logs
        for path in self.run.jsonl_logs:
            if resume_step is None:
                path.unlink(missing_ok=True)
            else:
                truncate_jsonl(path, resume_step)
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.run.tensorboard), purge_step=None if resume_step is None else resume_step + 1)
        self._wandb = None
        if wandb_project:
            try:
                import wandb
            except ImportError as error:
                raise ImportError("trainer.wandb_project is set but wandb is not installed: pip install 'clipo[wandb]'") from error
            self._wandb = wandb.init(project=wandb_project, config=config, dir=str(self.dir), resume="allow")

    def log(self, step: int, metrics: dict[str, Any]) -> dict[str, float]:
        values = {key: to_float(value) for key, value in metrics.items()}
        if not self.enabled:
            return values
        row: MetricsRow = {"step": step, **{k: _json_number(v) for k, v in values.items()}}
        append_jsonl(self.metrics_path, [row])
        if self._tb is not None:
            for key, value in values.items():
                if math.isfinite(value):
                    self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(values, step=step)
        return values

    def log_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        if not self.enabled:
            return
        append_jsonl(self.samples_path, [{"step": step, **sample} for sample in samples])

    def log_eval(self, step: int, results: dict[str, dict[str, float]]) -> None:
        if not self.enabled:
            return
        record: EvalRecord = {"step": step, "results": results}
        append_jsonl(self.eval_path, [record])
        flat = {f"eval/{name}/{key}": value for name, res in results.items() for key, value in res.items()
                if isinstance(value, (int, float))}
        if self._tb is not None:
            for key, value in flat.items():
                self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(flat, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def read_metrics(output_dir: str | Path) -> list[MetricsRow]:
    """The rows of a run's ``metrics.jsonl`` ([] when there is none; ValueError on an unreadable line)."""
    return read_jsonl(RunFolder(output_dir).metrics)
