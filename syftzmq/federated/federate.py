"""``dataset.federate(workers)``: cut a local dataset in order and send one part per worker."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .dataset import BaseDataset, FederatedDataset

logger = logging.getLogger(__name__)


def _tensor_pair(dataset: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The (data, targets) tensors of a dataset that is just two tensors, else ``None``."""
    if isinstance(dataset, BaseDataset):
        if (dataset.transform_ is None and type(dataset.data) is torch.Tensor
                and type(dataset.targets) is torch.Tensor):
            return dataset.data, dataset.targets
        return None
    if isinstance(dataset, TensorDataset):
        if len(dataset.tensors) != 2:
            raise ValueError(f"federate() needs (data, targets) samples; this TensorDataset "
                             f"has {len(dataset.tensors)} tensors per sample")
        return dataset.tensors[0], dataset.tensors[1]
    return None


def _chunks(dataset: Any, size: int):
    """(data, targets) chunks of ``size`` samples, in order (the last may be shorter)."""
    pair = _tensor_pair(dataset)
    if pair is not None:
        data, targets = pair
        for start in range(0, len(data), size):
            # clone: a slice is a view, and what is sent must be just this chunk's samples
            yield data[start:start + size].clone(), targets[start:start + size].clone()
        return
    for batch in DataLoader(dataset, batch_size=size):
        if not isinstance(batch, (list, tuple)) or len(batch) != 2:
            raise TypeError("federate() needs a dataset whose samples are (data, target) pairs")
        yield batch[0], batch[1]


def federate(dataset: Any, *workers: Any, **kwargs: Any) -> FederatedDataset:
    """Split ``dataset`` across ``workers`` and return the :class:`FederatedDataset`.

    As in PySyft, the samples are cut in order into chunks of ``ceil(N / k)`` and chunk ``i``
    goes to ``workers[i % k]``; a worker left without samples (N=6 on 4 workers gives
    2+2+2+0) is not part of the result. ``kwargs`` are passed to each tensor's ``send``.
    ``federate(ds, bob, alice)`` and ``federate(ds, (bob, alice))`` are the same.
    """
    if len(workers) == 1 and isinstance(workers[0], (list, tuple)):
        workers = tuple(workers[0])
    if not workers:
        raise ValueError("federate() needs at least one worker, e.g. dataset.federate((bob, alice))")
    total = len(dataset)
    if total == 0:
        raise ValueError("cannot federate an empty dataset")
    size = math.ceil(total / len(workers))
    logger.info("Scanning and sending data to %s...", ", ".join(str(w.id) for w in workers))
    datasets = []
    for index, (data, targets) in enumerate(_chunks(dataset, size)):
        worker = workers[index % len(workers)]
        datasets.append(BaseDataset(data.send(worker, **kwargs), targets.send(worker, **kwargs)))
    return FederatedDataset(datasets)


def _dataset_federate(self: Dataset, *workers: Any, **kwargs: Any) -> FederatedDataset:
    """Split this dataset across ``workers``: see :func:`syftzmq.federated.federate`."""
    return federate(self, *workers, **kwargs)


def install() -> None:
    """Give every ``torch.utils.data.Dataset`` a ``.federate(workers)`` method (as PySyft's
    hook did). Installing twice is harmless."""
    Dataset.federate = _dataset_federate
