"""PromptDataset indexing and the deterministic, resumable shuffling iterator."""
from __future__ import annotations

import json

import pytest

from clipo.data import DataError, DataPosition, PromptDataset, PromptExample, epoch_order


def _ds(n: int = 10) -> PromptDataset:
    return PromptDataset([PromptExample(f"q{i}", str(i), "toy", i) for i in range(n)])


def test_list_like_access():
    ds = _ds()
    assert len(ds) == 10 and ds[3].index == 3 and ds[-1].index == 9
    part = ds[2:5]
    assert isinstance(part, PromptDataset) and [ex.index for ex in part] == [2, 3, 4]
    assert [ex.index for ex in ds] == list(range(10))
    assert len(ds.filter(lambda ex: ex.index % 2 == 0)) == 5
    with pytest.raises(TypeError):
        PromptDataset(["not an example"])


def test_order_is_a_fixed_permutation_per_seed_and_epoch():
    a, b = epoch_order(50, seed=1, epoch=0), epoch_order(50, seed=1, epoch=0)
    assert a == b and sorted(a) == list(range(50))
    assert a != epoch_order(50, seed=2, epoch=0) and a != epoch_order(50, seed=1, epoch=1)
    assert epoch_order(5, seed=1, epoch=0, shuffle=False) == [0, 1, 2, 3, 4]


def test_epochs_cover_every_example_once():
    it = _ds().iterator(seed=7, epochs=2)
    seen = [ex.index for ex in it]
    assert len(seen) == 20 and sorted(seen[:10]) == sorted(seen[10:]) == list(range(10))
    assert seen[:10] != seen[10:]  # a new order each epoch


def test_resume_gives_the_same_order():
    ds = _ds(10)
    e0, e1, e2 = (epoch_order(10, seed=5, epoch=e) for e in range(3))
    it = ds.iterator(seed=5)
    # Batches of 4 from 10: epoch 0 gives two (its last 2 examples are dropped), then epoch 1 starts afresh.
    first = [[ex.index for ex in it.next_batch(4)] for _ in range(3)]
    assert first == [e0[0:4], e0[4:8], e1[0:4]]
    state = json.loads(json.dumps(it.state_dict()))  # survives a JSON checkpoint
    assert state["epoch"] == 1 and state["offset"] == 4 and state["seed"] == 5
    resumed = ds.iterator(seed=999)  # the seed comes from the state
    resumed.load_state_dict(state)
    rest = [[ex.index for ex in resumed.next_batch(4)] for _ in range(3)]
    assert rest == [e1[4:8], e2[0:4], e2[4:8]]
    again = ds.iterator(position=DataPosition.from_dict(state))
    assert [ex.index for ex in again.next_batch(3)] == e1[4:7]


def test_position_at_epoch_end_is_normalised():
    it = _ds(4).iterator(seed=0)
    it.next_batch(4)
    assert it.position == DataPosition(epoch=1, offset=0, seed=0)


def test_resume_refuses_different_data():
    it = _ds(10).iterator(seed=1)
    it.next_batch(3)
    state = it.state_dict()
    other = _ds(11).iterator()
    with pytest.raises(DataError, match="10 examples then, 11 now"):
        other.load_state_dict(state)
    changed = PromptDataset([PromptExample(f"q{i}", "x", "toy", i) for i in range(10)]).iterator()
    with pytest.raises(DataError, match="fingerprint"):
        changed.load_state_dict(state)
    changed.load_state_dict(state, strict=False)
    assert changed.position == DataPosition(epoch=0, offset=3, seed=1)
    with pytest.raises(DataError, match="shuffle=True then"):
        _ds(10).iterator(shuffle=False).load_state_dict(state)
    with pytest.raises(DataError, match="lacks"):
        DataPosition.from_dict({"epoch": 0})


def test_unshuffled_and_finite_iteration():
    it = _ds(3).iterator(shuffle=False, epochs=1)
    assert [ex.index for ex in it.next_batch(2)] == [0, 1]
    assert it.next_batch(2) == []  # example 2 alone cannot fill a batch (drop_last) and there is no epoch 1
    with pytest.raises(DataError, match="cannot be drawn"):
        _ds(3).iterator().next_batch(5)  # never mixes epochs, so a batch larger than the dataset is impossible
    with pytest.raises(DataError, match="empty"):
        PromptDataset([]).iterator()
