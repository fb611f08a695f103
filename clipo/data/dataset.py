"""A list-like dataset of prompts and a deterministic, resumable shuffling iterator over it.

A trainer checkpoints the iterator's :class:`DataPosition` (seed, epoch, offset) and, after a restart,
continues with exactly the examples it would have seen next. Batches (:meth:`PromptIterator.next_batch`) never
mix two epochs: like a PyTorch ``DataLoader(drop_last=True)`` (verl's), the tail of an epoch too short for a
whole batch is skipped and the next epoch starts with a fresh shuffle.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union, overload

from .errors import DataError
from .records import LoadReport, PromptExample

__all__ = ["PromptDataset", "DataPosition", "PromptIterator", "epoch_order"]


@dataclass(frozen=True)
class DataPosition:
    """Where an iterator is: the next example is number ``offset`` of epoch ``epoch``'s order for ``seed``."""

    epoch: int = 0
    offset: int = 0
    seed: int = 0

    def to_dict(self) -> Dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "DataPosition":
        missing = {"epoch", "offset", "seed"} - set(d)
        if missing:
            raise DataError(f"data position {d!r} lacks {sorted(missing)}; expected keys epoch, offset, seed "
                            "(as written by DataPosition.to_dict / PromptIterator.state_dict)")
        pos = cls(epoch=int(d["epoch"]), offset=int(d["offset"]), seed=int(d["seed"]))
        if pos.epoch < 0 or pos.offset < 0:
            raise DataError(f"data position {d!r} has a negative epoch or offset")
        return pos


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> List[int]:
    """The order of the ``n`` row positions in ``epoch``: a permutation fixed by ``(seed, epoch)``.

    Seeded with a string so the order depends on nothing but these values (not on the Python hash
    seed, NumPy's version or the global RNG state); each epoch gets a fresh permutation.
    """
    order = list(range(n))
    if shuffle:
        random.Random(f"clipo.data:{seed}:{epoch}").shuffle(order)
    return order


