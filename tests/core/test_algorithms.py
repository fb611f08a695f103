"""The algorithm registry (one entry per algorithm) and RLOO's leave-one-out advantage."""
import pytest
import torch

from clipo.core.advantages import group_advantages, rloo_advantages
from clipo.core.algorithms import (
    ALGORITHMS,
    Algorithm,
    AlgorithmKnobs,
    get_algorithm,
    ppo_clip_policy_loss,
    register_algorithm,
)
from clipo.core.policy_losses import gmpo_loss, gspo_loss, ppo_clip_loss

# ------------------------------------------------------------------------------------------ RLOO


def test_rloo_hand_values():
    # Group 0 = [1, 0, 0, 1] (G = 4):
    #   i=0: others {0, 0, 1}, mean 1/3 → A = 1 − 1/3 = 2/3      (= 4/3 · (1 − 1/2))
    #   i=1: others {1, 0, 1}, mean 2/3 → A = 0 − 2/3 = −2/3
    #   i=2: same as i=1 → −2/3 ;  i=3: same as i=0 → 2/3
    # Group 7 = [1, 0, 0] (G = 3):
    #   i=4: others {0, 0}, mean 0 → A = 1 ;  i=5, i=6: others {1, 0}, mean 1/2 → A = −1/2
    # Group 3 = [0.5] (G = 1): no other rollout → A = 0
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.5])
    ids = torch.tensor([0, 0, 0, 0, 7, 7, 7, 3])
    expected = torch.tensor([2 / 3, -2 / 3, -2 / 3, 2 / 3, 1.0, -0.5, -0.5, 0.0])
    torch.testing.assert_close(rloo_advantages(rewards, ids), expected)


def test_rloo_is_g_over_g_minus_1_times_the_mean_centred_advantage():
    g = torch.Generator().manual_seed(0)
    rewards = torch.rand(24, generator=g)
    ids = torch.arange(6).repeat_interleave(4)
    centred = group_advantages(rewards, ids, scale_by_std=False)
    torch.testing.assert_close(rloo_advantages(rewards, ids), 4 / 3 * centred)


def test_rloo_matches_a_naive_loop_on_random_unsorted_groups():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 9, (50,), generator=g) * 13 - 40  # non-contiguous, unsorted, negative ids
    rewards = torch.randn(50, generator=g, dtype=torch.float64)
    expected = torch.zeros(50, dtype=torch.float64)
    for i in range(50):
        others = [rewards[j].item() for j in range(50) if j != i and ids[j] == ids[i]]
        expected[i] = rewards[i] - sum(others) / len(others) if others else 0.0
    torch.testing.assert_close(rloo_advantages(rewards, ids), expected)


def test_rloo_constant_groups_are_exactly_zero_and_dtype_is_kept():
    rewards = torch.tensor([0.1, 0.1, 0.1, 0.7, 0.7], dtype=torch.float32)
    out = rloo_advantages(rewards, torch.tensor([2, 2, 2, 5, 5]))
    assert out.dtype == torch.float32 and torch.equal(out, torch.zeros(5))
    assert rloo_advantages(torch.zeros(0), torch.zeros(0, dtype=torch.long)).numel() == 0


def test_rloo_rejects_bad_shapes_and_float_ids():
    with pytest.raises(ValueError, match=r"\[N\]"):
        rloo_advantages(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        rloo_advantages(torch.zeros(3), torch.zeros(3))


# ------------------------------------------------------------------------------------------ the registry

#: The presets as they were in clipo/training/config.py before the registry (they must not drift).
_PLAIN = {"adv_eps": 1e-6, "dynamic_sampling": False, "overlong_penalty": False, "incorrect_score": 0.0}
PRESETS_BEFORE = {
    "grpo": {**_PLAIN, "scale_by_std": True, "loss_agg": "token-mean", "eps_low": 0.2, "eps_high": 0.2,
             "dual_clip": 3.0, "kl_coef": 0.001},
    "dr_grpo": {**_PLAIN, "scale_by_std": False, "loss_agg": "seq-mean-token-sum-constlen", "eps_low": 0.2,
                "eps_high": 0.2, "dual_clip": 0.0, "kl_coef": 0.0},
    "dapo": {**_PLAIN, "scale_by_std": True, "loss_agg": "token-mean", "eps_low": 0.2, "eps_high": 0.28,
             "dual_clip": 10.0, "kl_coef": 0.0, "dynamic_sampling": True, "overlong_penalty": True,
             "incorrect_score": -1.0},
    "gspo": {**_PLAIN, "scale_by_std": True, "loss_agg": "seq-mean-token-mean", "eps_low": 3e-4, "eps_high": 4e-4,
             "dual_clip": 0.0, "kl_coef": 0.0},
    "gmpo": {**_PLAIN, "scale_by_std": True, "loss_agg": "token-mean", "eps_low": 0.4, "eps_high": 0.4,
             "dual_clip": 0.0, "kl_coef": 0.0},
    # The new entry: PPO clip without dual clip, token-mean, no KL, no std scaling.
    "rloo": {**_PLAIN, "scale_by_std": False, "loss_agg": "token-mean", "eps_low": 0.2, "eps_high": 0.2,
             "dual_clip": 0.0, "kl_coef": 0.0},
}


def test_every_algorithm_is_one_entry_with_its_preset():
    assert set(PRESETS_BEFORE) <= set(ALGORITHMS)
    for name, preset in PRESETS_BEFORE.items():
        entry = get_algorithm(name)
        assert entry.name == name and entry.description
        assert dict(entry.preset) == preset, name
    with pytest.raises(TypeError):
        ALGORITHMS["grpo"].preset["kl_coef"] = 1.0  # presets are read-only


def test_unknown_algorithm_lists_the_names():
    with pytest.raises(KeyError) as info:
        get_algorithm("ppo")
    for name in PRESETS_BEFORE:
        assert name in str(info.value)


def _batch(seed=0, n=6, length=5):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(n, length, generator=g) * 2
    old = logp + 0.3 * torch.randn(n, length, generator=g)
    mask = (torch.arange(length)[None] < torch.tensor([5, 2, 0, 4, 1, 3])[:n, None]).float()
    adv = torch.randn(n, generator=g)
    return logp, old, adv, mask


def _knobs(name, **changes):
    preset = {k: v for k, v in ALGORITHMS[name].preset.items() if k in AlgorithmKnobs.__dataclass_fields__}
    return AlgorithmKnobs(**{**preset, "norm_len": 8, **changes})


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "dapo", "rloo"])
def test_ppo_clip_algorithms_pass_their_knobs(name):
    logp, old, adv, mask = _batch()
    knobs = _knobs(name)
    got = get_algorithm(name).policy_loss(logp, old, adv, mask, knobs, None)
    want = ppo_clip_loss(logp, old, adv, mask, eps_low=knobs.eps_low, eps_high=knobs.eps_high,
                         dual_clip=knobs.dual_clip or None, agg=knobs.loss_agg, norm_len=8)
    assert torch.equal(got.loss, want.loss)
    assert get_algorithm(name).count_kind(knobs.loss_agg) == {"token-mean": "tokens",
                                                               "seq-mean-token-sum-constlen": "rows"}[knobs.loss_agg]


