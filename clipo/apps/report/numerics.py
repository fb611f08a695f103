"""The report's numbers, pure numpy: NaN-aware smoothing, a deterministic 2-D PCA, the within-group cosine
separation of a snapshot, and window means for the first-vs-last table.

Kept apart from the figures so that they can be tested, and reused, without matplotlib (docs/architecture.md).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

__all__ = ["SnapshotLike", "max_abs", "moving_average", "pca_2d", "smoothing_window", "snapshot_separation",
           "subsample", "to_float", "window_mean"]


class SnapshotLike(Protocol):
    """What :func:`snapshot_separation` reads of a :class:`clipo.apps.report.read.Snapshot`."""

    embedding: np.ndarray   # [N, D]
    correct: np.ndarray     # [N] bool
    group_ids: np.ndarray   # [N]


def to_float(value: Any) -> float:
    """A JSON value as a float: None, non-numbers and unparsable strings become NaN."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


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


def snapshot_separation(snap: SnapshotLike) -> tuple[float, float]:
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


def window_mean(values: np.ndarray, sl: slice) -> float:
    """Mean of the finite values of ``values[sl]`` (NaN when there is none): the first-vs-last table's cells."""
    part = values[sl]
    part = part[np.isfinite(part)]
    return float(part.mean()) if part.size else math.nan


def max_abs(values: np.ndarray) -> float:
    """Largest finite |value| (0 when there is none)."""
    finite = values[np.isfinite(values)]
    return float(np.abs(finite).max()) if finite.size else 0.0


def subsample(items: Sequence, k: int) -> list:
    """At most ``k`` items, evenly spaced, first and last kept (the PCA figure's panels)."""
    if len(items) <= k:
        return list(items)
    idx = np.unique(np.round(np.linspace(0, len(items) - 1, k)).astype(int))
    return [items[i] for i in idx]

