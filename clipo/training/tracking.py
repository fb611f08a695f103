"""Where a run's numbers go: ``metrics.jsonl`` (one line per step), TensorBoard, optional wandb, samples."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch


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
        self._tb = self._wandb = None
        if not enabled:  # a non-main data-parallel process: metrics are written by the main one
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.dir / "metrics.jsonl"
        self.samples_path = self.dir / "samples.jsonl"
        self.eval_path = self.dir / "eval.jsonl"
        for path in (self.metrics_path, self.samples_path, self.eval_path):
            if resume_step is None:
                path.unlink(missing_ok=True)
            else:
                _truncate_after(path, resume_step)
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.dir / "tensorboard"), purge_step=None if resume_step is None else resume_step + 1)
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
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps({"step": step, **{k: _json_number(v) for k, v in values.items()}}) + "\n")
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
        with open(self.samples_path, "a") as handle:
            for sample in samples:
                handle.write(json.dumps({"step": step, **sample}) + "\n")

    def log_eval(self, step: int, results: dict[str, dict[str, float]]) -> None:
        if not self.enabled:
            return
        with open(self.eval_path, "a") as handle:
            handle.write(json.dumps({"step": step, "results": results}) + "\n")
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


def _truncate_after(path: Path, step: int) -> None:
    """Keep the lines of ``path`` whose ``step`` is at most ``step``."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in kept))


def read_metrics(output_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of a run's ``metrics.jsonl``."""
    path = Path(output_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