@pytest.mark.parametrize("variant", ["token", "sequence"])
def test_gspo_entry_uses_gspo_loss_and_counts_sequences(variant):
    logp, old, adv, mask = _batch(1)
    knobs = _knobs("gspo", gspo_variant=variant, loss_agg="token-mean")  # GSPO fixes its own aggregation
    got = get_algorithm("gspo").policy_loss(logp, old, adv, mask, knobs, 5.0)
    want = gspo_loss(logp, old, adv, mask, eps_low=3e-4, eps_high=4e-4, variant=variant, global_count=5.0)
    assert torch.equal(got.loss, want.loss)
    assert get_algorithm("gspo").count_kind("token-mean") == "sequences"


def test_gmpo_entry_uses_gmpo_loss_and_counts_rows():
    logp, old, adv, mask = _batch(2)
    knobs = _knobs("gmpo")
    bound = get_algorithm("gmpo").bind(knobs)
    assert torch.equal(bound(logp, old, adv, mask, 9.0).loss,
                       gmpo_loss(logp, old, adv, mask, eps_low=0.4, eps_high=0.4, global_count=9.0).loss)
    assert get_algorithm("gmpo").count_kind("seq-mean-token-mean") == "rows"


def test_advantage_field_selects_group_or_leave_one_out():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 1.0])
    ids = torch.tensor([0, 0, 0, 1, 1, 1])
    for name in ("grpo", "dapo", "gspo", "gmpo"):
        torch.testing.assert_close(get_algorithm(name).advantage(rewards, ids, _knobs(name)),
                                   group_advantages(rewards, ids, scale_by_std=True, eps=1e-6))
    torch.testing.assert_close(get_algorithm("dr_grpo").advantage(rewards, ids, _knobs("dr_grpo")),
                               group_advantages(rewards, ids, scale_by_std=False))
    torch.testing.assert_close(get_algorithm("rloo").advantage(rewards, ids, _knobs("rloo", scale_by_std=True)),
                               rloo_advantages(rewards, ids))  # RLOO has no std scaling


def test_register_algorithm_refuses_duplicates_and_config_picks_new_ones_up():
    from clipo.training.config import ConfigError, load_config

    entry = Algorithm("toy_rloo", ppo_clip_policy_loss, None, lambda r, ids, knobs: rloo_advantages(r, ids),
                      dict(PRESETS_BEFORE["rloo"], eps_high=0.3), "a test entry")
    with pytest.raises(ValueError, match="already registered"):
        register_algorithm(Algorithm("grpo", ppo_clip_policy_loss, None, entry.advantage, {}))
    with pytest.raises(ValueError, match="loss_count_kind"):
        Algorithm("bad", ppo_clip_policy_loss, "pages", entry.advantage, {})
    register_algorithm(entry)
    try:
        assert load_config(overrides=["algorithm.name=toy_rloo"]).algorithm.eps_high == 0.3
        with pytest.raises(ConfigError, match="toy_rloo"):  # the error lists registered names
            load_config(overrides=["algorithm.name=nope"])
        register_algorithm(Algorithm("toy_rloo", ppo_clip_policy_loss, None, entry.advantage, {"eps_hi": 0.1}),
                           overwrite=True)
        with pytest.raises(ConfigError, match="eps_hi"):
            load_config(overrides=["algorithm.name=toy_rloo"])
    finally:
        del ALGORITHMS["toy_rloo"]
