"""The run folder: the one place that names the files a training run writes and defines what is in them.

A run folder is ``trainer.output_dir``. The trainer, :class:`clipo.training.tracking.MetricsLogger`,
:mod:`clipo.training.checkpoint` and the demo write it; the report (``clipo report``), resume and
:func:`clipo.training.tracking.read_metrics` read it. All of them go through :class:`RunFolder` and the
helpers below, so a file name or a record shape is spelled here and nowhere else (docs/architecture.md)::

    run.json                    the run's identity: {"run_id", "started", "host", "pid", "config_hash"}
    .lock                       flock-ed by the training process for the whole fit (one run per folder at a time)
    config.yaml                 the resolved config (clipo.training.config.save_config)
    metrics.jsonl               one MetricsRow per step:   {"step": int, "<group>/<metric>": float | null, ...}
    samples.jsonl               SampleRecord lines:        {"step", "group", "prompt", "ground_truth", "response", ...}
    eval.jsonl                  one EvalRecord per eval:   {"step": int, "results": {dataset: {metric: value}}}
    eval_problems.jsonl         one EvalProblemRecord per problem and eval: {"step", "set", "problem", "index", "correct", "n", "score"}
    summary.json                free-form JSON object (the demo: X_before / X_after, timings), indent 2
    embeddings/step_XXXXXX.pt   an EmbeddingSnapshot (torch.save of a dict of tensors), see SNAPSHOT_KEYS
    checkpoints/step_XXXXXX/    policy/ (save_pretrained), head/, trainer_state.pt, run_id (the run that wrote it)
    checkpoints/latest          text file naming the newest complete checkpoint folder
    final/                      the trained policy and tokenizer (save_pretrained); final/contrastive_head/
    tensorboard/                TensorBoard event files
    report/                     what ``clipo report`` writes (report.md and PNGs)
    final/eval_results.json     what ``clipo eval RUN_DIR`` writes: {dataset: {metric: value}}; beside it samples.jsonl
                                (its scored completions) and eval_problems.jsonl (see eval_output_files)

Why one owner: the format is a contract between a writer that runs for hours and readers that run later or
alongside it (the report can be made while training runs). Writes that replace a whole file (summary, the
``latest`` pointer, a snapshot, a truncated JSONL on resume) go to a temporary file that is then renamed with
``os.replace``, so a reader or a crash never sees half a file; JSONL files are appended line by line and
their readers can skip a half-written last line.

Torch is the only heavy import (for the ``.pt`` snapshots); this module imports nothing else from clipo.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import torch

__all__ = [
    "RunFolder", "MetricsRow", "SampleRecord", "EvalRecord", "EmbeddingSnapshot", "SNAPSHOT_KEYS",
    "CHECKPOINT_POLICY", "CHECKPOINT_SHARDED", "CHECKPOINT_HEAD", "CHECKPOINT_STATE", "LATEST", "FINAL_HEAD",
    "CHECKPOINT_RUN_ID", "read_jsonl", "append_jsonl", "truncate_jsonl", "write_text_atomic", "step_of",
    "EvalProblemRecord", "EVAL_PROBLEMS", "EVAL_RESULTS", "eval_output_files",
]

# ---------------------------------------------------------------------------------------------- names

RUN_INFO = "run.json"
LOCK = ".lock"
CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
SAMPLES = "samples.jsonl"
EVALS = "eval.jsonl"
EVAL_PROBLEMS = "eval_problems.jsonl"
#: What ``clipo eval`` writes when not told where: RUN_DIR/final/eval_results.json, else ./eval_results.json.
EVAL_RESULTS = "eval_results.json"
SUMMARY = "summary.json"
EMBEDDINGS = "embeddings"
CHECKPOINTS = "checkpoints"
FINAL = "final"
TENSORBOARD = "tensorboard"
REPORT = "report"

#: Inside ``checkpoints/``: the file naming the newest complete checkpoint.
LATEST = "latest"
#: Inside a checkpoint folder: the policy (save_pretrained + tokenizer), the contrastive head, the trainer state.
CHECKPOINT_POLICY = "policy"
#: FSDP runs: the sharded policy and optimizer state (torch.distributed.checkpoint), instead of policy/ and the
#: optimizer entry of trainer_state.pt.
CHECKPOINT_SHARDED = "sharded"
CHECKPOINT_HEAD = "head"
CHECKPOINT_STATE = "trainer_state.pt"
#: Inside a checkpoint folder: the id of the run that wrote it (pruning deletes only the current run's).
CHECKPOINT_RUN_ID = "run_id"
#: Inside ``final/``: the trained contrastive head (CLIPO on).
FINAL_HEAD = "contrastive_head"

_STEP_PREFIX = "step_"
_CHECKPOINT_TMP_PREFIX = ".tmp_step_"
#: What write_text_atomic names its temporary files: ``.<name>.tmp<pid>``.
_ATOMIC_TMP = ".{name}.tmp"


def _step_name(step: int) -> str:
    """``step_000042``: the name of a step's snapshot (``.pt``) and checkpoint folder; sorts by step."""
    return f"{_STEP_PREFIX}{int(step):06d}"


