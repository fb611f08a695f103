"""Epochs end cleanly: batches never mix two epochs, an epoch's short tail is dropped (verl's drop_last)."""
from __future__ import annotations

import json

import pytest

from clipo.data import DataError, PromptDataset, PromptExample, epoch_order


def _ds(n: int) -> PromptDataset:
    return PromptDataset([PromptExample(f"q{i}", str(i), "toy", i) for i in range(n)])


def _indices(batch):
    return [ex.index for ex in batch]


def test_ten_prompts_in_batches_of_four_give_two_batches_per_epoch():
    # 10 // 4 = 2 batches per epoch: positions 0-3 and 4-7 of the epoch's order; positions 8 and 9 are dropped.
    it = _ds(10).iterator(seed=3)
    batches, epochs = [], []
    for _ in range(6):
        batches.append(_indices(it.next_batch(4)))
        epochs.append(it.epoch)
    assert epochs == [0, 0, 1, 1, 2, 2]
    for e in range(3):
        order = epoch_order(10, seed=3, epoch=e)
        assert batches[2 * e] == order[0:4] and batches[2 * e + 1] == order[4:8]
        seen = batches[2 * e] + batches[2 * e + 1]
        assert len(set(seen)) == 8  # every prompt at most once per epoch
        assert set(range(10)) - set(seen) == set(order[8:])  # the two dropped ones: the end of the order
    assert batches[0] + batches[1] != batches[2] + batches[3]  # epoch 1 is a fresh shuffle


def test_an_exact_multiple_drops_nothing_and_matches_example_iteration():
    # 12 = 3 × 4: batches are exactly the per-example stream cut in fours (what every earlier run saw).
    ds = _ds(12)
    stream = [ex.index for ex in ds.iterator(seed=1, epochs=2)]
    it = ds.iterator(seed=1)
    assert [i for _ in range(6) for i in _indices(it.next_batch(4))] == stream


def test_unshuffled_order_and_finite_epochs():
    it = _ds(5).iterator(shuffle=False, epochs=2)
    assert [_indices(it.next_batch(2)) for _ in range(5)] == [[0, 1], [2, 3], [0, 1], [2, 3], []]


def test_mixed_batch_sizes_still_never_cross_an_epoch():
    # A DAPO step draws extra batches of the same size; any size works as long as it fits the dataset.
    it = _ds(10).iterator(shuffle=False)
    assert _indices(it.next_batch(6)) == [0, 1, 2, 3, 4, 5]
    assert _indices(it.next_batch(3)) == [6, 7, 8]
    assert _indices(it.next_batch(3)) == [0, 1, 2] and it.epoch == 1  # only 9 was left: dropped


@pytest.mark.parametrize("draws_before_kill", [1, 2, 3, 5])
def test_resume_reproduces_the_sequence(draws_before_kill):
    ds = _ds(10)
    reference = ds.iterator(seed=9)
    expected = [_indices(reference.next_batch(4)) for _ in range(8)]
    it = ds.iterator(seed=9)
    got = [_indices(it.next_batch(4)) for _ in range(draws_before_kill)]
    state = json.loads(json.dumps(it.state_dict()))
    if draws_before_kill == 2:  # killed with epoch 0's two-prompt tail still pending: it is skipped on resume
        assert (state["epoch"], state["offset"]) == (0, 8)
    resumed = ds.iterator(seed=0)
    resumed.load_state_dict(state)
    got += [_indices(resumed.next_batch(4)) for _ in range(8 - draws_before_kill)]
    assert got == expected


def test_a_batch_larger_than_the_dataset_is_an_error():
    with pytest.raises(DataError, match="batch of 11 examples cannot be drawn from a dataset of 10"):
        _ds(10).iterator().next_batch(11)
    assert len(_ds(10).iterator().next_batch(10)) == 10
