"""The per-micro-batch loss composition (policy + KL − entropy) over shared denominators, without a model."""
import pytest
import torch

from clipo.core.algorithms import AlgorithmKnobs, get_algorithm
from clipo.core.loss import (
    AGG_COUNT_KIND,
    Denominators,
    loss_denominator,
    micro_batch_loss,
    mini_batch_denominators,
)
from clipo.core.ops import AGGREGATION_MODES

# Rows: lengths 5, 2, 0 (empty), 4, 1, 3 of L = 5.
LENGTHS = torch.tensor([5, 2, 0, 4, 1, 3])


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    n, length = len(LENGTHS), 5
    logp = (-torch.rand(n, length, generator=g) * 2).requires_grad_()
    old = logp.detach() + 0.3 * torch.randn(n, length, generator=g)
    ref = logp.detach() + 0.2 * torch.randn(n, length, generator=g)
    entropy = (torch.rand(n, length, generator=g) * 3).requires_grad_()
    mask = (torch.arange(length)[None] < LENGTHS[:, None]).float()
    adv = torch.randn(n, generator=g)
    return logp, old, ref, entropy, mask, adv


def test_loss_denominator_hand_values():
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert loss_denominator(mask, "tokens").item() == 3.0  # 2 + 0 + 1 tokens
    assert loss_denominator(mask, "sequences").item() == 2.0  # rows 0 and 2 are non-empty
    assert loss_denominator(mask, "rows").item() == 3.0  # every row, the empty one too
    assert loss_denominator(mask, "none") is None
    assert loss_denominator(torch.zeros(2, 3), "sequences").item() == 1.0  # clamped: never divide by 0
    with pytest.raises(ValueError, match="tokens"):
        loss_denominator(mask, "pages")
    assert set(AGG_COUNT_KIND) == set(AGGREGATION_MODES)


def test_mini_batch_denominators_reduce_over_processes():
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    local = mini_batch_denominators(mask, policy_kind="rows", loss_agg="token-mean")
    assert (local.policy.item(), local.aggregate.item(), local.rows) == (3.0, 3.0, 3)
    # A fake all-reduce over two identical processes doubles the counts but not this process's rows.
    doubled = mini_batch_denominators(mask, policy_kind="sequences", loss_agg="seq-mean-token-sum-norm",
                                      reduce=lambda n: 2 * n)
    assert doubled.policy.item() == 4.0 and doubled.aggregate is None and doubled.rows == 3


def test_hand_derived_tiny_case():
    # Two rows, L = 2, mask [[1, 1], [1, 0]] (3 tokens), on-policy (r = 1), A = [1, −1]:
    #   PPO-clip per token −A·r = [[−1, −1], [1, ·]];  token-mean → (−1 − 1 + 1) / 3 = −1/3
    #   k1 KL = logp − ref = [[0.5, 0], [−0.25, ·]]      → (0.5 + 0 − 0.25) / 3 = 1/12
    #   entropy [[1, 2], [3, ·]]                           → (1 + 2 + 3) / 3 = 2
    #   loss = −1/3 + 0.1 · 1/12 − 0.01 · 2 = −0.345
    logp = torch.zeros(2, 2)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    ref = torch.tensor([[-0.5, 0.0], [0.25, 9.0]])
    entropy = torch.tensor([[1.0, 2.0], [3.0, 100.0]])
    adv = torch.tensor([1.0, -1.0])
    loss_fn = get_algorithm("grpo").bind(AlgorithmKnobs(dual_clip=3.0))
    counts = mini_batch_denominators(mask, policy_kind="tokens", loss_agg="token-mean")
    out = micro_batch_loss(loss_fn, logp, logp, adv, mask, counts, loss_agg="token-mean", ref_logp=ref,
                           kl_coef=0.1, kl_kind="k1", entropy=entropy, entropy_coef=0.01)
    assert out.loss.item() == pytest.approx(-0.345, abs=1e-7)
    assert out.metrics["pg_loss"].item() == pytest.approx(-1 / 3, abs=1e-7)
    assert out.metrics["kl"].item() == pytest.approx(1 / 12, abs=1e-7)
    assert list(out.metrics)[:2] == ["kl", "pg_loss"] and "pg_clipfrac" in out.metrics
    # The KL and entropy terms are left out without ref_logp / entropy.
    bare = micro_batch_loss(loss_fn, logp, logp, adv, mask, counts, loss_agg="token-mean", kl_coef=0.1,
                            entropy_coef=0.01)
    assert bare.loss.item() == pytest.approx(-1 / 3, abs=1e-7) and "kl" not in bare.metrics


