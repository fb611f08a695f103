"""Masked reductions and loss aggregation.

Every policy loss in clipo first computes a per-token loss ``L`` of shape ``[N, L]`` (N rollouts, L padded
response tokens) and then reduces it with :func:`aggregate`. The reduction is where GRPO, DAPO and Dr. GRPO
differ, so each mode is spelled out here with its formula (``docs/algorithms.md#aggregation-modes``).

Notation: ``m[i, t]`` is the response mask (1 on valid tokens), ``n_i = Σ_t m[i, t]`` the length of rollout
``i`` and ``v_i = [n_i > 0]`` marks non-empty rollouts.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

AggregationMode = Literal[
    "token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-mean",
    "seq-mean-token-sum-norm",
    "seq-mean-token-sum-constlen",
]
AGGREGATION_MODES: tuple[str, ...] = (
    "token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-mean",
    "seq-mean-token-sum-norm",
    "seq-mean-token-sum-constlen",
)

# verl's guard against empty denominators; part of the reference values (docs/algorithms.md#aggregation-modes).
_EPS = 1e-8


def masked_sum(values: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """``Σ values·mask`` over ``dim`` (all elements when ``dim`` is None)."""
    # where() rather than a product: a NaN or inf at a padded position must not leak into the sum.
    product = torch.where(mask.bool(), values, torch.zeros_like(values))
    return product.sum() if dim is None else product.sum(dim)


def masked_mean(values: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """``Σ values·mask / (Σ mask + 1e-8)``: verl's masked mean, 0 for an all-masked input."""
    count = mask.sum() if dim is None else mask.sum(dim)
    return masked_sum(values, mask, dim) / (count + _EPS)


def aggregate(
    values: Tensor,
    mask: Tensor,
    mode: str = "token-mean",
    *,
    norm_len: float | None = None,
    global_count: float | Tensor | None = None,
) -> Tensor:
    """Reduce a per-token loss ``values [N, L]`` with the response ``mask [N, L]`` to a scalar.

    Modes (``n_i = Σ_t m[i,t]``, ``v_i = [n_i > 0]``, ``T = mask.shape[-1]``, ``N`` rows):

    ======================================  ===========================================================
    ``token-mean`` (DAPO, verl default)     ``Σ_{i,t} L·m / (Σ_{i,t} m + 1e-8)``
    ``seq-mean-token-sum``                  ``Σ_i v_i Σ_t L·m / (Σ_i v_i + 1e-8)``
    ``seq-mean-token-mean`` (GRPO paper)    ``Σ_i v_i [Σ_t L·m / (n_i + 1e-8)] / (Σ_i v_i + 1e-8)``
    ``seq-mean-token-sum-norm`` (verl)      ``Σ_i Σ_t L·m / T``  — verl's Dr. GRPO mode: the padded
                                            length ``T`` (or ``norm_len`` when given), and no ``1/N``
    ``seq-mean-token-sum-constlen``         ``(1/N) Σ_i Σ_t L·m / norm_len`` — Dr. GRPO as its authors
                                            wrote it: a constant length (their max generation length)
                                            and a mean over all rows
    ======================================  ===========================================================

    Args:
        values: per-token loss ``[N, L]``; values at masked positions are ignored, even NaN or inf.
        mask: ``[N, L]``, 1 on valid tokens, 0 on padding (bool or float).
        mode: one of :data:`AGGREGATION_MODES`.
        norm_len: the constant length of ``seq-mean-token-sum-constlen`` (required there); for
            ``seq-mean-token-sum-norm`` it replaces the padded length ``T`` (verl's ``loss_scale_factor``).
        global_count: when a batch is split into micro-batches or across ranks, the denominator of the whole
            batch — its token count for ``token-mean``, its count of non-empty rows for the ``seq-mean-token-
            sum``/``-mean`` modes, its row count for ``-constlen``. Summing the results of all parts then gives
            exactly the loss of the whole batch. It replaces the local count (and its ``1e-8``).

    Returns:
        A scalar tensor (differentiable in ``values``).
    """
    # Zero the padded positions explicitly: a NaN or inf there must not leak through ``values * 0``.
    values = torch.where(mask.bool(), values, torch.zeros_like(values))
    mask = mask.to(values.dtype)
    if mode == "token-mean":
        denominator = mask.sum() + _EPS if global_count is None else global_count
        return values.sum() / denominator
    if mode in ("seq-mean-token-sum", "seq-mean-token-mean"):
        lengths = mask.sum(-1)
        non_empty = (lengths > 0).to(values.dtype)
        per_sequence = values.sum(-1)
        if mode == "seq-mean-token-mean":
            per_sequence = per_sequence / (lengths + _EPS)
        denominator = non_empty.sum() + _EPS if global_count is None else global_count
        return (per_sequence * non_empty).sum() / denominator
    if mode == "seq-mean-token-sum-norm":
        if global_count is not None:
            raise ValueError("aggregate: 'seq-mean-token-sum-norm' sums over rows (verl); global_count does not apply")
        length = mask.shape[-1] if norm_len is None else norm_len
        return values.sum() / length
    if mode == "seq-mean-token-sum-constlen":
        if norm_len is None or norm_len <= 0:
            raise ValueError(
                "aggregate: mode 'seq-mean-token-sum-constlen' needs norm_len > 0 (Dr. GRPO divides every "
                "sequence's token sum by a constant, usually the max generation length)"
            )
        rows = max(values.shape[0], 1) if global_count is None else global_count
        return values.sum() / norm_len / rows
    raise ValueError(f"aggregate: unknown mode {mode!r}; choose one of {', '.join(AGGREGATION_MODES)}")
