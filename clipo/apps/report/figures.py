"""The report's PNG figures, one function per figure: ``(RunData, path) -> path``, or None when there is
nothing to draw (CLIPO off: no contrastive figure; no snapshots: no projection; ...).

Plotting uses matplotlib's object API with the Agg canvas (no pyplot, no global backend switch), so it is safe
to call from a notebook or a training process; matplotlib is imported inside the functions because it is heavy
and only the figures need it (docs/architecture.md). Per-step curves are drawn raw (faint) with a centred
moving average on top.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from clipo.apps.report.numerics import (
    max_abs,
    moving_average,
    pca_2d,
    smoothing_window,
    snapshot_separation,
    subsample,
    to_float,
)
from clipo.apps.report.read import RunData, eval_metric_name

__all__ = ["FIGURE_BUILDERS", "FIGURE_CAPTIONS", "FIGURE_TITLES", "HEALTH_PANELS"]

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
    "embedding_diagnostics": "Embedding diagnostics (the official CLIPO run's pair statistics)",
}

#: One line under a figure in ``report.md``, for figures whose keys need explaining.
FIGURE_CAPTIONS = {
    "embedding_diagnostics": (
        "Mean cosine similarity over pairs of rollouts (i ≠ j): both correct (cc), one correct and one incorrect "
        "(ci), both incorrect (ii); over the whole batch and within each prompt's group; last column: pairs in "
        "the same response-length quartile. Top row: pooled hidden states (`clipo/emb/…`); bottom row: the "
        "head's outputs before its update (`clipo/head/…`). Keys and formulas: "
        "`clipo.core.contrastive.diagnostics`."),
}


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
            key = eval_metric_name(result)
            value = to_float(result.get(key)) if key else math.nan
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


def _fig_pca(run: RunData, path: Path) -> Optional[Path]:
    snaps = subsample(run.snapshots, MAX_PCA_PANELS)
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


def _fig_health(run: RunData, path: Path) -> Optional[Path]:
    panels = []
    for title, ylabel, series, zero_based, log_ok in HEALTH_PANELS:
        present = [(k, lbl) for k, lbl in series if run.has(k)]
        if len(present) > 1:
            # A line that stays at ~0 next to a non-zero one (PPO KL with one epoch, ...) says nothing: drop it.
            biggest = max(max_abs(run.metrics[k]) for k, _ in present)
            if biggest > 0:
                present = [(k, lbl) for k, lbl in present if max_abs(run.metrics[k]) > 1e-3 * biggest]
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
        if all(max_abs(a) == 0 for a in arrays):
            ax.text(0.5, 0.5, "all values 0", ha="center", va="center", transform=ax.transAxes, color=GREY, fontsize=10)
        _style(ax, title, ylabel)
        if legend:
            _legend(ax)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    _smoothing_note(fig, run)
    _x_range(axes.flat, run.steps)
    return _save(fig, path)


def _fig_diagnostics(run: RunData, path: Path) -> Optional[Path]:
    """cc / ci / ii mean cosine per step, batch and group level, and by length quartile, for the pooled states
    and the head outputs (``clipo.diagnostics``); None when the run logged none."""
    spaces = [(prefix, label)
              for prefix, label in (("clipo/emb", "pooled hidden states"), ("clipo/head", "head output z"))
              if any(run.has(f"{prefix}/cos_{c}_{s}_mean") for c in ("cc", "ci", "ii") for s in ("batch", "group"))]
    if not spaces:
        return None
    m, steps = run.metrics, run.steps
    fig, axes = _new_figure(len(spaces), 3, width=15.0, height=3.9 * len(spaces),
                            title=FIGURE_TITLES["embedding_diagnostics"])
    pair_styles = (("cc", "correct–correct", GREEN, "-"), ("ci", "correct–incorrect", RED, "--"),
                   ("ii", "incorrect–incorrect", ORANGE, ":"))
    for row, (prefix, label) in enumerate(spaces):
        for col, (scope, scope_label) in enumerate((("batch", "all pairs in the batch"),
                                                    ("group", "pairs within a prompt's group"))):
            ax = axes[row, col]
            for cls, name, color, style in pair_styles:
                _plot_curve(ax, steps, m.get(f"{prefix}/cos_{cls}_{scope}_mean"), name, color, linestyle=style)
            _style(ax, f"{label}: {scope_label}", "mean cosine")
            _legend(ax)
        ax = axes[row, 2]
        for q, color in zip(range(1, 5), (SKY, BLUE, PURPLE, GREY)):
            _plot_curve(ax, steps, m.get(f"{prefix}/cos_lenq{q}_mean"), f"length quartile {q}", color)
        _style(ax, f"{label}: pairs in one length quartile", "mean cosine")
        _legend(ax)
    _smoothing_note(fig, run)
    _x_range(axes.flat, run.steps)
    return _save(fig, path)


#: (figure name, builder) in the order the report draws and lists them.
FIGURE_BUILDERS = [
    ("reward_accuracy", _fig_reward_accuracy),
    ("contrastive", _fig_contrastive),
    ("embedding_separation", _fig_separation),
    ("embedding_diagnostics", _fig_diagnostics),
    ("embeddings_pca", _fig_pca),
    ("training_health", _fig_health),
]