class PromptDataset(Sequence[PromptExample]):
    """An immutable list of :class:`PromptExample` with the :class:`LoadReport` of its load.

    Supports ``len``, integer and slice indexing (a slice gives a new ``PromptDataset``), iteration in
    file order, and :meth:`iterator` for shuffled, resumable passes.
    """

    def __init__(self, examples: Sequence[PromptExample], report: Optional[LoadReport] = None,
                 reports: Optional[List[LoadReport]] = None):
        self._examples: List[PromptExample] = list(examples)
        for k, ex in enumerate(self._examples):
            if not isinstance(ex, PromptExample):
                raise TypeError(f"PromptDataset item {k} is a {type(ex).__name__}, expected PromptExample")
        self.report = report
        self.reports: List[LoadReport] = reports if reports is not None else ([report] if report else [])
        self._fingerprint: Optional[str] = None

    def __len__(self) -> int:
        return len(self._examples)

    @overload
    def __getitem__(self, i: int) -> PromptExample: ...

    @overload
    def __getitem__(self, i: slice) -> "PromptDataset": ...

    def __getitem__(self, i: Union[int, slice]) -> Union[PromptExample, "PromptDataset"]:
        if isinstance(i, slice):
            return PromptDataset(self._examples[i])
        return self._examples[i]

    def __iter__(self) -> Iterator[PromptExample]:
        return iter(self._examples)

    def __repr__(self) -> str:
        sources = sorted({ex.data_source for ex in self._examples})
        shown = sources[:3] + (["..."] if len(sources) > 3 else [])
        return f"PromptDataset({len(self)} examples, data_sources={shown})"

    @property
    def data_sources(self) -> List[str]:
        """Distinct data sources, in first-appearance order."""
        return list(dict.fromkeys(ex.data_source for ex in self._examples))

    def filter(self, predicate) -> "PromptDataset":
        """A new dataset with the examples for which ``predicate(example)`` is true."""
        return PromptDataset([ex for ex in self._examples if predicate(ex)])

    def drop_long_prompts(self, lengths: Sequence[int], limit: int) -> Tuple["PromptDataset", int]:
        """The examples whose prompt length (``lengths[k]`` for example ``k``, e.g. in tokens) is at most
        ``limit``, and how many were dropped; ``limit <= 0`` keeps everything. The load reports are kept.

        The lengths come from the caller (the trainer tokenizes the rendered prompts), so the data layer needs
        no tokenizer. The result may be empty; deciding whether that is an error is the caller's business.
        """
        if len(lengths) != len(self._examples):
            raise ValueError(f"drop_long_prompts: {len(lengths)} lengths for {len(self._examples)} examples")
        if limit <= 0:
            return self, 0
        kept = [ex for ex, length in zip(self._examples, lengths) if length <= limit]
        if len(kept) == len(self._examples):
            return self, 0
        return PromptDataset(kept, self.report, list(self.reports)), len(self._examples) - len(kept)

    def fingerprint(self) -> str:
        """A short hash of the prompts, answers and sources, to check a checkpoint resumes the same data."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for ex in self._examples:
                h.update(json.dumps([ex.prompt, ex.ground_truth, ex.data_source], ensure_ascii=False,
                                    sort_keys=True).encode("utf-8"))
                h.update(b"\0")
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def iterator(self, *, seed: int = 0, shuffle: bool = True, position: Optional[DataPosition] = None,
                 epochs: Optional[int] = None) -> "PromptIterator":
        """A :class:`PromptIterator` over this dataset (endless unless ``epochs`` is given)."""
        return PromptIterator(self, seed=seed, shuffle=shuffle, position=position, epochs=epochs)


class PromptIterator(Iterator[PromptExample]):
    """Yields examples epoch after epoch, each epoch in the order :func:`epoch_order` gives.

    Iterating example by example (``next(it)``) visits every example of every epoch; :meth:`next_batch`
    draws whole batches from one epoch and skips an epoch's short tail (``drop_last``).
    :attr:`position` is the position of the *next* example, so saving it after consuming a batch and
    restoring it later (:meth:`state_dict` / :meth:`load_state_dict`, or ``position=``) resumes exactly.
    """

    def __init__(self, dataset: PromptDataset, *, seed: int = 0, shuffle: bool = True,
                 position: Optional[DataPosition] = None, epochs: Optional[int] = None):
        if len(dataset) == 0:
            raise DataError("cannot iterate over an empty PromptDataset (every row was bad or filtered out?)")
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs must be >= 1 or None, got {epochs}")
        self.dataset = dataset
        self.shuffle = shuffle
        self.epochs = epochs
        self._seed = seed
        self._epoch = 0
        self._offset = 0
        self._order: Optional[List[int]] = None
        if position is not None:
            self._set_position(position)

    def _set_position(self, pos: DataPosition) -> None:
        if pos.offset > len(self.dataset):
            raise DataError(f"data position offset {pos.offset} is beyond the dataset's {len(self.dataset)} "
                            "examples; was the checkpoint written for different data?")
        self._seed, self._epoch, self._offset = pos.seed, pos.epoch, pos.offset
        self._order = None

    @property
    def epoch(self) -> int:
        """The epoch of the last example or batch drawn (before any draw: the epoch the iterator starts in)."""
        return self._epoch

    @property
    def position(self) -> DataPosition:
        """Position of the next example (normalised: the end of an epoch is offset 0 of the next)."""
        if self._offset >= len(self.dataset):
            return DataPosition(epoch=self._epoch + 1, offset=0, seed=self._seed)
        return DataPosition(epoch=self._epoch, offset=self._offset, seed=self._seed)

    def __iter__(self) -> "PromptIterator":
        return self

    def __next__(self) -> PromptExample:
        if self._offset >= len(self.dataset):
            self._epoch, self._offset, self._order = self._epoch + 1, 0, None
        if self.epochs is not None and self._epoch >= self.epochs:
            raise StopIteration
        if self._order is None:
            self._order = epoch_order(len(self.dataset), self._seed, self._epoch, self.shuffle)
        ex = self.dataset[self._order[self._offset]]
        self._offset += 1
        return ex

    def next_batch(self, size: int) -> List[PromptExample]:
        """The next ``size`` examples, all from one epoch.

        As a ``DataLoader`` with ``drop_last=True``: when fewer than ``size`` examples are left in the current
        epoch, they are skipped and the batch is the first ``size`` of the next epoch's order, so an epoch
        gives ``len(dataset) // size`` batches and every example appears at most once per epoch. Returns []
        once ``epochs`` (when set) are done.

        Raises:
            ValueError: ``size < 1``.
            DataError: ``size`` exceeds the dataset, so no batch could ever be filled.
        """
        if size < 1:
            raise ValueError(f"batch size must be >= 1, got {size}")
        n = len(self.dataset)
        if size > n:
            raise DataError(f"a batch of {size} examples cannot be drawn from a dataset of {n}: batches never mix "
                            "epochs (drop_last), so the dataset needs at least one whole batch")
        if n - self._offset < size:  # the epoch's tail cannot fill a batch: drop it, start the next epoch
            self._epoch, self._offset, self._order = self._epoch + 1, 0, None
        if self.epochs is not None and self._epoch >= self.epochs:
            return []
        if self._order is None:
            self._order = epoch_order(n, self._seed, self._epoch, self.shuffle)
        batch = [self.dataset[i] for i in self._order[self._offset:self._offset + size]]
        self._offset += size
        return batch

    def state_dict(self) -> Dict[str, Any]:
        """JSON-serialisable state: the position plus what it is valid for (size, fingerprint, shuffle)."""
        state: Dict[str, Any] = self.position.to_dict()
        state.update(num_examples=len(self.dataset), fingerprint=self.dataset.fingerprint(), shuffle=self.shuffle)
        return state

    def load_state_dict(self, state: Dict[str, Any], *, strict: bool = True) -> None:
        """Resume from :meth:`state_dict`. With ``strict`` (default) the dataset must be the same one
        (same size and fingerprint) and the shuffle flag must match, since otherwise the order differs."""
        if strict:
            problems = []
            if "num_examples" in state and state["num_examples"] != len(self.dataset):
                problems.append(f"{state['num_examples']} examples then, {len(self.dataset)} now")
            if "fingerprint" in state and state["fingerprint"] != self.dataset.fingerprint():
                problems.append("the prompts/answers differ (fingerprint mismatch)")
            if "shuffle" in state and bool(state["shuffle"]) != self.shuffle:
                problems.append(f"shuffle={state['shuffle']} then, {self.shuffle} now")
            if problems:
                raise DataError("cannot resume the data position: " + "; ".join(problems) +
                                ". Fix: load the same data with the same options, or pass strict=False to "
                                "reuse only epoch/offset/seed.")
        self._set_position(DataPosition.from_dict(state))
