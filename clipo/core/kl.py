"""Per-token KL estimators between the policy and a reference (docs/algorithms.md#kl-estimators).

Tokens are sampled from the policy, so with ``δ = logp − ref_logp`` each estimator is an (approximately)
unbiased per-token estimate of ``KL(π ‖ π_ref)`` (Schulman's k1, k2, k3).
"""
from __future__ import annotations

import torch
from torch import Tensor

# Canonical names and verl's aliases for them.
_ALIASES = {"k1": "k1", "kl": "k1", "abs": "abs", "k2": "k2", "mse": "k2", "k3": "k3", "low_var_kl": "k3"}
KL_KINDS: tuple[str, ...] = tuple(_ALIASES) + tuple(f"{name}+" for name in _ALIASES)


def _estimate(delta: Tensor, kind: str) -> Tensor:
    if kind == "k1":
        return delta
    if kind == "abs":
        return delta.abs()
    if kind == "k2":
        return 0.5 * delta.square()
    # k3 = π_ref/π − log(π_ref/π) − 1 ≥ 0, with verl's clamps: the log-ratio to ±20 and the value to ±10.
    log_ratio = torch.clamp(-delta, min=-20.0, max=20.0)
    return torch.clamp(torch.exp(log_ratio) - log_ratio - 1.0, min=-10.0, max=10.0)


def kl_estimate(logp: Tensor, ref_logp: Tensor, kind: str = "k3") -> Tensor:
    """Per-token KL estimate ``[N, L]`` from sampled-token log-probs ``logp`` and ``ref_logp`` (``[N, L]``).

    With ``δ = logp − ref_logp``::

        k1  ("kl")          : δ
        abs                 : |δ|
        k2  ("mse")         : ½ δ²
        k3  ("low_var_kl")  : x = clamp(−δ, −20, 20);  clamp(eˣ − x − 1, −10, 10)
        X+  (e.g. "k3+")    : the value of X with the gradient of k2 (straight-through):
                              k2 − sg(k2) + sg(X)

    verl passes the "+" name unstripped to its forward and raises NotImplementedError; clipo strips it.
    Reduce the result with :func:`clipo.aggregate` and the loss's aggregation mode.
    """
    straight_through = kind.endswith("+")
    base = _ALIASES.get(kind[:-1] if straight_through else kind)
    if base is None:
        raise ValueError(f"kl_estimate: unknown kind {kind!r}; choose one of {', '.join(KL_KINDS)}")
    delta = logp - ref_logp
    value = _estimate(delta, base)
    if not straight_through:
        return value
    k2 = _estimate(delta, "k2")
    return k2 - k2.detach() + value.detach()
