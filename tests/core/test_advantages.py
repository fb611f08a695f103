"""group_advantages, overlong_penalty and informative_groups against hand values and naive loops."""
import math

import numpy as np
import pytest
import torch

from clipo import group_advantages, informative_groups, overlong_penalty


def naive_group_advantages(rewards, group_ids, scale_by_std=True, eps=1e-6):
    """verl's loop: collect each uid's scores, mean/std via torch (unbiased), singletons mean 0 std 1."""
    by_group = {}
    for i, g in enumerate(group_ids.tolist()):
        by_group.setdefault(g, []).append(i)
    out = torch.zeros_like(rewards, dtype=torch.float64)
    for members in by_group.values():
        scores = rewards[members].double()
        if len(members) == 1:
            mean, std = torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
        else:
            mean, std = scores.mean(), scores.std()
        for i in members:
            centered = rewards[i].double() - mean
            out[i] = centered / (std + eps) if scale_by_std else centered
    return out


def test_grpo_by_hand():
    # Rewards 1,0,0,1: mean 0.5; unbiased std = sqrt((4 · 0.25) / 3) = sqrt(1/3) = 0.57735.
    # A = ±0.5 / (0.57735 + 1e-6) = ±0.866024.
    a = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), torch.tensor([5, 5, 5, 5]))
    expected = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    assert a.tolist() == pytest.approx([expected, -expected, -expected, expected], rel=1e-6)


def test_dr_grpo_by_hand():
    # No std: A = R − mean = ±0.5; second group 2, 4 → mean 3, A = ∓1.
    a = group_advantages(torch.tensor([1.0, 0.0, 2.0, 4.0]), torch.tensor([0, 0, 1, 1]), scale_by_std=False)
    assert a.tolist() == pytest.approx([0.5, -0.5, -1.0, 1.0])


def test_group_of_one_has_mean_zero_and_std_one():
    # verl: A = (0.7 − 0) / (1 + eps) under GRPO, 0.7 under Dr. GRPO.
    rewards, ids = torch.tensor([0.7]), torch.tensor([3])
    assert group_advantages(rewards, ids).item() == pytest.approx(0.7 / (1 + 1e-6), rel=1e-7)
    assert group_advantages(rewards, ids, scale_by_std=False).item() == pytest.approx(0.7)


def test_all_equal_group_is_exactly_zero_even_for_non_dyadic_rewards():
    # 0.1 three times: the float mean can round off, verl would leave ~1e-3 of garbage; clipo gives exact 0.
    rewards = torch.tensor([0.1, 0.1, 0.1, 1.0, 0.0], dtype=torch.float32)
    a = group_advantages(rewards, torch.tensor([0, 0, 0, 1, 1]))
    assert a[:3].tolist() == [0.0, 0.0, 0.0]
    assert a[3].item() > 0 > a[4].item()


@pytest.mark.parametrize("scale_by_std", [True, False])
@pytest.mark.parametrize("seed", range(5))
def test_vectorised_matches_naive_loop(seed, scale_by_std):
    g = torch.Generator().manual_seed(seed)
    n = 40
    rewards = torch.randint(0, 3, (n,), generator=g).float() + torch.rand(n, generator=g)
    group_ids = torch.randint(0, 12, (n,), generator=g) * 7 - 20  # sparse, negative, unsorted ids
    fast = group_advantages(rewards, group_ids, scale_by_std=scale_by_std)
    slow = naive_group_advantages(rewards, group_ids, scale_by_std=scale_by_std)
    assert torch.allclose(fast.double(), slow, atol=1e-5)


def test_permuting_within_a_group_permutes_the_advantages():
    rewards = torch.tensor([1.0, 0.0, 0.3, 0.9, 0.2, 0.2])
    ids = torch.tensor([0, 0, 0, 1, 1, 1])
    perm = torch.tensor([2, 0, 1, 5, 3, 4])
    assert torch.allclose(group_advantages(rewards[perm], ids[perm]), group_advantages(rewards, ids)[perm])


def test_result_dtype_follows_rewards_and_has_no_grad():
    rewards = torch.tensor([1.0, 0.0], dtype=torch.bfloat16, requires_grad=True)
    a = group_advantages(rewards, torch.tensor([0, 0]))
    assert a.dtype == torch.bfloat16 and not a.requires_grad


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="sum token-level rewards"):
        group_advantages(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        group_advantages(torch.zeros(2), torch.zeros(2))


def test_overlong_penalty_by_hand():
    # L_max = 20, L_cache = 4 → expected = 16. |y| = 10, 16: no penalty; 17: (16−17)/4 = −0.25;
    # 18: −0.5; 20: −1; 22 (beyond L_max, e.g. a miscounted length): −1.5, verl does not floor it.
    lengths = torch.tensor([10, 16, 17, 18, 20, 22])
    assert overlong_penalty(lengths, max_len=20, cache_len=4).tolist() == pytest.approx([0, 0, -0.25, -0.5, -1.0, -1.5])
    assert overlong_penalty(lengths, max_len=20, cache_len=4, factor=2.0).tolist() == pytest.approx([0, 0, -0.5, -1.0, -2.0, -3.0])
    with pytest.raises(ValueError, match="cache_len"):
        overlong_penalty(lengths, max_len=4, cache_len=8)


def test_informative_groups_by_hand():
    # group 0: [1, 1] all equal → drop; group 1: [0, 0] → drop; group 2: [1, 0] → keep; group 3: a single
    # rollout → keep (verl keeps groups of one).
    rewards = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0])
    ids = torch.tensor([0, 0, 1, 1, 2, 2, 3])
    assert informative_groups(rewards, ids).tolist() == [False, False, False, False, True, True, True]


def test_informative_groups_matches_numpy_population_std_on_dyadic_rewards():
    g = torch.Generator().manual_seed(1)
    rewards = torch.randint(0, 2, (64,), generator=g).float()
    ids = torch.arange(64) // 4
    keep = informative_groups(rewards, ids)
    for gid in range(16):
        values = rewards[ids == gid].numpy()
        assert bool(keep[ids == gid].all()) == bool(np.std(values) > 0)