def step_of(path: str | Path) -> int | None:
    """The step a ``step_XXXXXX`` file or folder name encodes (None when the name has no digits)."""
    digits = "".join(ch for ch in Path(path).stem if ch.isdigit())
    return int(digits) if digits else None


# ---------------------------------------------------------------------------------------------- record shapes

#: One line of ``metrics.jsonl``: ``{"step": int, <metric>: float | None, ...}``. Metric keys are
#: ``<group>/<name>`` (``reward/mean``, ``actor/kl``, ``contrastive/loss``, ``task/...``); a non-finite value is
#: written as ``null``. Lines are in step order; after a resume no step appears twice (see truncate_jsonl).
MetricsRow = dict[str, int | float | None]


class SampleRecord(TypedDict, total=False):
    """One line of ``samples.jsonl``: a logged rollout (``trainer.log_samples`` per step)."""

    step: int
    group: int                  # the rollout's group (prompt) id within the step
    prompt: str
    ground_truth: str
    response: str
    score: float                # verifier score
    contrastive_reward: float
    advantage: float


class EvalRecord(TypedDict):
    """One line of ``eval.jsonl``: ``{"step", "results": {dataset: {metric: value}}}``.

    A dataset's metrics are those of :meth:`clipo.training.evaluation.EvalResult.as_dict`: ``accuracy`` (greedy) or
    ``avg@k`` / ``pass@k`` (sampled), ``num_prompts``, ``samples_per_prompt``, ...
    """

    step: int
    results: dict[str, dict[str, Any]]


class EvalProblemRecord(TypedDict):
    """One line of ``eval_problems.jsonl``: one problem of one eval set at one evaluation.

    ``score`` is ``correct / n``, the problem's share of correct samples (0 or 1 for greedy pass@1), so the mean of
    a set's scores is its ``accuracy`` in ``eval.jsonl``. ``problem`` is the 0-based position in the evaluated
    list (after ``data.max_eval_examples``), ``index`` the row in the source file. ``step`` is the training step
    (None for ``clipo eval``, which scores one model). A resumed run may write a step's evaluation again: readers
    keep the last line of each (step, set, problem).
    """

    step: int | None
    set: str
    problem: int
    index: int
    correct: int
    n: int
    score: float


class EmbeddingSnapshot(TypedDict, total=False):
    """The dict saved in ``embeddings/step_XXXXXX.pt`` (N rollouts of one step, H hidden size, D head size).

    ``z`` is present only when CLIPO is on. ``extras`` holds per-rollout [N] values added by a rollout_metrics
    hook (the demo's ``process_ok``). Everything is a tensor (or an int / a dict of tensors), so the file loads
    with ``torch.load(weights_only=True)``.
    """

    step: int
    pooled: torch.Tensor            # [N, H] float16, pooled last-layer hidden states
    z: torch.Tensor                 # [N, D] head outputs (CLIPO on)
    correct: torch.Tensor           # [N] bool
    group_ids: torch.Tensor         # [N] int
    contrastive_reward: torch.Tensor  # [N] float
    extras: dict[str, torch.Tensor]   # name -> [N]


#: The keys of an :class:`EmbeddingSnapshot`, in the order the trainer writes them.
SNAPSHOT_KEYS = ("step", "pooled", "correct", "group_ids", "contrastive_reward", "extras", "z")


# ---------------------------------------------------------------------------------------------- the folder


