"""PPO/GRPO/DAPO, GSPO and GMPO losses: hand-derived values, gradients, equivalences and edge cases."""
import math

import pytest
import torch

from clipo import aggregate, gmpo_loss, gspo_loss, ppo_clip_loss

LOG = math.log


def _ppo_case():
    """One rollout of five valid tokens (plus one padded token holding garbage).

    token  A    r     l1=−A·r  l2=−A·clip(r,0.8,1.2)  l=max   l3=−A·3   L
      1   +1   1.5    −1.5      −1.2                 −1.2    −3       −1.2   (clipped: gradient 0)
      2   +1   0.5    −0.5      −0.8                 −0.5    −3       −0.5
      3   −1   1.5     1.5       1.2                  1.5     3        1.5
      4   −1   4.0     4.0       1.2                  4.0     3        3.0   (dual clip: gradient 0)
      5   −1   0.5     0.5       0.8                  0.8     3        0.8   (clipped: gradient 0)
    token-mean = (−1.2 − 0.5 + 1.5 + 3 + 0.8) / 5 = 0.72
    """
    old = torch.zeros(1, 6, dtype=torch.float64)
    logp = torch.tensor([[LOG(1.5), LOG(0.5), LOG(1.5), LOG(4.0), LOG(0.5), 123.0]], dtype=torch.float64)
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0, -1.0, 55.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])
    return logp.requires_grad_(True), old, adv, mask


def test_ppo_clip_by_hand():
    logp, old, adv, mask = _ppo_case()
    loss, metrics = ppo_clip_loss(logp, old, adv, mask, eps_low=0.2, eps_high=0.2, dual_clip=3.0)
    assert loss.item() == pytest.approx(0.72)
    # l2 > l1 at tokens 1 and 5; the dual clip binds at token 4
    assert metrics["pg_clipfrac"].item() == pytest.approx(2 / 5)
    assert metrics["pg_clipfrac_lower"].item() == pytest.approx(1 / 5)
    # ppo_kl = mean(−log r) = −(2·log 1.5 + 2·log 0.5 + log 4) / 5 = −2·log 1.5 / 5
    assert metrics["ppo_kl"].item() == pytest.approx(-2 * LOG(1.5) / 5)
    loss.backward()
    # ∂L/∂logp = −A·r where unclipped, /5 tokens: token 2 → −0.5/5, token 3 → +1.5/5; others 0
    assert logp.grad.tolist()[0] == pytest.approx([0.0, -0.1, 0.3, 0.0, 0.0, 0.0])


def test_ppo_without_dual_clip_keeps_the_large_negative_advantage_loss():
    logp, old, adv, mask = _ppo_case()
    loss, metrics = ppo_clip_loss(logp, old, adv, mask, dual_clip=None)
    # token 4 now contributes 4.0 instead of 3.0: (−1.2 − 0.5 + 1.5 + 4 + 0.8) / 5 = 0.92
    assert loss.item() == pytest.approx(0.92)
    assert metrics["pg_clipfrac_lower"].item() == 0.0


def test_clip_higher_lets_positive_tokens_rise_further():
    # A = +1, r = 1.25: with eps_high 0.2 the ratio is clipped to 1.2 (loss −1.2); DAPO's 0.28 leaves it (−1.25).
    logp = torch.tensor([[LOG(1.25)]])
    old, adv, mask = torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1)
    assert ppo_clip_loss(logp, old, adv, mask, eps_low=0.2, eps_high=0.2).loss.item() == pytest.approx(-1.2)
    assert ppo_clip_loss(logp, old, adv, mask, eps_low=0.2, eps_high=0.28).loss.item() == pytest.approx(-1.25)


def test_rollout_advantages_equal_token_advantages():
    g = torch.Generator().manual_seed(0)
    logp, old = -torch.rand(3, 4, generator=g), -torch.rand(3, 4, generator=g)
    adv = torch.randn(3, generator=g)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    for fn in (ppo_clip_loss, gspo_loss, gmpo_loss):
        a = fn(logp, old, adv, mask).loss
        b = fn(logp, old, adv[:, None].expand(3, 4).clone(), mask).loss
        assert a.item() == pytest.approx(b.item(), rel=1e-6), fn.__name__


def test_on_policy_ppo_is_minus_mean_advantage_and_zero_for_zero_advantage():
    logp = -torch.rand(2, 3)
    mask = torch.ones(2, 3)
    # r ≡ 1: L = −A per token; token-mean of −[1, 1, 1, −2, −2, −2] = 0.5
    assert ppo_clip_loss(logp, logp.detach(), torch.tensor([1.0, -2.0]), mask).loss.item() == pytest.approx(0.5)
    assert ppo_clip_loss(logp, logp.detach() - 0.3, torch.zeros(2), mask).loss.item() == 0.0


def test_ppo_aggregation_modes_are_passed_through():
    logp, old, adv, mask = _ppo_case()
    loss = ppo_clip_loss(logp, old, adv, mask, agg="seq-mean-token-sum-constlen", norm_len=10).loss
    # one row whose token sum is 3.6, divided by the constant 10
    assert loss.item() == pytest.approx(0.36)


