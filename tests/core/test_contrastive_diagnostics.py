"""``clipo.core.contrastive.diagnostics``: every statistic against a naive double loop over pairs in plain Python."""
from __future__ import annotations

import math
import random

import pytest
import torch

from clipo.core.contrastive import embedding_diagnostics, length_quartiles


def _naive_quartiles(lengths: list[int]) -> list[int]:
    """The official bucketing: rank by (length, index), boundaries ⌊bN/4⌋ (its linspace(0, N, 5).long())."""
    n = len(lengths)
    ranked = sorted(range(n), key=lambda i: (lengths[i], i))
    bounds = [b * n // 4 for b in range(5)]
    bucket = [0] * n
    for r, i in enumerate(ranked):
        bucket[i] = next(b for b in range(4) if bounds[b] <= r < bounds[b + 1])
    return bucket


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    na = max(math.sqrt(sum(x * x for x in a)), 1e-12)
    nb = max(math.sqrt(sum(x * x for x in b)), 1e-12)
    return max(-1.0, min(1.0, dot / (na * nb)))


def _l2(a: list[float], b: list[float]) -> float:
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


def _naive(hidden, correct, groups, lengths, head=None, losses=None, rewards=None) -> dict[str, float]:
    n = len(correct)
    bucket = _naive_quartiles(lengths)
    members: dict[str, list[tuple[int, int]]] = {}
    for i in range(n):
        for j in range(i + 1, n):
            label = {2: "cc", 1: "ci", 0: "ii"}[int(correct[i]) + int(correct[j])]
            members.setdefault(f"{label}_batch", []).append((i, j))
            if groups[i] == groups[j]:
                members.setdefault(f"{label}_group", []).append((i, j))
            if bucket[i] == bucket[j]:
                members.setdefault(f"lenq{bucket[i] + 1}", []).append((i, j))
    names = [f"{c}_{s}" for s in ("batch", "group") for c in ("cc", "ci", "ii")] + [f"lenq{q}" for q in range(1, 5)]
    out = {f"clipo/pairs/{name}": float(len(members.get(name, []))) for name in names}
    for prefix, x in (("clipo/emb", hidden), ("clipo/head", head)):
        if x is None:
            continue
        for measure, fn in (("cos", _cos), ("l2", _l2)):
            for name, pairs in members.items():
                vals = [fn(x[i], x[j]) for i, j in pairs]
                out[f"{prefix}/{measure}_{name}_mean"] = sum(vals) / len(vals)
                out[f"{prefix}/{measure}_{name}_max"] = max(vals)
                out[f"{prefix}/{measure}_{name}_min"] = min(vals)
    for prefix, v in (("clipo/loss", losses), ("clipo/reward", rewards)):
        if v is None:
            continue
        for label, want in (("correct", True), ("incorrect", False)):
            vals = [v[i] for i in range(n) if bool(correct[i]) == want]
            if vals:
                out[f"{prefix}/{label}_mean"] = sum(vals) / len(vals)
                out[f"{prefix}/{label}_max"] = max(vals)
                out[f"{prefix}/{label}_min"] = min(vals)
    return out


def _batch(n_groups=4, group_size=5, hidden_dim=7, head_dim=3, seed=0, p_correct=0.5):
    rng = random.Random(seed)
    n = n_groups * group_size
    hidden = [[rng.gauss(0, 1) + 3.0 for _ in range(hidden_dim)] for _ in range(n)]  # shared offset, like real states
    head = []
    for _ in range(n):
        v = [rng.gauss(0, 1) for _ in range(head_dim)]
        norm = math.sqrt(sum(x * x for x in v))
        head.append([x / norm for x in v])
    correct = [rng.random() < p_correct for _ in range(n)]
    groups = [i // group_size for i in range(n)]
    lengths = [rng.randint(1, 12) for _ in range(n)]  # ties on purpose
    losses = [rng.uniform(0, 3) if c else 0.0 for c in correct]
    rewards = [rng.uniform(-0.5, 0) for _ in range(n)]
    return hidden, correct, groups, lengths, head, losses, rewards


def _run(hidden, correct, groups, lengths, head=None, losses=None, rewards=None):
    t = lambda x, dtype=torch.float32: None if x is None else torch.tensor(x, dtype=dtype)  # noqa: E731
    return embedding_diagnostics(t(hidden), t(correct, torch.bool), t(groups, torch.long), t(lengths, torch.long),
                                 head_out=t(head), losses=t(losses), rewards=t(rewards))


def _assert_same(got: dict[str, float], want: dict[str, float]) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        assert isinstance(got[key], float) and math.isfinite(got[key]), key
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-5), key


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_statistic_matches_naive_pair_loop(seed):
    hidden, correct, groups, lengths, head, losses, rewards = _batch(seed=seed)
    got = _run(hidden, correct, groups, lengths, head, losses, rewards)
    # float32 inputs: the naive loop works on the same float32-rounded numbers
    r = lambda xs: torch.tensor(xs, dtype=torch.float32).double().tolist()  # noqa: E731
    _assert_same(got, _naive(r(hidden), correct, groups, lengths, r(head), r(losses), r(rewards)))
    # every class is populated at this size, so every key family is present
    for key in ("clipo/emb/cos_cc_group_mean", "clipo/head/l2_ci_batch_min", "clipo/emb/l2_lenq4_max",
                "clipo/loss/incorrect_max", "clipo/reward/correct_min"):
        assert key in got


def test_empty_classes_give_no_key_never_nan():
    hidden, _, groups, lengths, head, losses, _ = _batch(seed=3)
    correct = [True] * len(groups)  # no incorrect rollout: no ci / ii pair, no incorrect-loss statistic
    got = _run(hidden, correct, groups, lengths, head, losses)
    assert not any("_ci_" in k or "_ii_" in k or "incorrect" in k for k in got if not k.startswith("clipo/pairs/"))
    assert got["clipo/pairs/ci_batch"] == 0.0 and got["clipo/pairs/ii_group"] == 0.0
    assert all(math.isfinite(v) for v in got.values())
    _assert_same(got, _naive(torch.tensor(hidden).double().tolist(), correct, groups, lengths,
                             torch.tensor(head).double().tolist(), torch.tensor(losses).double().tolist()))


def test_single_rollout_has_only_zero_pair_counts():
    got = _run([[1.0, 2.0]], [True], [0], [3], losses=[0.5])
    assert {k for k in got if not k.startswith("clipo/pairs/")} == {"clipo/loss/correct_mean", "clipo/loss/correct_max",
                                                                    "clipo/loss/correct_min"}
    assert all(v == 0.0 for k, v in got.items() if k.startswith("clipo/pairs/"))


def test_no_head_no_loss_keys_when_clipo_off():
    hidden, correct, groups, lengths, *_ = _batch(seed=4)
    got = _run(hidden, correct, groups, lengths)
    assert not any(k.startswith(("clipo/head/", "clipo/loss/", "clipo/reward/")) for k in got)
    assert "clipo/emb/cos_cc_batch_mean" in got


def test_length_quartiles_by_hand():
    # ranks by (length, index): idx1(1) idx5(2) idx2(3) idx3(3) idx8(4) idx0(5) idx9(6) idx6(7) idx7(8) idx4(9)
    # N = 10: quartile boundaries 0, 2, 5, 7, 10 -> ranks 0-1 | 2-4 | 5-6 | 7-9
    lengths = torch.tensor([5, 1, 3, 3, 9, 2, 7, 8, 4, 6])
    assert length_quartiles(lengths).tolist() == [2, 0, 1, 1, 3, 0, 3, 3, 1, 2]
    for n in range(1, 23):  # every size against the official boundaries
        rng = random.Random(n)
        ls = [rng.randint(0, 5) for _ in range(n)]
        assert length_quartiles(torch.tensor(ls)).tolist() == _naive_quartiles(ls)


def test_l2_of_near_duplicates_keeps_precision():
    # Two states with a large common component that differ by 1e-3 in one coordinate: a float32 Gram-matrix
    # distance would be off by ~1e-2 here.
    base = [100.0 + k for k in range(16)]
    other = list(base)
    other[3] += 1e-3
    got = embedding_diagnostics(torch.tensor([base, other], dtype=torch.float64), torch.tensor([True, True]),
                                torch.tensor([0, 0]), torch.tensor([4, 4]))
    assert got["clipo/emb/l2_cc_group_mean"] == pytest.approx(1e-3, rel=1e-6)


def test_head_l2_equals_official_formula_for_unit_vectors():
    # The official run logs sqrt(2 − 2 cos) for the (unit-norm) head outputs; for unit vectors ‖a − b‖ is that.
    _, correct, groups, lengths, head, _, _ = _batch(seed=5)
    got = _run(head, correct, groups, lengths, head)
    pairs = [(i, j) for i in range(len(head)) for j in range(i + 1, len(head)) if correct[i] and correct[j]]
    official = [math.sqrt(max(0.0, 2 - 2 * _cos(head[i], head[j]))) for i, j in pairs]
    assert got["clipo/head/l2_cc_batch_max"] == pytest.approx(max(official), abs=1e-5)
    assert got["clipo/head/l2_cc_batch_mean"] == pytest.approx(sum(official) / len(official), abs=1e-5)
