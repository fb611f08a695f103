"""aggregate(): every mode against values derived by hand, plus the split-batch and padding properties."""
import math

import pytest
import torch

from clipo import AGGREGATION_MODES, aggregate, masked_mean, masked_sum

# Two rollouts of lengths 3 and 2. The padded position holds garbage (NaN) that must never leak.
VALUES = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, float("nan")]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


@pytest.mark.parametrize(
    "mode, kwargs, expected",
    [
        # (1+2+3+4+5) / 5 tokens
        ("token-mean", {}, 15 / 5),
        # sequence sums 6 and 9, averaged over 2 sequences
        ("seq-mean-token-sum", {}, (6 + 9) / 2),
        # sequence means 6/3 = 2 and 9/2 = 4.5, averaged
        ("seq-mean-token-mean", {}, (2 + 4.5) / 2),
        # verl: total sum over the padded length T = 3, no 1/N
        ("seq-mean-token-sum-norm", {}, 15 / 3),
        # verl with a loss_scale_factor-like constant replacing T
        ("seq-mean-token-sum-norm", {"norm_len": 10}, 15 / 10),
        # Dr. GRPO: each sequence sum / 10, averaged over the 2 rows: (0.6 + 0.9) / 2
        ("seq-mean-token-sum-constlen", {"norm_len": 10}, 0.75),
    ],
)
def test_aggregate_modes_by_hand(mode, kwargs, expected):
    assert aggregate(VALUES, MASK, mode, **kwargs).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("token-mean", 3.0),  # the empty row adds no token
        ("seq-mean-token-sum", 7.5),  # the empty row is excluded from the sequence count
        ("seq-mean-token-mean", 3.25),  # likewise
        ("seq-mean-token-sum-norm", 5.0),  # sums over rows anyway
    ],
)
def test_empty_rows_are_excluded_from_sequence_means(mode, expected):
    values = torch.cat([VALUES, torch.full((1, 3), 7.0)])
    mask = torch.cat([MASK, torch.zeros(1, 3, dtype=MASK.dtype)])
    assert aggregate(values, mask, mode).item() == pytest.approx(expected, rel=1e-6)


def test_constlen_counts_empty_rows():
    # Dr. GRPO's mean runs over all rows: (0.6 + 0.9 + 0) / 3
    values = torch.cat([VALUES, torch.full((1, 3), 7.0)])
    mask = torch.cat([MASK, torch.zeros(1, 3, dtype=MASK.dtype)])
    assert aggregate(values, mask, "seq-mean-token-sum-constlen", norm_len=10).item() == pytest.approx(0.5)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"])
def test_all_masked_batch_gives_zero(mode):
    assert aggregate(torch.ones(2, 4), torch.zeros(2, 4), mode).item() == 0.0


def test_constlen_needs_norm_len_and_unknown_mode_is_named():
    with pytest.raises(ValueError, match="norm_len"):
        aggregate(VALUES, MASK, "seq-mean-token-sum-constlen")
    with pytest.raises(ValueError, match="token-mean"):
        aggregate(VALUES, MASK, "token_mean")


def _random_batch(seed=0, n=6, length=7):
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(n, length, generator=g)
    lengths = torch.tensor([7, 1, 4, 0, 5, 3])
    mask = (torch.arange(length)[None, :] < lengths[:, None]).float()
    return values, mask


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-constlen"])
def test_split_across_fake_ranks_reproduces_whole_batch_with_global_count(mode):
    values, mask = _random_batch()
    whole = aggregate(values, mask, mode, norm_len=16)
    if mode == "token-mean":
        count = mask.sum()
    elif mode == "seq-mean-token-sum-constlen":
        count = mask.shape[0]
    else:
        count = (mask.sum(-1) > 0).sum()
    # rank 0 holds rows 0..2, rank 1 rows 3..5; an all-reduce (sum) of the two parts is the whole-batch loss.
    parts = [aggregate(values[rows], mask[rows], mode, norm_len=16, global_count=count) for rows in (slice(0, 3), slice(3, 6))]
    assert (parts[0] + parts[1]).item() == pytest.approx(whole.item(), rel=1e-5)
    # Without the global count, averaging the two local means is NOT the whole-batch mean for token-mean
    # (rank 0 has 12 tokens, rank 1 has 8): this is verl 0.6's per-micro-batch behaviour.
    if mode == "token-mean":
        local = [aggregate(values[rows], mask[rows], mode) for rows in (slice(0, 3), slice(3, 6))]
        assert abs((local[0] + local[1]).item() / 2 - whole.item()) > 1e-3


@pytest.mark.parametrize("mode", [m for m in AGGREGATION_MODES if m != "seq-mean-token-sum-norm"])
def test_extra_padding_changes_nothing(mode):
    values, mask = _random_batch()
    padded_values = torch.cat([values, torch.full((6, 5), float("inf"))], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(6, 5)], dim=1)
    a = aggregate(values, mask, mode, norm_len=16)
    b = aggregate(padded_values, padded_mask, mode, norm_len=16)
    assert torch.isfinite(b)
    assert b.item() == pytest.approx(a.item(), rel=1e-6)


def test_sum_norm_depends_on_padded_length_unless_norm_len_given():
    # verl divides by the padded length: two extra padded columns change the loss from 15/3 to 15/5.
    padded_values = torch.cat([VALUES, torch.zeros(2, 2)], dim=1)
    padded_mask = torch.cat([MASK, torch.zeros(2, 2, dtype=MASK.dtype)], dim=1)
    assert aggregate(padded_values, padded_mask, "seq-mean-token-sum-norm").item() == pytest.approx(3.0)
    assert aggregate(padded_values, padded_mask, "seq-mean-token-sum-norm", norm_len=3).item() == pytest.approx(5.0)


def test_masked_helpers():
    assert masked_sum(VALUES, MASK).item() == 15.0
    assert masked_mean(VALUES, MASK).item() == pytest.approx(3.0)
    assert masked_mean(VALUES, MASK, dim=-1).tolist() == pytest.approx([2.0, 4.5])
    assert masked_mean(torch.ones(3), torch.zeros(3)).item() == 0.0


def test_gradient_flows_only_through_valid_tokens():
    values = VALUES.nan_to_num(0.0).clone().requires_grad_(True)
    aggregate(values, MASK, "seq-mean-token-mean").backward()
    # d/dL[i,t] = 1 / (2 sequences · n_i): 1/6 for row 0, 1/4 for row 1, 0 on padding
    expected = torch.tensor([[1 / 6] * 3, [0.25, 0.25, 0.0]])
    assert torch.allclose(values.grad, expected)
    assert not math.isnan(values.grad.sum().item())