def test_ppo_rejects_bad_clip_settings():
    logp, old, adv, mask = _ppo_case()
    with pytest.raises(ValueError, match="dual_clip"):
        ppo_clip_loss(logp, old, adv, mask, dual_clip=0.5)
    with pytest.raises(ValueError, match="advantages"):
        ppo_clip_loss(logp, old, torch.ones(2), mask)


def test_gspo_by_hand_clipped_and_unclipped():
    # One rollout, two tokens with log-ratios 0.1 and 0.3: log s = 0.2, s = e^0.2 = 1.221403.
    logp = torch.tensor([[0.1, 0.3, 9.0]], dtype=torch.float64, requires_grad=True)
    old = torch.zeros(1, 3, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0]])
    s = math.exp(0.2)
    # A = +1, eps 0.2: max(−s, −1.2) = −1.2, clipped → gradient 0
    loss, metrics = gspo_loss(logp, old, torch.tensor([1.0], dtype=torch.float64), mask, eps_low=0.2, eps_high=0.2)
    assert loss.item() == pytest.approx(-1.2)
    assert metrics["pg_clipfrac"].item() == 1.0
    loss.backward()
    assert logp.grad.abs().sum().item() == 0.0
    # A = −1: max(s, 1.2) = s, not clipped. Each token's gradient is s · (1/2 tokens) = 0.610701.
    logp.grad = None
    loss, metrics = gspo_loss(logp, old, torch.tensor([-1.0], dtype=torch.float64), mask, eps_low=0.2, eps_high=0.2)
    assert loss.item() == pytest.approx(s)
    assert metrics["pg_clipfrac"].item() == 0.0 and metrics["pg_clipfrac_lower"].item() == 0.0
    loss.backward()
    assert logp.grad.tolist()[0] == pytest.approx([s / 2, s / 2, 0.0])


@pytest.mark.parametrize("eps", [(3e-4, 4e-4), (0.2, 0.2), (0.05, 0.1)])
def test_gspo_token_equals_sequence_for_sequence_constant_advantages(eps):
    g = torch.Generator().manual_seed(3)
    old = -torch.rand(5, 6, generator=g, dtype=torch.float64) * 2
    base = old + 0.05 * torch.randn(5, 6, generator=g, dtype=torch.float64)
    adv = torch.randn(5, generator=g, dtype=torch.float64)
    mask = (torch.arange(6)[None, :] < torch.tensor([6, 3, 1, 0, 4])[:, None]).long()
    grads, losses = [], []
    for variant in ("token", "sequence"):
        logp = base.clone().requires_grad_(True)
        loss = gspo_loss(logp, old, adv, mask, eps_low=eps[0], eps_high=eps[1], variant=variant).loss
        loss.backward()
        losses.append(loss.item())
        grads.append(logp.grad)
    assert losses[0] == pytest.approx(losses[1], rel=1e-12)
    assert torch.allclose(grads[0], grads[1], atol=1e-12)


def test_gspo_empty_response_is_left_out():
    logp = torch.tensor([[0.2, 0.0], [5.0, 5.0]])
    mask = torch.tensor([[1, 0], [0, 0]])
    adv = torch.tensor([-1.0, 100.0])
    # Only row 0 counts: log s = 0.2, A = −1, eps 0.2 → max(e^0.2, 1.2) = 1.221403
    assert gspo_loss(logp, torch.zeros(2, 2), adv, mask, eps_low=0.2, eps_high=0.2).loss.item() == pytest.approx(math.exp(0.2), rel=1e-6)


def test_gmpo_by_hand():
    """Two rollouts of two tokens, eps = 0.4.

    Row 0: A = +1, d = [0.5, −0.1] → d^c = [0.4, −0.1]; A > 0 takes min(d, d^c) = [0.4, −0.1];
           ratio = exp(0.3 / 2) = e^0.15 = 1.161834; term −1.161834. Token 0 is clipped (gradient 0),
           token 1's gradient is −Â·ratio/(n·B) = −1.161834 / (2·2) = −0.290459.
    Row 1: A = −1, d = [0.5, −0.6] → d^c = [0.4, −0.4]; A < 0 takes max(d, d^c) = [0.5, −0.4];
           ratio = exp(0.1 / 2) = e^0.05 = 1.051271; term +1.051271. Token 0: 1.051271/4 = 0.262818;
           token 1 is clipped.
    loss = (−1.161834 + 1.051271) / 2 = −0.0552815
    metrics: d ≠ d^c at (0,0) with A > 0 → 1/4; at (1,0) and (1,1) with A < 0 → 2/4.
    """
    logp = torch.tensor([[0.5, -0.1], [0.5, -0.6]], dtype=torch.float64, requires_grad=True)
    old = torch.zeros(2, 2, dtype=torch.float64)
    adv = torch.tensor([1.0, -1.0], dtype=torch.float64)
    loss, metrics = gmpo_loss(logp, old, adv, torch.ones(2, 2), eps_low=0.4, eps_high=0.4)
    assert loss.item() == pytest.approx((-math.exp(0.15) + math.exp(0.05)) / 2)
    assert metrics["pg_clipfrac"].item() == pytest.approx(0.25)
    assert metrics["pg_clipfrac_lower"].item() == pytest.approx(0.5)
    loss.backward()
    expected = [[0.0, -math.exp(0.15) / 4], [math.exp(0.05) / 4, 0.0]]
    assert logp.grad.tolist()[0] == pytest.approx(expected[0])
    assert logp.grad.tolist()[1] == pytest.approx(expected[1])


