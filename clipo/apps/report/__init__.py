"""``clipo report RUN_DIR``: PNG plots and a Markdown summary of a training run.

Reads what :class:`clipo.training.trainer.RLTrainer` leaves in its run folder and writes ``RUN_DIR/report/``::

    report.md                  config essentials, first-vs-last metric table, eval table, summary.json, figure list
    reward_accuracy.png        reward, train accuracy, eval accuracy per dataset (+ task/* metrics when logged)
    contrastive.png            contrastive loss; contrastive reward of correct vs incorrect rollouts   (CLIPO on)
    embedding_separation.png   within-group cosine correct–correct vs correct–incorrect
    embeddings_pca.png         2-D PCA of the saved rollout embeddings, one panel per snapshot
    training_health.png        response length, truncation, entropy, clip fraction, grad norm, KL, timing

Everything is optional: missing files, absent keys (CLIPO off, no KL) and null/NaN values are skipped, so a
figure or a panel appears only when there is something to draw. Per-step curves are drawn raw (faint) with a
centred moving average on top. Plotting uses matplotlib's object API with the Agg canvas (no pyplot, no global
backend switch), so it is safe to call from a notebook or a training process.

    from clipo.apps.report import make_report
    paths = make_report("runs/clipo")        # -> ReportPaths(markdown=..., figures={...})
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

__all__ = ["ReportPaths", "RunData", "load_run", "make_report", "report_command", "moving_average", "pca_2d"]

DPI = 120
MAX_PCA_PANELS = 12

# Colour-blind-safe (Okabe–Ito) colours.
BLUE, ORANGE, GREEN, RED, PURPLE, SKY, YELLOW, GREY = (
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#555555")
CYCLE = [BLUE, ORANGE, GREEN, RED, PURPLE, SKY, GREY]

FIGURE_TITLES = {
    "reward_accuracy": "Reward and accuracy",
    "contrastive": "Contrastive loss and reward",
    "embedding_separation": "Embedding separation",
    "embeddings_pca": "2-D projection of rollout embeddings",
    "training_health": "Training health",
}


# ---------------------------------------------------------------------------------------------- loading


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

    def has(self, key: str) -> bool:
        values = self.metrics.get(key)
        return values is not None and bool(np.isfinite(values).any())

    def first_present(self, *keys: str) -> Optional[str]:
        return next((k for k in keys if self.has(k)), None)


@dataclass
class ReportPaths:
    """Where :func:`make_report` wrote things. ``figures`` maps a figure name (see ``FIGURE_TITLES``) to its PNG."""

    out_dir: Path
    markdown: Path
    figures: dict[str, Path] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Path]:
        return {"out_dir": self.out_dir, "markdown": self.markdown, **self.figures}


def _to_float(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _read_jsonl(path: Path, notes: list[str]) -> list[dict]:
    rows: list[dict] = []
    bad = 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                bad += 1  # e.g. the half-written last line of a killed run
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                bad += 1
    if bad:
        notes.append(f"`{path.name}`: {bad} unreadable line(s) skipped")
    return rows


def _load_metrics(path: Path, notes: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    by_step: dict[int, dict] = {}
    for row in _read_jsonl(path, notes):
        step = _to_float(row.get("step"))
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
    metrics = {key: np.array([_to_float(by_step[int(s)].get(key)) for s in steps], dtype=np.float64) for key in keys}
    return steps, metrics


def _load_evals(path: Path, notes: list[str]) -> list[tuple[int, dict[str, dict[str, Any]]]]:
    evals = []
    for row in _read_jsonl(path, notes):
        step, results = _to_float(row.get("step")), row.get("results")
        if math.isfinite(step) and isinstance(results, dict):
            evals.append((int(step), {str(k): v for k, v in results.items() if isinstance(v, dict)}))
    evals.sort(key=lambda item: item[0])
    return evals


def _np(tensor: Any) -> np.ndarray:
    import torch

    if isinstance(tensor, torch.Tensor):
        tensor = tensor.detach().cpu()
        if tensor.dtype in (torch.float16, torch.bfloat16):
            tensor = tensor.float()
        return tensor.numpy()
    return np.asarray(tensor)


def _load_snapshot(path: Path) -> Snapshot:
    import torch

    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or (data.get("z") is None and data.get("pooled") is None):
        raise ValueError("not an embedding snapshot (no 'z' or 'pooled')")
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
        step = int("".join(ch for ch in path.stem if ch.isdigit()) or 0)
    return Snapshot(step=int(step), path=path, embedding=emb, source=source, correct=correct,
                    group_ids=groups, contrastive_reward=None if reward is None else _np(reward).reshape(-1),
                    extras=extras)


def load_run(run_dir: str | Path) -> RunData:
    """Read ``metrics.jsonl``, ``eval.jsonl``, ``embeddings/*.pt``, ``config.yaml`` and ``summary.json``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    run = RunData(run_dir=run_dir)
    if (run_dir / "metrics.jsonl").is_file():
        run.steps, run.metrics = _load_metrics(run_dir / "metrics.jsonl", run.notes)
    else:
        run.notes.append("no `metrics.jsonl`: no training curves")
    if (run_dir / "eval.jsonl").is_file():
        run.evals = _load_evals(run_dir / "eval.jsonl", run.notes)
    for path in sorted((run_dir / "embeddings").glob("step_*.pt")) if (run_dir / "embeddings").is_dir() else []:
        try:
            run.snapshots.append(_load_snapshot(path))
        except Exception as error:  # noqa: BLE001 - a bad snapshot must not stop the report
            run.notes.append(f"`embeddings/{path.name}` skipped: {type(error).__name__}: {error}")
    run.snapshots.sort(key=lambda s: s.step)
    if (run_dir / "config.yaml").is_file():
        try:
            import yaml

            loaded = yaml.safe_load((run_dir / "config.yaml").read_text())
            run.config = loaded if isinstance(loaded, dict) else {}
        except Exception as error:  # noqa: BLE001
            run.notes.append(f"`config.yaml` unreadable: {error}")
    if (run_dir / "summary.json").is_file():
        try:
            loaded = json.loads((run_dir / "summary.json").read_text())
            run.summary = loaded if isinstance(loaded, dict) else {"value": loaded}
        except Exception as error:  # noqa: BLE001
            run.notes.append(f"`summary.json` unreadable: {error}")
    return run


# ---------------------------------------------------------------------------------------------- numerics


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average that ignores NaNs (a window with no finite value stays NaN)."""
    values = np.asarray(values, dtype=np.float64)
    if window <= 1 or values.size == 0:
        return values.copy()
    finite = np.isfinite(values)
    filled = np.where(finite, values, 0.0)
    kernel = np.ones(int(window))
    total = np.convolve(filled, kernel, mode="same")
    count = np.convolve(finite.astype(np.float64), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def smoothing_window(n: int) -> int:
    """About 1/15 of the points, odd, between 1 (under 20 points: no smoothing) and 51."""
    if n < 20:
        return 1
    return int(min(51, max(3, (n // 15) | 1)))


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic PCA to 2-D: ``(coords [N, 2], explained_ratio [2])``.

    Centred SVD; each component's sign is fixed so its largest-magnitude loading is positive. Fewer than two
    informative directions are padded with zeros.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    coords = np.zeros((n, 2))
    ratio = np.zeros(2)
    if n < 2 or x.ndim != 2 or x.shape[1] == 0:
        return coords, ratio
    xc = x - x.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    k = min(2, vt.shape[0])
    for i in range(k):
        if vt[i, np.argmax(np.abs(vt[i]))] < 0:
            vt[i] = -vt[i]
    coords[:, :k] = xc @ vt[:k].T
    var = s ** 2
    if var.sum() > 0:
        ratio[:k] = var[:k] / var.sum()
    return coords, ratio


def snapshot_separation(snap: Snapshot) -> tuple[float, float]:
    """Within-group mean cosine of correct–correct and correct–incorrect pairs (as the trainer logs them)."""
    z = snap.embedding.astype(np.float64)
    z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    cos = z @ z.T
    same = snap.group_ids[:, None] == snap.group_ids[None, :]
    c = snap.correct
    both = same & ~np.eye(len(c), dtype=bool) & c[:, None] & c[None, :]
    mixed = same & c[:, None] & ~c[None, :]
    cc = float(cos[both].mean()) if both.any() else math.nan
    ci = float(cos[mixed].mean()) if mixed.any() else math.nan
    return cc, ci


def _window_mean(values: np.ndarray, sl: slice) -> float:
    part = values[sl]
    part = part[np.isfinite(part)]
    return float(part.mean()) if part.size else math.nan


# ---------------------------------------------------------------------------------------------- plotting


def _new_figure(nrows: int, ncols: int, *, width: float, height: float, title: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    fig.suptitle(title, fontsize=13, fontweight="bold")
    return fig, axes


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, facecolor="white", metadata={"Software": None})
    return path


def _style(ax, title: str, ylabel: str, xlabel: str = "step") -> None:
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3, linewidth=0.6)


def _legend(ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=8, loc="best", framealpha=0.8)


def _plot_curve(ax, steps: np.ndarray, values: Optional[np.ndarray], label: str, color: str,
                linestyle: str = "-") -> bool:
    """Faint raw values plus a centred moving average; NaN points are dropped. False when nothing finite.

    The window is :func:`smoothing_window` of the run's step count (the same for every curve of a run), capped
    for series logged at only some steps."""
    if values is None:
        return False
    mask = np.isfinite(values)
    if not mask.any():
        return False
    x, y = steps[mask], values[mask]
    window = min(smoothing_window(len(steps)), smoothing_window(len(y)))
    if len(y) == 1:
        ax.plot(x, y, marker="o", color=color, linestyle="none", label=label)
    elif window == 1:
        ax.plot(x, y, color=color, linestyle=linestyle, marker="o", markersize=3, linewidth=1.4, label=label)
    else:
        ax.plot(x, y, color=color, alpha=0.22, linewidth=0.8)
        ax.plot(x, moving_average(y, window), color=color, linestyle=linestyle, linewidth=1.8, label=label)
    return True


def _x_range(axes: Iterable, *step_arrays: Sequence[float]) -> None:
    """Every per-step panel of a figure spans the whole run, even a key logged at one step only."""
    values = np.concatenate([np.asarray(a, dtype=float) for a in step_arrays if len(a)] or [np.zeros(0)])
    if values.size == 0:
        return
    lo, hi = float(values.min()), float(values.max())
    pad = 0.02 * (hi - lo) if hi > lo else 1.0
    for ax in axes:
        if ax.get_visible():
            ax.set_xlim(lo - pad, hi + pad)


def _smoothing_note(fig, run: RunData) -> None:
    window = smoothing_window(len(run.steps))
    if window > 1:
        fig.supxlabel(f"solid lines: centred moving average over {window} steps; faint lines: per-step values",
                      fontsize=8.5, color=GREY)


def _maybe_log_scale(ax, arrays: Iterable[Optional[np.ndarray]]) -> None:
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays if a is not None] or [np.zeros(0)])
    positive = finite[finite > 0]
    if positive.size and finite.size == positive.size and positive.max() / max(positive.min(), 1e-30) > 50:
        ax.set_yscale("log")


def _eval_metric_name(result: dict[str, Any]) -> Optional[str]:
    if "accuracy" in result:
        return "accuracy"
    for key in result:
        if key.startswith("avg@") or key == "pass@1":
            return key
    return None


def _fig_reward_accuracy(run: RunData, path: Path) -> Optional[Path]:
    m, steps = run.metrics, run.steps
    reward_keys = [(k, lbl) for k, lbl in (("reward/mean", "reward (total)"), ("reward/verifier_mean", "verifier score"))
                   if run.has(k)]
    if run.has("reward/mean") and run.has("reward/verifier_mean") and np.allclose(
            m["reward/mean"], m["reward/verifier_mean"], equal_nan=True):
        reward_keys = reward_keys[:1]
    eval_series: dict[str, list[tuple[int, float]]] = {}
    for step, results in run.evals:
        for name, result in results.items():
            key = _eval_metric_name(result)
            value = _to_float(result.get(key)) if key else math.nan
            if math.isfinite(value):
                eval_series.setdefault(name, []).append((step, value))
    task_keys = [k for k in m if k.startswith("task/") and run.has(k)]
    has_acc = run.has("reward/accuracy") or bool(eval_series)
    panels = [p for p, ok in (("reward", bool(reward_keys)), ("accuracy", has_acc), ("task", bool(task_keys))) if ok]
    if not panels:
        return None
    fig, axes = _new_figure(1, len(panels), width=5.2 * len(panels) + 0.6, height=4.2, title=FIGURE_TITLES["reward_accuracy"])
    for ax, panel in zip(axes[0], panels):
        if panel == "reward":
            for (key, label), color in zip(reward_keys, (BLUE, GREY)):
                _plot_curve(ax, steps, m[key], label, color)
            _style(ax, "Training reward", "reward")
        elif panel == "accuracy":
            _plot_curve(ax, steps, m.get("reward/accuracy"), "train accuracy (rollouts)", BLUE)
            for (name, points), color in zip(sorted(eval_series.items()), CYCLE[1:] * 10):
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="s", markersize=5, linewidth=1.4, linestyle="--", color=color, label=f"eval: {name}")
            ax.set_ylim(-0.03, 1.03)
            _style(ax, "Accuracy", "accuracy")
        else:
            for key, color in zip(task_keys, CYCLE * 10):
                _plot_curve(ax, steps, m[key], key.split("/", 1)[1].replace("_", " "), color)
            _style(ax, "Task metrics", "value")
        _legend(ax)
    _smoothing_note(fig, run)
    _x_range(axes.flat, run.steps, [s for s, _ in run.evals])
    return _save(fig, path)


def _fig_contrastive(run: RunData, path: Path) -> Optional[Path]:
    m, steps = run.metrics, run.steps
    loss_key = run.first_present("contrastive/loss")
    rc = run.first_present("contrastive/reward_correct", "reward/contrastive_correct")
    ri = run.first_present("contrastive/reward_incorrect", "reward/contrastive_incorrect")
    panels = [p for p, ok in (("loss", loss_key is not None), ("reward", rc is not None or ri is not None)) if ok]
    if not panels:
        return None
    fig, axes = _new_figure(1, len(panels), width=5.6 * len(panels) + 0.4, height=4.2, title=FIGURE_TITLES["contrastive"])
    for ax, panel in zip(axes[0], panels):
        if panel == "loss":
            _plot_curve(ax, steps, m[loss_key], "InfoNCE loss", PURPLE)
            if run.has("contrastive/skipped"):
                skipped = steps[np.nan_to_num(m["contrastive/skipped"]) > 0]
                if skipped.size:
                    ax.plot(skipped, np.zeros_like(skipped, dtype=float), linestyle="none", marker="|", markersize=10,
                            color=RED, transform=ax.get_xaxis_transform(), clip_on=False,
                            label=f"head step skipped ({skipped.size})")
            _style(ax, "Contrastive loss", "loss")
            if run.has("contrastive/num_anchors"):
                twin = ax.twinx()
                anchors = m["contrastive/num_anchors"]
                mask = np.isfinite(anchors)
                window = min(smoothing_window(len(steps)), smoothing_window(int(mask.sum())))
                twin.plot(steps[mask], moving_average(anchors[mask], window), color=GREY,
                          linewidth=1.0, linestyle=":", label="valid anchors / step")
                twin.set_ylabel("anchors per step", color=GREY)
                twin.tick_params(axis="y", colors=GREY)
                if mask.any():
                    twin.set_ylim(0, max(float(np.nanmax(anchors)), 1.0) * 1.45)  # keep the line under the legend
                h1, l1 = ax.get_legend_handles_labels()
                h2, l2 = twin.get_legend_handles_labels()
                ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper right", framealpha=0.9)
                continue
        else:
            if rc:
                _plot_curve(ax, steps, m[rc], "correct rollouts", GREEN)
            if ri:
                _plot_curve(ax, steps, m[ri], "incorrect rollouts", RED, linestyle="--")
            ax.axhline(0.0, color="black", linewidth=0.6, alpha=0.5)
            _style(ax, "Contrastive reward (mean per rollout)", "reward")
        _legend(ax)
    _smoothing_note(fig, run)
    _x_range(axes.flat, run.steps)
    return _save(fig, path)


def _fig_separation(run: RunData, path: Path) -> Optional[Path]:
    m, steps = run.metrics, run.steps
    has_metric = run.has("contrastive/cos_correct_correct") or run.has("contrastive/cos_correct_incorrect")
    # Snapshots stand in only when the trainer logged no separation metric (CLIPO off: pooled hidden states).
    snap_points = [] if has_metric else [(s.step, *snapshot_separation(s), s.source) for s in run.snapshots]
    snap_points = [p for p in snap_points if math.isfinite(p[1]) or math.isfinite(p[2])]
    if not has_metric and not snap_points:
        return None
    fig, axes = _new_figure(1, 2, width=11.5, height=4.2, title=FIGURE_TITLES["embedding_separation"])
    ax, gap_ax = axes[0]
    if has_metric:
        cc, ci = m.get("contrastive/cos_correct_correct"), m.get("contrastive/cos_correct_incorrect")
        _plot_curve(ax, steps, cc, "correct–correct", GREEN)
        _plot_curve(ax, steps, ci, "correct–incorrect", RED, linestyle="--")
        if cc is not None and ci is not None:
            _plot_curve(gap_ax, steps, cc - ci, "cos(c,c) − cos(c,i)", BLUE)
        space = "head output z"
    else:
        space = "head output z" if snap_points[0][3] == "z" else "pooled hidden states, from snapshots"
    if snap_points:
        xs = np.array([p[0] for p in snap_points])
        cc_s, ci_s = np.array([p[1] for p in snap_points]), np.array([p[2] for p in snap_points])
        ax.plot(xs, cc_s, linestyle="-", marker="D", markersize=6, color=GREEN, label="correct–correct")
        ax.plot(xs, ci_s, linestyle="--", marker="D", markersize=6, color=RED, label="correct–incorrect")
        gap_ax.plot(xs, cc_s - ci_s, linestyle="-", marker="D", markersize=6, color=BLUE, label="cos(c,c) − cos(c,i)")
    _style(ax, f"Within-group cosine similarity ({space})", "mean cosine")
    gap_ax.axhline(0.0, color="black", linewidth=0.6, alpha=0.5)
    _style(gap_ax, "Separation gap (higher = correct rollouts cluster apart)", "cosine gap")
    _legend(ax)
    _legend(gap_ax)
    if has_metric:
        _smoothing_note(fig, run)
    _x_range(axes.flat, run.steps, [s.step for s in run.snapshots])
    return _save(fig, path)


def _subsample(items: Sequence, k: int) -> list:
    if len(items) <= k:
        return list(items)
    idx = np.unique(np.round(np.linspace(0, len(items) - 1, k)).astype(int))
    return [items[i] for i in idx]


def _fig_pca(run: RunData, path: Path) -> Optional[Path]:
    snaps = _subsample(run.snapshots, MAX_PCA_PANELS)
    if not snaps:
        return None
    from matplotlib.lines import Line2D

    n = len(snaps)
    ncols = min(4, math.ceil(math.sqrt(n)))
    nrows = math.ceil(n / ncols)
    fig, axes = _new_figure(nrows, ncols, width=max(4.6 * ncols, 7.0), height=4.1 * nrows + 0.9,
                            title=FIGURE_TITLES["embeddings_pca"])
    any_process = False
    seen: set[tuple[bool, Optional[bool]]] = set()
    for ax, snap in zip(axes.flat, snaps):
        emb = snap.embedding
        keep = np.isfinite(emb).all(axis=1)
        coords, ratio = pca_2d(emb[keep])
        correct = snap.correct[keep]
        process = snap.extras.get("process_ok")
        if process is not None:
            process = process.astype(bool)[keep]
            any_process = True
        for is_correct, color in ((False, RED), (True, BLUE)):
            sel = correct == is_correct
            if process is None:
                if sel.any():
                    seen.add((is_correct, None))
                ax.scatter(coords[sel, 0], coords[sel, 1], s=22, c=color, alpha=0.75, marker="o" if is_correct else "X",
                           linewidths=0.3, edgecolors="white")
            else:
                for ok, marker in ((True, "o"), (False, "^")):
                    sub = sel & (process == ok)
                    if sub.any():
                        seen.add((is_correct, ok))
                    ax.scatter(coords[sub, 0], coords[sub, 1], s=24, c=color, alpha=0.75, marker=marker,
                               linewidths=0.3, edgecolors="white")
        acc = float(correct.mean()) if correct.size else math.nan
        ax.set_title(f"step {snap.step}  ·  n={int(keep.sum())}  ·  acc {acc:.2f}", fontsize=10)
        ax.set_xlabel(f"PC1 ({ratio[0]:.0%} var)")
        ax.set_ylabel(f"PC2 ({ratio[1]:.0%} var)")
        ax.grid(True, alpha=0.3, linewidth=0.6)
        if keep.sum() < 3:
            ax.text(0.5, 0.8, "too few rollouts for a projection", ha="center", va="center", transform=ax.transAxes,
                    color=GREY)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    src = snaps[0].source
    dims = snaps[0].embedding.shape[1]
    if any_process:
        kinds = [((True, True), BLUE, "o", "correct, process ok"), ((True, False), BLUE, "^", "correct, process wrong"),
                 ((False, True), RED, "o", "incorrect, process ok"), ((False, False), RED, "^", "incorrect, process wrong")]
    else:
        kinds = [((True, None), BLUE, "o", "correct"), ((False, None), RED, "X", "incorrect")]
    handles = [Line2D([], [], color=color, marker=marker, linestyle="none", label=label)
               for key, color, marker, label in kinds if key in seen] or \
              [Line2D([], [], color=GREY, marker="o", linestyle="none", label="no rollouts")]
    what = "head output z" if src == "z" else "pooled hidden states"
    subtitle = f"embedding: {what} ({dims}-d), PCA fitted per snapshot"
    if len(snaps) < len(run.snapshots):
        subtitle += f"; {len(snaps)} of {len(run.snapshots)} snapshots shown"
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9, title=subtitle,
               title_fontsize=9, frameon=False)
    return _save(fig, path)


# (title, y label, [(metric key, legend label)], y axis starts at zero, log scale allowed)
HEALTH_PANELS: list[tuple[str, str, list[tuple[str, str]], bool, bool]] = [
    ("Response length", "tokens", [("response/length_mean", "mean"), ("response/length_max", "max")], True, False),
    ("Truncation and zero-variance groups", "fraction of rollouts / groups",
     [("response/truncated_rate", "truncated rollouts"), ("rollout/zero_variance_groups", "zero-variance groups")], True, False),
    ("Policy entropy", "nats / token", [("actor/entropy", "entropy")], False, False),
    ("PPO clip fraction", "fraction of tokens",
     [("actor/pg_clipfrac", "clipped"), ("actor/pg_clipfrac_lower", "dual-clip (lower)")], True, False),
    ("Gradient norm (before clipping)", "L2 norm",
     [("actor/grad_norm", "policy"), ("contrastive/grad_norm", "contrastive head")], True, True),
    ("KL divergence", "KL", [("actor/kl", "to reference"), ("actor/ppo_kl", "PPO old→new")], False, True),
    ("Policy-gradient loss", "loss", [("actor/pg_loss", "pg loss")], False, False),
    ("Step time", "seconds", [("time/step_s", "step"), ("time/rollout_s", "rollout"), ("time/update_s", "update")], True, False),
    ("Throughput", "tokens / s", [("perf/tokens_per_s", "tokens / s")], True, False),
]


def _max_abs(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.abs(finite).max()) if finite.size else 0.0


def _fig_health(run: RunData, path: Path) -> Optional[Path]:
    panels = []
    for title, ylabel, series, zero_based, log_ok in HEALTH_PANELS:
        present = [(k, lbl) for k, lbl in series if run.has(k)]
        if len(present) > 1:
            # A line that stays at ~0 next to a non-zero one (PPO KL with one epoch, ...) says nothing: drop it.
            biggest = max(_max_abs(run.metrics[k]) for k, _ in present)
            if biggest > 0:
                present = [(k, lbl) for k, lbl in present if _max_abs(run.metrics[k]) > 1e-3 * biggest]
        if present:
            panels.append((title, ylabel, present, zero_based, log_ok, len(series) > 1))
    if not panels:
        return None
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = _new_figure(nrows, ncols, width=5.0 * ncols, height=3.4 * nrows + 0.5, title=FIGURE_TITLES["training_health"])
    for ax, (title, ylabel, series, zero_based, log_ok, legend) in zip(axes.flat, panels):
        for (key, label), color in zip(series, CYCLE):
            _plot_curve(ax, run.steps, run.metrics[key], label, color)
        arrays = [run.metrics[k] for k, _ in series]
        if log_ok:
            _maybe_log_scale(ax, arrays)
        if zero_based and ax.get_yscale() == "linear":
            finite = np.concatenate([a[np.isfinite(a)] for a in arrays])
            if finite.size and finite.min() >= 0:
                top = float(finite.max()) if finite.max() > 0 else 1.0
                ax.set_ylim(-0.03 * top, top * 1.06)  # a zero line stays visible above the axis
        if all(_max_abs(a) == 0 for a in arrays):
            ax.text(0.5, 0.5, "all values 0", ha="center", va="center", transform=ax.transAxes, color=GREY, fontsize=10)
        _style(ax, title, ylabel)
        if legend:
            _legend(ax)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    _smoothing_note(fig, run)
    _x_range(axes.flat, run.steps)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------- markdown

KEY_METRICS = [
    ("reward/mean", "reward (total)"),
    ("reward/accuracy", "train accuracy"),
    ("reward/verifier_mean", "verifier score"),
    ("task/right_answer_wrong_reasoning", "right answer, wrong reasoning"),
    ("contrastive/loss", "contrastive loss"),
    ("contrastive/reward_correct", "contrastive reward (correct)"),
    ("contrastive/reward_incorrect", "contrastive reward (incorrect)"),
    ("contrastive/cos_correct_correct", "cos correct–correct"),
    ("contrastive/cos_correct_incorrect", "cos correct–incorrect"),
    ("contrastive/skipped", "share of head steps skipped"),
    ("actor/entropy", "entropy"),
    ("actor/kl", "KL to reference"),
    ("actor/pg_clipfrac", "clip fraction"),
    ("actor/grad_norm", "grad norm"),
    ("response/length_mean", "response length (tokens)"),
    ("response/truncated_rate", "truncated rate"),
    ("rollout/zero_variance_groups", "zero-variance groups"),
    ("time/step_s", "step time (s)"),
    ("perf/tokens_per_s", "tokens / s"),
]


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _cfg(config: dict, dotted: str, default: Any = None) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _clipo_enabled(run: RunData) -> Optional[bool]:
    enabled = _cfg(run.config, "clipo.enabled")
    if enabled is not None:
        return bool(enabled)
    if any(k.startswith("contrastive/") for k in run.metrics):
        return True
    return None if not run.metrics else False


def _config_rows(run: RunData) -> list[tuple[str, str]]:
    c = run.config
    rows: list[tuple[str, str]] = []
    model = _cfg(c, "model.name_or_path")
    if model is not None:
        extra = [f"dtype {_cfg(c, 'model.dtype')}"] if _cfg(c, "model.dtype") else []
        if _cfg(c, "model.lora_r"):
            extra.append(f"LoRA r={_cfg(c, 'model.lora_r')}")
        rows.append(("model", f"`{model}`" + (f" ({', '.join(extra)})" if extra else "")))
    algo = _cfg(c, "algorithm.name")
    if algo is not None:
        knobs = [f"clip ε {_cfg(c, 'algorithm.eps_low')}/{_cfg(c, 'algorithm.eps_high')}",
                 f"loss agg {_cfg(c, 'algorithm.loss_agg')}"]
        if _cfg(c, "algorithm.kl_coef"):
            knobs.append(f"KL {_cfg(c, 'algorithm.kl_kind')} × {_cfg(c, 'algorithm.kl_coef')}")
        if _cfg(c, "algorithm.entropy_coef"):
            knobs.append(f"entropy coef {_cfg(c, 'algorithm.entropy_coef')}")
        if _cfg(c, "algorithm.dynamic_sampling"):
            knobs.append("dynamic sampling")
        if _cfg(c, "algorithm.overlong_penalty"):
            knobs.append("overlong penalty")
        rows.append(("algorithm", f"**{algo}** (" + ", ".join(str(k) for k in knobs) + ")"))
    enabled = _clipo_enabled(run)
    if enabled:
        keys = [("loss_kind", "loss"), ("level", "level"), ("head_kind", "head"), ("head_size", "head size"),
                ("temperature", "τ"), ("lam", "λ"), ("reward", "reward"), ("distance", "distance"), ("pooling", "pooling"),
                ("head_lr", "head lr"), ("warmup_steps", "warm-up"), ("fixed_head", "fixed head")]
        knobs = [f"{label} {_cfg(c, 'clipo.' + k)}" for k, label in keys if _cfg(c, "clipo." + k) is not None]
        rows.append(("CLIPO", "**on**" + (f" ({', '.join(knobs)})" if knobs else "")))
    elif enabled is False:
        rows.append(("CLIPO", "off" if _cfg(c, "clipo.enabled") is not None else "off (no config; no `contrastive/*` metrics)"))
    steps_logged = len(run.steps)
    max_steps = _cfg(c, "trainer.max_steps")
    if steps_logged or max_steps is not None:
        last = int(run.steps[-1]) if steps_logged else None
        text = f"{steps_logged} logged" + (f" (last step {last})" if last is not None else "")
        if max_steps is not None:
            text += f", max_steps {max_steps}"
        rows.append(("steps", text))
    if run.has("time/step_s"):
        rows.append(("training time", f"{_duration(float(np.nansum(run.metrics['time/step_s'])))} (sum of `time/step_s`)"))
    n, pps = _cfg(c, "rollout.n"), _cfg(c, "trainer.prompts_per_step")
    if n is not None:
        rows.append(("group size", f"{n} rollouts / prompt" + (f", {pps} prompts / step" if pps is not None else "")))
    if _cfg(c, "rollout.max_new_tokens") is not None:
        rows.append(("generation", f"max_new_tokens {_cfg(c, 'rollout.max_new_tokens')}, temperature "
                                   f"{_cfg(c, 'rollout.temperature')}, engine {_cfg(c, 'rollout.engine')}"))
    if _cfg(c, "trainer.lr") is not None:
        rows.append(("optimiser", f"lr {_cfg(c, 'trainer.lr')} ({_cfg(c, 'trainer.lr_schedule')}), "
                                  f"grad clip {_cfg(c, 'trainer.grad_clip')}, seed {_cfg(c, 'trainer.seed')}"))
    if _cfg(c, "reward.verifier") is not None:
        rows.append(("reward", f"`{_cfg(c, 'reward.verifier')}` (mode {_cfg(c, 'reward.mode')})"))
    if _cfg(c, "data.train") is not None:
        ev = _cfg(c, "data.eval") or []
        ev = ev if isinstance(ev, list) else [ev]
        rows.append(("data", f"train `{_cfg(c, 'data.train')}`" + (f"; eval {', '.join(f'`{e}`' for e in ev)}" if ev else "")))
    return rows


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(_flatten(value, name + "."))
        elif isinstance(value, list) and len(value) > 8:
            out.append((name, f"[{len(value)} values]"))
        else:
            out.append((name, value))
    return out


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {s:02d} s" if m else f"{s} s")


def _summary_tables(summary: dict) -> list[str]:
    """``X_before`` / ``X_after`` pairs as one before-after table, everything else as key / value."""
    flat = dict(_flatten(summary))
    pairs, used = [], set()
    for key in flat:
        for before, after in (("_before", "_after"), ("before", "after")):
            if key.endswith(before) and key[: -len(before)] + after in flat:
                other = key[: -len(before)] + after
                name = key[: -len(before)].rstrip("_.") or key
                a, b = _to_float(flat[key]), _to_float(flat[other])
                delta = b - a if math.isfinite(a) and math.isfinite(b) else math.nan
                pairs.append((f"`{name}`", _fmt(flat[key]), _fmt(flat[other]), ("+" if delta > 0 else "") + _fmt(delta)))
                used.update((key, other))
                break
    lines: list[str] = []
    if pairs:
        lines += _table(["metric", "before", "after", "change"], pairs) + [""]
    rest = []
    for key, value in flat.items():
        if key in used:
            continue
        text = _fmt(value)
        number = _to_float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
        if math.isfinite(number) and ("seconds" in key or key.endswith("_s")) and number >= 60:
            text += f" ({_duration(number)})"
        rest.append((f"`{key}`", text))
    if rest:
        lines += _table(["key", "value"], rest) + [""]
    return lines[:-1] if lines and lines[-1] == "" else lines


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _markdown(run: RunData, figures: dict[str, Path], out_dir: Path, elapsed_note: str = "") -> str:
    lines = [f"# Run report: `{run.run_dir.resolve().name}`", "",
             f"Run folder `{run.run_dir}`; generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by `clipo report`.", ""]
    cfg_rows = _config_rows(run)
    if cfg_rows:
        lines += ["## Configuration", ""] + _table(["", ""], [(f"**{k}**", v) for k, v in cfg_rows]) + [""]

    if run.summary:
        lines += ["## Summary (`summary.json`)", ""] + _summary_tables(run.summary) + [""]

    if len(run.steps):
        n = len(run.steps)
        k = max(1, min(10, n // 5))
        first, last = slice(0, k), slice(n - k, n)
        span = lambda sl: (f"step {run.steps[sl][0]}" if k == 1 else f"steps {run.steps[sl][0]}–{run.steps[sl][-1]}")
        known = {key for key, _ in KEY_METRICS}
        extra = [(key, key) for key in run.metrics if key.startswith("task/") and key not in known]
        rows = []
        for key, label in KEY_METRICS + extra:
            if not run.has(key):
                continue
            a, b = _window_mean(run.metrics[key], first), _window_mean(run.metrics[key], last)
            delta = b - a if math.isfinite(a) and math.isfinite(b) else math.nan
            rows.append((f"{label} (`{key}`)", _fmt(a), _fmt(b), ("+" if delta > 0 else "") + _fmt(delta)))
        if rows:
            lines += ["## Training metrics: first vs last", "",
                      f"Mean over the first and last {k} logged step(s) ({span(first)} vs {span(last)}); "
                      "NaN/missing values are ignored.", ""]
            lines += _table(["metric", "first", "last", "change"], rows) + [""]

    if run.evals:
        final_step, final = run.evals[-1]
        first_step, first_results = run.evals[0]
        extra_keys: list[str] = []
        for result in final.values():
            for key, value in result.items():
                if key != "accuracy" and isinstance(value, (int, float)) and not isinstance(value, bool) and key not in extra_keys:
                    extra_keys.append(key)
        header = ["dataset"] + ([f"accuracy @ step {first_step}"] if len(run.evals) > 1 else []) + \
                 [f"accuracy @ step {final_step}"] + extra_keys
        rows = []
        for name, result in final.items():
            metric = _eval_metric_name(result)
            row = [f"`{name}`"]
            if len(run.evals) > 1:
                row.append(_fmt(_to_float(first_results.get(name, {}).get(metric)) if metric else None))
            row.append(_fmt(_to_float(result.get(metric)) if metric else None))
            row += [_fmt(result.get(key)) for key in extra_keys]
            rows.append(row)
        lines += ["## Evaluation", "", f"{len(run.evals)} evaluation(s); final at step {final_step}.", ""]
        lines += _table(header, rows) + [""]

    lines += ["## Figures", ""]
    if figures:
        for name, path in figures.items():
            rel = path.relative_to(out_dir).as_posix() if path.is_relative_to(out_dir) else str(path)
            lines += [f"- [{FIGURE_TITLES[name]}]({rel})"]
        lines += [""]
        for name, path in figures.items():
            rel = path.relative_to(out_dir).as_posix() if path.is_relative_to(out_dir) else str(path)
            lines += [f"### {FIGURE_TITLES[name]}", "", f"![{FIGURE_TITLES[name]}]({rel})", ""]
    else:
        lines += ["No figures: the run folder has no metrics, evaluations or embedding snapshots yet.", ""]
    notes = list(run.notes)
    if _clipo_enabled(run) is False:
        notes.append("CLIPO is off: no contrastive figure" +
                     ("; embedding separation is computed from the saved snapshots" if "embedding_separation" in figures else ""))
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- entry points

FIGURE_BUILDERS = [
    ("reward_accuracy", _fig_reward_accuracy),
    ("contrastive", _fig_contrastive),
    ("embedding_separation", _fig_separation),
    ("embeddings_pca", _fig_pca),
    ("training_health", _fig_health),
]


def make_report(run_dir: str | Path, *, out_dir: str | Path | None = None) -> ReportPaths:
    """Write PNG figures and ``report.md`` for the run in ``run_dir`` into ``out_dir`` (default ``run_dir/report``).

    Figures with nothing to draw are not written (and stale copies from an earlier report are removed).
    A figure that fails to draw is recorded in the Markdown's notes instead of stopping the report.
    Raises FileNotFoundError when ``run_dir`` is missing or holds none of the files a run writes.
    """
    run = load_run(run_dir)
    if not (len(run.steps) or run.evals or run.snapshots or run.config or run.summary):
        raise FileNotFoundError(f"{run_dir} is not a run folder: no metrics.jsonl, eval.jsonl, embeddings/, "
                                "config.yaml or summary.json")
    out = Path(out_dir) if out_dir is not None else run.run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Path] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices and the like
        warnings.filterwarnings("ignore", message=".*tight_layout.*|.*constrained_layout.*")
        for name, builder in FIGURE_BUILDERS:
            path = out / f"{name}.png"
            try:
                written = builder(run, path)
            except Exception as error:  # noqa: BLE001 - one bad figure must not cost the whole report
                run.notes.append(f"figure `{name}` failed: {type(error).__name__}: {error}")
                written = None
            if written is not None:
                figures[name] = written
            elif path.exists():
                path.unlink()
    markdown = out / "report.md"
    markdown.write_text(_markdown(run, figures, out), encoding="utf-8")
    return ReportPaths(out_dir=out, markdown=markdown, figures=figures)


def report_command(run_dir: str | Path, out_dir: str | Path | None = None) -> int:
    """What ``clipo report RUN_DIR [--out DIR]`` runs: prints the written paths; exit code 0, or 2 on a bad folder."""
    try:
        paths = make_report(run_dir, out_dir=out_dir)
    except FileNotFoundError as error:
        print(f"clipo report: {error}", file=sys.stderr)
        return 2
    print(f"clipo report: wrote {paths.markdown}")
    for path in paths.figures.values():
        print(f"  {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="clipo report", description="PNG plots and a Markdown summary of a run folder.")
    parser.add_argument("run_dir", help="run folder (trainer.output_dir)")
    parser.add_argument("--out", default=None, help="output folder (default: RUN_DIR/report)")
    args = parser.parse_args(argv)
    return report_command(args.run_dir, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