@dataclass(frozen=True)
class RunFolder:
    """Paths of one run folder, and the readers and writers of its whole-file parts.

    Nothing is created on construction; writers create the folders they need.
    """

    root: Path

    def __init__(self, root: str | os.PathLike[str]):
        object.__setattr__(self, "root", Path(root))

    def __fspath__(self) -> str:
        return os.fspath(self.root)

    # -- files at the top
    @property
    def run_info(self) -> Path:
        return self.root / RUN_INFO

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def samples(self) -> Path:
        return self.root / SAMPLES

    @property
    def evals(self) -> Path:
        return self.root / EVALS

    @property
    def eval_problems(self) -> Path:
        return self.root / EVAL_PROBLEMS

    @property
    def final_eval_results(self) -> Path:
        """Where ``clipo eval RUN_DIR`` writes its results (its per-problem file: see eval_output_files)."""
        return self.final / EVAL_RESULTS

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY

    @property
    def tensorboard(self) -> Path:
        return self.root / TENSORBOARD

    @property
    def report(self) -> Path:
        return self.root / REPORT

    @property
    def final(self) -> Path:
        return self.root / FINAL

    @property
    def final_head(self) -> Path:
        return self.final / FINAL_HEAD

    @property
    def jsonl_logs(self) -> tuple[Path, Path, Path, Path]:
        """The per-step logs (metrics, samples, evals, per-problem eval scores): cleared on a fresh start, cut back
        to the checkpoint on resume."""
        return self.metrics, self.samples, self.evals, self.eval_problems

    # -- embedding snapshots
    @property
    def embeddings_dir(self) -> Path:
        return self.root / EMBEDDINGS

    def embedding_snapshot(self, step: int) -> Path:
        return self.embeddings_dir / f"{_step_name(step)}.pt"

    def embedding_snapshots(self) -> list[Path]:
        """The snapshot files present, sorted by name (= by step)."""
        folder = self.embeddings_dir
        return sorted(folder.glob(f"{_STEP_PREFIX}*.pt")) if folder.is_dir() else []

    def write_snapshot(self, snapshot: EmbeddingSnapshot) -> Path:
        """Save ``snapshot`` as ``embeddings/step_XXXXXX.pt`` (its ``step``), atomically; return the path."""
        path = self.embedding_snapshot(int(snapshot["step"]))
        path.parent.mkdir(parents=True, exist_ok=True)
        # The temporary file keeps the final stem, so the archive inside the zip is named as before.
        tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}")
        try:
            torch.save(dict(snapshot), tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @staticmethod
    def read_snapshot(path: str | Path) -> EmbeddingSnapshot:
        """Load a snapshot on the CPU with ``weights_only=True``; ValueError when it holds no embeddings."""
        data = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(data, dict) or (data.get("z") is None and data.get("pooled") is None):
            raise ValueError("not an embedding snapshot (no 'z' or 'pooled')")
        return data  # type: ignore[return-value]

    # -- checkpoints
    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def latest_pointer(self) -> Path:
        return self.checkpoints / LATEST

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / _step_name(step)

    def checkpoint_tmp(self, step: int) -> Path:
        """Where checkpoint ``step`` is assembled before it is renamed into place (hidden, per process)."""
        return self.checkpoints / f"{_CHECKPOINT_TMP_PREFIX}{int(step):06d}_{os.getpid()}"

    def checkpoint_folders(self) -> list[Path]:
        """Every ``step_XXXXXX`` checkpoint folder, oldest first (complete or not: see is_complete_checkpoint)."""
        root = self.checkpoints
        return sorted(p for p in root.glob(f"{_STEP_PREFIX}*") if p.is_dir()) if root.is_dir() else []

    def stale_checkpoint_tmps(self) -> list[Path]:
        """Temporary checkpoint folders left by a run killed while saving."""
        root = self.checkpoints
        return sorted(root.glob(f"{_CHECKPOINT_TMP_PREFIX}*")) if root.is_dir() else []

    def stale_latest_tmps(self) -> list[Path]:
        """Temporary ``latest`` pointers (``.latest.tmp<pid>``) left by a run killed while writing one."""
        root = self.checkpoints
        return sorted(root.glob(_ATOMIC_TMP.format(name=LATEST) + "*")) if root.is_dir() else []

    def stale_run_info_tmps(self) -> list[Path]:
        """Temporary ``run.json`` files (``.run.json.tmp<pid>``) left by a run killed while writing one."""
        return sorted(self.root.glob(_ATOMIC_TMP.format(name=RUN_INFO) + "*")) if self.root.is_dir() else []

    @staticmethod
    def is_complete_checkpoint(folder: Path) -> bool:
        return (folder / CHECKPOINT_STATE).is_file()

    @staticmethod
    def checkpoint_run_id(folder: Path) -> str | None:
        """The id of the run that wrote checkpoint ``folder`` (None for a checkpoint written before run ids)."""
        path = folder / CHECKPOINT_RUN_ID
        return path.read_text(encoding="utf-8").strip() if path.is_file() else None

    @staticmethod
    def write_checkpoint_run_id(folder: Path, run_id: str) -> None:
        (folder / CHECKPOINT_RUN_ID).write_text(run_id, encoding="utf-8")

    # -- run identity
    def read_run_info(self) -> dict[str, Any] | None:
        """``run.json`` as a dict (None when absent or unreadable)."""
        try:
            loaded = json.loads(self.run_info.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return loaded if isinstance(loaded, dict) else None

    def write_run_info(self, info: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.run_info, json.dumps(info, indent=2))

    def previous_run_files(self) -> list[Path]:
        """The files that show another run used this folder: run.json, metrics.jsonl, checkpoint folders."""
        found = [p for p in (self.run_info, self.metrics) if p.exists()]
        if self.checkpoint_folders():
            found.append(self.checkpoints)
        return found

    def clear_run(self) -> None:
        """Delete every file and folder a run writes here (for ``trainer.overwrite``); other files are kept."""
        for path in (self.run_info, self.config, *self.jsonl_logs, self.summary, self.embeddings_dir,
                     self.checkpoints, self.final, self.tensorboard, self.report):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    # -- summary.json
    def write_summary(self, summary: dict[str, Any]) -> Path:
        """Write ``summary.json`` (indented JSON, as the demo always wrote it) atomically; return its path."""
        self.root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.summary, json.dumps(summary, indent=2))
        return self.summary

    def read_summary(self) -> dict[str, Any]:
        """``summary.json`` as a dict ({} when absent; a non-object is wrapped as ``{"value": ...}``)."""
        if not self.summary.is_file():
            return {}
        loaded = json.loads(self.summary.read_text())
        return loaded if isinstance(loaded, dict) else {"value": loaded}


# ---------------------------------------------------------------------------------------------- clipo eval output


def eval_output_files(output: str | Path) -> tuple[Path, Path]:
    """The scored completions and the per-problem scores that ``clipo eval`` writes beside its results ``output``.

    ``.../eval_results.json`` -> ``.../samples.jsonl``, ``.../eval_problems.jsonl``; any other name ``X.json`` ->
    ``X.samples.jsonl``, ``X.eval_problems.jsonl`` (so several outputs can share a folder).
    """
    output = Path(output)
    if output.name == EVAL_RESULTS:
        return output.with_name(SAMPLES), output.with_name(EVAL_PROBLEMS)
    return output.with_name(f"{output.stem}.{SAMPLES}"), output.with_name(f"{output.stem}.{EVAL_PROBLEMS}")


# ---------------------------------------------------------------------------------------------- file helpers


def write_text_atomic(path: str | Path, text: str, *, fsync: bool = True) -> None:
    """Replace ``path`` by ``text`` through a hidden temporary file and ``os.replace``: readers and crashes see
    the old file or the new one, never a mix."""
    path = Path(path)
    tmp = path.with_name(_ATOMIC_TMP.format(name=path.name) + str(os.getpid()))
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def append_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Append one ``json.dumps`` line per record (the file is created when missing)."""
    lines = "".join(json.dumps(record) + "\n" for record in records)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(lines)


def read_jsonl(path: str | Path, *, skipped: list[int] | None = None) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, one per non-blank line ([] when the file is missing).

    A line that is not a JSON object raises ``ValueError``; when ``skipped`` is given it is skipped instead and its
    1-based line number appended there (e.g. the half-written last line of a killed run). ``NaN`` literals parse.
    """
    path = Path(path)
    if not path.is_file():
        return []
    rows: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                if skipped is None:
                    raise ValueError(f"{path}:{number}: not JSON: {error}") from error
                skipped.append(number)
                continue
            if isinstance(row, dict):
                rows.append(row)
            elif skipped is None:
                raise ValueError(f"{path}:{number}: not a JSON object")
            else:
                skipped.append(number)
    return rows


def truncate_jsonl(path: str | Path, last_step: int) -> None:
    """Keep the lines of ``path`` whose ``step`` is at most ``last_step`` (atomically; kept lines unchanged).

    Used on resume: lines written by the killed run after its last checkpoint are dropped, so the file reads
    as one uninterrupted run. A line without ``step`` counts as step 0; an unreadable line (a half-written
    last line) is dropped.
    """
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        step = row.get("step", 0) if isinstance(row, dict) else None
        if isinstance(step, (int, float)) and step <= last_step:
            kept.append(line + "\n")
    write_text_atomic(path, "".join(kept), fsync=False)
