"""kl_estimate: each estimator at hand-picked log-ratios, its clamps, aliases and the straight-through '+'."""
import math

import pytest
import torch

from clipo import kl_estimate

# δ = logp − ref_logp at four tokens: 1, −1, 30, −30.
LOGP = torch.tensor([[-1.0, -2.0, -1.0, -31.0]], dtype=torch.float64)
REF = torch.tensor([[-2.0, -1.0, -31.0, -1.0]], dtype=torch.float64)


def test_k1_abs_k2_by_hand():
    assert kl_estimate(LOGP, REF, "k1").tolist() == [[1.0, -1.0, 30.0, -30.0]]
    assert kl_estimate(LOGP, REF, "abs").tolist() == [[1.0, 1.0, 30.0, 30.0]]
    assert kl_estimate(LOGP, REF, "k2").tolist() == [[0.5, 0.5, 450.0, 450.0]]


def test_k3_by_hand_with_clamps():
    # x = clamp(−δ, −20, 20); k3 = clamp(eˣ − x − 1, −10, 10)
    # δ = 1  → x = −1: e^{−1} + 1 − 1 = 0.367879
    # δ = −1 → x = 1:  e − 1 − 1     = 0.718282
    # δ = 30 → x = −20 (clamped): e^{−20} + 20 − 1 = 19.0000… → clamped to 10
    # δ = −30 → x = 20: e^{20} − 21 ≈ 4.85e8 → clamped to 10
    k3 = kl_estimate(LOGP, REF, "k3")[0].tolist()
    assert k3 == pytest.approx([math.exp(-1), math.e - 2, 10.0, 10.0])


@pytest.mark.parametrize("alias, name", [("kl", "k1"), ("mse", "k2"), ("low_var_kl", "k3")])
def test_verl_aliases(alias, name):
    assert torch.equal(kl_estimate(LOGP, REF, alias), kl_estimate(LOGP, REF, name))


@pytest.mark.parametrize("name", ["k1", "k3", "abs"])
def test_straight_through_plus_variants_take_value_of_x_and_gradient_of_k2(name):
    logp = torch.tensor([[-1.0, -2.0, -0.5]], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([[-2.0, -1.0, -0.5]], dtype=torch.float64)
    value = kl_estimate(logp, ref, name + "+")
    assert torch.allclose(value, kl_estimate(logp, ref, name))
    value.sum().backward()
    # ∂(½δ²)/∂logp = δ = [1, −1, 0]
    assert logp.grad.tolist() == [[1.0, -1.0, 0.0]]


def test_k3_is_nonnegative_and_zero_on_policy():
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(4, 9, generator=g) * 5
    ref = -torch.rand(4, 9, generator=g) * 5
    assert (kl_estimate(logp, ref, "k3") >= 0).all()
    assert kl_estimate(logp, logp, "k3").abs().max().item() == 0.0


def test_unknown_kind_lists_choices():
    with pytest.raises(ValueError, match="low_var_kl"):
        kl_estimate(LOGP, REF, "k4")


def test_gradcheck_k3():
    logp = (-torch.rand(2, 5, dtype=torch.float64) * 3).requires_grad_(True)
    ref = -torch.rand(2, 5, dtype=torch.float64) * 3
    assert torch.autograd.gradcheck(lambda x: kl_estimate(x, ref, "k3"), (logp,))