CASES = [  # (algorithm, loss_agg): the policy loss's count follows loss_agg, or the algorithm fixes it
    ("grpo", "token-mean"),
    ("grpo", "seq-mean-token-mean"),
    ("grpo", "seq-mean-token-sum"),
    ("dr_grpo", "seq-mean-token-sum-constlen"),
    ("gspo", "token-mean"),  # sequences for the policy loss, tokens for KL and entropy
    ("gmpo", "seq-mean-token-mean"),  # rows for the policy loss
    ("rloo", "token-mean"),
]


def _run(name, agg, splits, *, seed=0):
    """The summed micro-batch losses over ``splits`` (row slices) and the gradients they leave."""
    logp, old, ref, entropy, mask, adv = _batch(seed)
    entry = get_algorithm(name)
    knobs = AlgorithmKnobs(**{**{k: v for k, v in entry.preset.items() if k in AlgorithmKnobs.__dataclass_fields__},
                              "loss_agg": agg, "norm_len": 6})
    loss_fn = entry.bind(knobs)
    counts = mini_batch_denominators(mask, policy_kind=entry.count_kind(agg), loss_agg=agg)
    total = torch.zeros(())
    for rows in splits:
        part = micro_batch_loss(loss_fn, logp[rows], old[rows], adv[rows], mask[rows], counts, loss_agg=agg,
                                norm_len=6, ref_logp=ref[rows], kl_coef=0.05, kl_kind="k3", entropy=entropy[rows],
                                entropy_coef=0.01)
        part.loss.backward()
        total = total + part.loss.detach()
    return total, logp.grad, entropy.grad


@pytest.mark.parametrize("name, agg", CASES, ids=[f"{n}-{a}" for n, a in CASES])
def test_micro_batches_with_global_counts_sum_to_the_one_batch_loss(name, agg):
    whole, whole_grad, whole_entropy_grad = _run(name, agg, [slice(0, 6)])
    split, split_grad, split_entropy_grad = _run(name, agg, [slice(0, 2), slice(2, 3), slice(3, 6)])
    torch.testing.assert_close(split, whole, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(split_grad, whole_grad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(split_entropy_grad, whole_entropy_grad, rtol=1e-5, atol=1e-7)


def test_seq_mean_token_sum_norm_weights_micro_batches_by_their_share_of_rows():
    # This mode has no count to share (it sums rows and divides by a length), so micro-batch k is weighted by
    # n_k / n (verl's micro-batch weighting). One micro-batch is the whole loss; M equal micro-batches give the
    # whole loss / M; unequal ones the row-weighted sum of their parts.
    agg = "seq-mean-token-sum-norm"
    whole, whole_grad, _ = _run("grpo", agg, [slice(0, 6)])
    halves, halves_grad, _ = _run("grpo", agg, [slice(0, 3), slice(3, 6)])
    torch.testing.assert_close(halves, whole / 2)
    torch.testing.assert_close(halves_grad, whole_grad / 2)
    uneven, _, _ = _run("grpo", agg, [slice(0, 2), slice(2, 6)])
    logp, old, ref, entropy, mask, adv = _batch(0)
    knobs = AlgorithmKnobs(loss_agg=agg, norm_len=6, dual_clip=3.0)
    loss_fn = get_algorithm("grpo").bind(knobs)
    expected = 0.0
    for rows, weight in ((slice(0, 2), 2 / 6), (slice(2, 6), 4 / 6)):
        alone = Denominators(None, None, rows.stop - rows.start)  # a micro-batch that is its own mini-batch
        part = micro_batch_loss(loss_fn, logp[rows], old[rows], adv[rows], mask[rows], alone, loss_agg=agg,
                                norm_len=6, ref_logp=ref[rows], kl_coef=0.05, entropy=entropy[rows], entropy_coef=0.01)
        expected += weight * part.loss.item()
    assert uneven.item() == pytest.approx(expected, rel=1e-6)


def test_pg_loss_metric_is_the_micro_batch_share():
    logp, old, _, _, mask, adv = _batch(3)
    loss_fn = get_algorithm("grpo").bind(AlgorithmKnobs(dual_clip=3.0))
    counts = mini_batch_denominators(mask, policy_kind="tokens", loss_agg="token-mean")
    parts = [micro_batch_loss(loss_fn, logp[r], old[r], adv[r], mask[r], counts, loss_agg="token-mean")
             for r in (slice(0, 4), slice(4, 6))]
    whole = micro_batch_loss(loss_fn, logp, old, adv, mask, counts, loss_agg="token-mean")
    torch.testing.assert_close(parts[0].metrics["pg_loss"] + parts[1].metrics["pg_loss"], whole.metrics["pg_loss"])
    assert not parts[0].metrics["pg_loss"].requires_grad and parts[0].loss.requires_grad
