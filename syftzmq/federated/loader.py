"""``FederatedDataLoader``: batches of a :class:`FederatedDataset`, built where the data lives.

Order (as PySyft 0.2): all of one worker's batches, then the next worker's, in
``federated_dataset.workers`` order. Each worker has its own sampler, so ``shuffle`` and
``drop_last`` act within a worker and never reorder the workers.

A batch is two commands to its worker — ``data[idx]`` and ``targets[idx]`` with the batch's
index tensor — so no sample passes through the client, and the result is a copy, as stacking
the samples would be (PySyft indexed every sample remotely and stacked them: 2·B+2 commands).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Iterator

import torch
from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler

from ..tensor.pointer import PointerTensor

logger = logging.getLogger(__name__)


def default_collate(batch: list) -> Any:
    """Stack a list of samples into a batch: tensors (or pointers) with ``torch.stack``,
    (data, target) pairs field by field."""
    first = batch[0]
    if isinstance(first, (torch.Tensor, PointerTensor)):
        return torch.stack(batch, 0)
    if isinstance(first, (tuple, list)):
        return [default_collate(list(field)) for field in zip(*batch)]
    if isinstance(first, bool) or not isinstance(first, (int, float)):
        raise TypeError(f"batch must contain tensors, numbers or sequences; found {type(first)}")
    return torch.tensor(batch)


class _Cursor:
    """One iterator's walk over the workers (PySyft's ``_DataLoaderIter``).

    It reads its current worker's batches; when they run out it forgets that worker and takes
    the first remaining one no other cursor is on. With one cursor that is simply every
    worker in turn. ``batches`` gives each worker's index batches, fresh for this cursor.
    """

    def __init__(self, position: int, batches: dict[int, Iterator], switch: bool) -> None:
        self.position = position
        self.batches = batches
        self.switch = switch

    def next_indices(self, cursors: list["_Cursor"]) -> tuple[int, Any] | None:
        """(worker position, indices) of this cursor's next batch; ``None`` ends the epoch."""
        while self.position in self.batches:
            try:
                return self.position, next(self.batches[self.position])
            except StopIteration:
                if not self.switch:
                    break
                del self.batches[self.position]
                busy = {cursor.position for cursor in cursors}
                free = next((p for p in self.batches if p not in busy), None)
                if free is None:
                    break
                self.position = free
        self.position = -1
        return None


def _plan_steps(cursors: list[_Cursor]) -> Iterator[list[tuple[int, Any]]]:
    """Each step's (worker position, indices) for every cursor, until one cursor ends."""
    while True:
        step = []
        for cursor in cursors:
            found = cursor.next_indices(cursors)
            if found is None:
                return
            step.append(found)
        yield step


class FederatedDataLoader:
    """Iterate over a :class:`FederatedDataset` in batches that stay on their workers.

    Each step yields ``(data, target)``: two pointers on one worker (``data.location``).
    With ``iter_per_worker=True`` a step is ``{worker: (data, target)}`` with one batch from
    every worker, and the epoch ends when the smallest worker runs out. With
    ``num_iterators=n > 1`` (at most one less than the number of workers) a step is
    ``{worker: (data, target)}`` from ``n`` distinct workers; each of the ``n`` iterators walks
    its own epoch over the workers, so an epoch then reads the data up to ``n`` times, and it
    ends when an iterator finds no free worker (PySyft's documented behaviour).

    ``len(loader)`` is the true number of steps (PySyft divided the *total* sample count by the
    batch size, which miscounts when a worker's share is not a multiple of it).
    """

    def __init__(self, federated_dataset: Any, batch_size: int = 8, shuffle: bool = False,
                 num_iterators: int = 1, drop_last: bool = False,
                 collate_fn: Callable[[list], Any] = default_collate,
                 iter_per_worker: bool = False, **kwargs: Any) -> None:
        if kwargs:
            options = ", ".join(f"{key}: {value}" for key, value in kwargs.items())
            logger.warning("The following options are not supported: %s", options)
        workers = getattr(federated_dataset, "workers", None)
        if workers is None or not hasattr(federated_dataset, "__getitem__"):
            raise TypeError(f"FederatedDataLoader needs a sy.FederatedDataset (for instance "
                            f"dataset.federate((bob, alice))), not a "
                            f"{type(federated_dataset).__name__}; for local data use "
                            f"torch.utils.data.DataLoader")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(num_iterators, bool) or not isinstance(num_iterators, int) \
                or num_iterators < 1:
            raise ValueError(f"num_iterators must be a positive integer, got {num_iterators!r}")
        self.federated_dataset = federated_dataset
        self.workers: list[str] = list(workers)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.collate_fn = collate_fn
        self.iter_per_worker = iter_per_worker
        self.batch_samplers = {}
        for worker in self.workers:
            samples = range(len(federated_dataset[worker]))
            sampler = RandomSampler(samples) if shuffle else SequentialSampler(samples)
            self.batch_samplers[worker] = BatchSampler(sampler, batch_size, drop_last)
        if iter_per_worker:
            self.num_iterators = len(self.workers)
        else:
            # a cursor that runs out needs a free worker to move to: at most n - 1 cursors
            cap = max(1, len(self.workers) - 1)
            if num_iterators > cap:
                logger.warning("num_iterators=%d is more than this dataset's %d workers allow; "
                               "using %d", num_iterators, len(self.workers), cap)
            self.num_iterators = min(num_iterators, cap)

    # ----------------------------------------------------------------- iteration
    def _cursors(self, batches_of: Callable[[str], Iterator]) -> list[_Cursor]:
        if not self.workers:
            return []
        if self.iter_per_worker:
            return [_Cursor(p, {p: batches_of(w)}, switch=False)
                    for p, w in enumerate(self.workers)]
        return [_Cursor(i, {p: batches_of(w) for p, w in enumerate(self.workers)}, switch=True)
                for i in range(self.num_iterators)]

    def __iter__(self) -> Iterator[Any]:
        cursors = self._cursors(lambda worker: iter(self.batch_samplers[worker]))
        as_dict = self.iter_per_worker or self.num_iterators > 1
        # every cursor's indices are drawn before any batch is built, so a step cut short
        # by an iterator running out sends nothing
        for step in _plan_steps(cursors):
            batches = [self._batch(self.workers[position], indices) for position, indices in step]
            if as_dict:
                yield {data.location: (data, target) for data, target in batches}
            else:
                yield batches[0]

    def _batch(self, worker: str, indices: list[int]) -> tuple[Any, Any]:
        dataset = self.federated_dataset[worker]
        data, targets = dataset.data, dataset.targets
        fast = (self.collate_fn is default_collate and getattr(dataset, "transform_", None) is None
                and isinstance(data, PointerTensor) and isinstance(targets, PointerTensor))
        if fast:
            index = torch.tensor(indices, dtype=torch.long)
            return data[index], targets[index]
        data, target = self.collate_fn([dataset[i] for i in indices])
        return data, target

    def __len__(self) -> int:
        """How many steps an epoch has: counted per worker, as the iteration does it."""
        def count(worker: str) -> Iterator[int]:
            size = len(self.federated_dataset[worker])
            whole = size // self.batch_size if self.drop_last else math.ceil(size / self.batch_size)
            return iter(range(whole))
        return sum(1 for _ in _plan_steps(self._cursors(count)))

    def __repr__(self) -> str:
        return (f"<FederatedDataLoader workers={self.workers} batch_size={self.batch_size} "
                f"shuffle={self.shuffle} drop_last={self.drop_last}>")