def test_gmpo_empty_row_counts_in_the_mean_and_ignores_agg():
    logp = torch.tensor([[0.1, 0.0], [7.0, 7.0]])
    mask = torch.tensor([[1, 0], [0, 0]])
    # row 0: ratio e^0.1, Â = 2 → −2·e^0.1; row 1 empty: ratio 1, Â 0 → 0; mean over 2 rows
    loss = gmpo_loss(logp, torch.zeros(2, 2), torch.tensor([2.0, 3.0]), mask).loss
    assert loss.item() == pytest.approx(-2 * math.exp(0.1) / 2, rel=1e-6)


def test_zero_advantage_gives_zero_loss_for_every_algorithm():
    logp, old = -torch.rand(2, 3), -torch.rand(2, 3)
    for fn in (ppo_clip_loss, gspo_loss, gmpo_loss):
        assert fn(logp, old, torch.zeros(2), torch.ones(2, 3)).loss.item() == 0.0


@pytest.mark.parametrize("fn", [ppo_clip_loss, gspo_loss, gmpo_loss])
def test_padding_changes_nothing(fn):
    g = torch.Generator().manual_seed(4)
    logp, old = -torch.rand(3, 4, generator=g), -torch.rand(3, 4, generator=g)
    adv = torch.randn(3, generator=g)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    pad = torch.full((3, 3), float("nan"))
    a = fn(logp, old, adv, mask)
    b = fn(torch.cat([logp, pad], 1), torch.cat([old, pad], 1), adv, torch.cat([mask, torch.zeros(3, 3, dtype=mask.dtype)], 1))
    assert b.loss.item() == pytest.approx(a.loss.item(), rel=1e-6)
    for key in a.metrics:
        assert b.metrics[key].item() == pytest.approx(a.metrics[key].item(), rel=1e-6, abs=1e-7)


@pytest.mark.parametrize(
    "fn, kwargs",
    [
        (ppo_clip_loss, {"eps_low": 0.2, "eps_high": 0.28}),
        (ppo_clip_loss, {"agg": "seq-mean-token-mean"}),
        (gspo_loss, {"eps_low": 0.2, "eps_high": 0.2}),
        (gspo_loss, {"eps_low": 0.2, "eps_high": 0.2, "variant": "sequence"}),
        (gmpo_loss, {}),
    ],
)
def test_gradcheck_float64(fn, kwargs):
    g = torch.Generator().manual_seed(5)
    old = -torch.rand(3, 4, generator=g, dtype=torch.float64)
    # small log-ratios keep every token away from the clip kinks, where the loss is not differentiable
    logp = (old + 0.05 * torch.randn(3, 4, generator=g, dtype=torch.float64)).requires_grad_(True)
    adv = torch.randn(3, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]])
    assert torch.autograd.gradcheck(lambda x: fn(x, old, adv, mask, **kwargs).loss, (logp,))


@pytest.mark.parametrize("fn", [ppo_clip_loss, gspo_loss, gmpo_loss])
def test_bf16_inputs_stay_close_to_fp32(fn):
    g = torch.Generator().manual_seed(6)
    old = -torch.rand(8, 16, generator=g) * 3
    logp = old + 0.1 * torch.randn(8, 16, generator=g)
    adv = torch.randn(8, generator=g)
    mask = torch.ones(8, 16)
    full = fn(logp, old, adv, mask, eps_low=0.2, eps_high=0.2).loss
    half = fn(logp.bfloat16(), old.bfloat16(), adv.bfloat16(), mask, eps_low=0.2, eps_high=0.2).loss
    assert torch.isfinite(half)
    # bf16 keeps 8 bits of mantissa: log-probs of magnitude ~3 carry errors of ~0.01 in the ratio
    assert half.float().item() == pytest.approx(full.item(), abs=0.05)


def test_metrics_are_detached():
    logp, old, adv, mask = _ppo_case()
    for fn in (ppo_clip_loss, gspo_loss, gmpo_loss):
        _, metrics = fn(logp, old, adv[:, :1].squeeze(1), mask)
        assert all(not v.requires_grad and v.dim() == 0 for v in metrics.values())


def test_kl_loss_composes_with_aggregate():
    # The trainer adds β·aggregate(k3) to the policy loss; a quick sanity check that both reduce alike.
    from clipo import kl_estimate

    logp = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-2.0, -2.0]])
    kl = aggregate(kl_estimate(logp, ref, "k3"), torch.ones(1, 2), "token-mean")
    assert kl.item() == pytest.approx(math.exp(-1) / 2)
