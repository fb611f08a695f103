"""Embedding diagnostics of one RL step, the statistics the official CLIPO run logs (``compute_embedding_metrics``
and the head step's per-label loss statistics in its ``ray_trainer.py`` / ``metric_utils.py``).

For a batch of N rollouts the pairs are the unordered pairs {i, j}, i < j (never i = j). Each pair falls into

* a label class: ``cc`` (both correct), ``ci`` (one correct, one incorrect), ``ii`` (both incorrect);
* a scope: ``batch`` (every pair) or ``group`` (both rollouts answer the same prompt, same group id);
* a length quartile ``lenq1`` .. ``lenq4`` when both rollouts lie in the same quartile of response length
  (rollouts ranked by length, ties by index; rank r goes to quartile ⌊(4r + 3) / N⌋ + 1, i.e. ranks
  ⌊(q−1)N/4⌋ .. ⌊qN/4⌋ − 1, as the official ``linspace`` boundaries), whatever their labels.

Over each class's pairs we report mean / max / min of

* ``cos``: cosine similarity ⟨a, b⟩ / (max(‖a‖, ε) · max(‖b‖, ε)), ε = 1e-12, clamped to [−1, 1];
* ``l2``: Euclidean distance ‖a − b‖,

for the pooled hidden states (``clipo/emb/…``) and for the head outputs (``clipo/head/…``), plus the pair
counts (``clipo/pairs/…``), and mean / max / min of the per-rollout contrastive loss and reward split by label
(``clipo/loss/…``, ``clipo/reward/…``). A class with no pair (or no rollout) gives no key at all, never NaN or
the official code's 0.0, so an absent curve is visibly absent. Distances come from a float64 Gram matrix of
the batch-centred rows: pooled states of one prompt are close and share a large common component, where a
float32 ‖a‖² + ‖b‖² − 2⟨a, b⟩ (what ``torch.cdist`` does for large batches) loses about 1e-2 of the distance.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["DIAGNOSTIC_STATS", "embedding_diagnostics", "length_quartiles", "pair_classes", "pair_values"]

DIAGNOSTIC_STATS = ("mean", "max", "min")
_LABEL_CLASSES = ("cc", "ci", "ii")
_QUARTILES = 4


def length_quartiles(lengths: Tensor, buckets: int = _QUARTILES) -> Tensor:
    """Bucket (0 .. buckets−1) of each rollout by response length: ``lengths [N]`` → ``[N]`` int64.

    Rollouts are ranked by (length, index); rank r goes to bucket ⌊(buckets·r + buckets − 1) / N⌋, i.e. bucket b
    holds ranks ⌊bN/buckets⌋ .. ⌊(b+1)N/buckets⌋ − 1, so every bucket holds ⌊N/4⌋ or ⌈N/4⌉ rollouts.
    """
    n = lengths.numel()
    order = torch.sort(lengths.reshape(-1).cpu(), stable=True).indices  # ties keep index order
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n)
    return ((buckets * rank + buckets - 1) // max(n, 1)).to(lengths.device)


def pair_classes(correct: Tensor, group_ids: Tensor, lengths: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """The pairs i < j of N rollouts and which diagnostic classes each pair belongs to.

    correct [N] bool, group_ids [N], lengths [N]. Returns ``(pairs [2, P], {class name: [P] bool})`` with
    P = N(N−1)/2 and class names ``cc_batch``, ``ci_batch``, ``ii_batch``, ``cc_group``, ``ci_group``,
    ``ii_group``, ``lenq1`` .. ``lenq4`` (see the module docstring).
    """
    n = correct.numel()
    device = correct.device
    pairs = torch.triu_indices(n, n, offset=1, device=device)  # [2, P]
    i, j = pairs[0], pairs[1]
    c = correct.bool()
    n_correct = c[i].long() + c[j].long()  # 2: cc, 1: ci, 0: ii
    same_group = group_ids.to(device)[i] == group_ids.to(device)[j]
    classes: dict[str, Tensor] = {}
    for scope, within in (("batch", None), ("group", same_group)):
        for name, k in zip(_LABEL_CLASSES, (2, 1, 0)):
            member = n_correct == k
            classes[f"{name}_{scope}"] = member if within is None else member & within
    bucket = length_quartiles(lengths.to(device))
    for q in range(_QUARTILES):
        classes[f"lenq{q + 1}"] = (bucket[i] == q) & (bucket[j] == q)
    return pairs, classes


def pair_values(x: Tensor, pairs: Tensor) -> dict[str, Tensor]:
    """Cosine similarity and L2 distance of the rows of ``x [N, D]`` for each pair of ``pairs [2, P]``.

    Returns ``{"cos": [P], "l2": [P]}`` in float64 (formulas in the module docstring). One Gram matrix of the
    rows centred on their mean m, C = (x − m)(x − m)ᵀ: ‖a − b‖² = C_aa + C_bb − 2 C_ab has no large common
    component to cancel, and ⟨a, b⟩ = C_ab + u_a + u_b + ‖m‖² with u = (x − m)·m.
    """
    x = x.detach().to(torch.float64)
    mean = x.mean(0)
    xc = x - mean
    centred = xc @ xc.T  # [N, N]
    u = xc @ mean  # [N]
    sq = centred.diagonal()
    i, j = pairs[0], pairs[1]
    c = centred[i, j]
    dot = c + u[i] + u[j] + mean.dot(mean)
    norm = (sq + 2 * u + mean.dot(mean)).clamp(min=0.0).sqrt().clamp(min=1e-12)  # F.normalize's max(‖a‖, ε)
    cos = (dot / (norm[i] * norm[j])).clamp(-1.0, 1.0)
    l2 = (sq[i] + sq[j] - 2.0 * c).clamp(min=0.0).sqrt()
    return {"cos": cos, "l2": l2}


def _class_stats(prefix: str, values: dict[str, Tensor], classes: dict[str, Tensor], counts: dict[str, int],
                 out_keys: list[str], out_values: list[Tensor]) -> None:
    """Append mean/max/min of every non-empty class to ``out_keys``/``out_values`` (one device sync later)."""
    for measure, v in values.items():
        for name, member in classes.items():
            if counts[name] == 0:
                continue
            sel = v[member]
            out_keys += [f"{prefix}/{measure}_{name}_{stat}" for stat in DIAGNOSTIC_STATS]
            out_values += [sel.mean(), sel.max(), sel.min()]


def _label_stats(prefix: str, x: Tensor, correct: Tensor, out_keys: list[str], out_values: list[Tensor]) -> None:
    """mean/max/min of a per-rollout value ``x [N]`` over correct and incorrect rollouts (empty label: no key)."""
    x = x.detach().to(torch.float64)
    c = correct.bool().to(x.device)
    for label, member in (("correct", c), ("incorrect", ~c)):
        if bool(member.any()):
            sel = x[member]
            out_keys += [f"{prefix}/{label}_{stat}" for stat in DIAGNOSTIC_STATS]
            out_values += [sel.mean(), sel.max(), sel.min()]


def embedding_diagnostics(
    hidden: Tensor,
    correct: Tensor,
    group_ids: Tensor,
    lengths: Tensor,
    *,
    head_out: Tensor | None = None,
    losses: Tensor | None = None,
    rewards: Tensor | None = None,
) -> dict[str, float]:
    """The step's embedding diagnostics as a flat ``{name: float}`` (names and formulas: module docstring).

    hidden [N, H] pooled hidden states; correct [N] bool; group_ids [N] (same id = same prompt); lengths [N]
    response lengths in tokens; head_out [N, D] head outputs (None: CLIPO off, no ``clipo/head/…`` keys);
    losses / rewards [N] per-rollout contrastive loss / reward (None: no ``clipo/loss/…`` / ``clipo/reward/…``).
    All inputs on one device; cost is one [N, N] Gram matrix per embedding and O(N²) element-wise work.
    """
    with torch.no_grad():
        pairs, classes = pair_classes(correct, group_ids, lengths)
        counts = dict(zip(classes, torch.stack([m.sum() for m in classes.values()]).tolist()))
        keys: list[str] = []
        values: list[Tensor] = []
        _class_stats("clipo/emb", pair_values(hidden, pairs), classes, counts, keys, values)
        if head_out is not None:
            _class_stats("clipo/head", pair_values(head_out, pairs), classes, counts, keys, values)
        if losses is not None:
            _label_stats("clipo/loss", losses, correct, keys, values)
        if rewards is not None:
            _label_stats("clipo/reward", rewards, correct, keys, values)
        out = {f"clipo/pairs/{name}": float(count) for name, count in counts.items()}
        if values:
            device = values[0].device
            out.update(zip(keys, torch.stack([v.to(device, torch.float64) for v in values]).tolist()))
        return out
