"""``BaseDataset`` (data + targets, local or on a worker) and ``FederatedDataset`` (one sent
dataset per worker, keyed by worker id)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils.data import Dataset

from ..tensor.pointer import PointerTensor


def _is_remote(value: Any) -> bool:
    return isinstance(value, PointerTensor)


class BaseDataset(Dataset):
    """Inputs ``data`` and labels ``targets`` that travel together.

    ``ds[i]`` is ``(data[i], targets[i])``. ``transform`` (optional) is applied per item
    through numpy, as PySyft does, so it needs local data; use :meth:`transform` to apply a
    torch function to all the data at once, which also works on a sent dataset (it runs on
    the worker).
    """

    def __init__(self, data: Any, targets: Any, transform: Callable | None = None) -> None:
        if _sized(data) and _sized(targets) and len(data) != len(targets):
            raise ValueError(f"BaseDataset needs as many targets as data points: got "
                             f"{len(data)} data points and {len(targets)} targets")
        self.data = data
        self.targets = targets
        self.transform_ = transform
        # Set while the dataset belongs to a FederatedDataset: it must be fetched through it.
        self.federated = False

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: Any) -> tuple[Any, Any]:
        data_elem = self.data[index]
        if self.transform_ is not None:
            if _is_remote(data_elem):
                raise TypeError("this dataset's per-item transform runs through numpy, which "
                                "needs the data; apply it to all the data on the worker with "
                                "ds.transform(fn), or before sending")
            data_elem = torch.tensor(self.transform_(data_elem.numpy()))
        return data_elem, self.targets[index]

    def transform(self, transform: Callable[[Any], Any]) -> "BaseDataset":
        """Replace ``data`` by ``transform(data)``: all of it at once, where the data lives."""
        if type(self.data) is torch.Tensor or _is_remote(self.data):
            self.data = transform(self.data)
            return self
        raise TypeError(f"transforms can be applied only on torch tensors (or pointers to "
                        f"them); this dataset's data is a {type(self.data).__name__}")

    # ----------------------------------------------------------------- location
    @property
    def location(self) -> Any:
        """The worker holding the data (a local dataset has none: send it first)."""
        if not _is_remote(self.data):
            raise AttributeError("this dataset is local and has no location; "
                                 "use .send(worker) or .federate(workers) first")
        return self.data.location

    def send(self, worker: Any, **kwargs: Any) -> "BaseDataset":
        """A dataset whose data and targets are pointers on ``worker``; this one is unchanged."""
        if self.transform_ is not None:
            raise ValueError("a dataset with a per-item transform cannot be sent (the transform "
                             "runs through numpy on local data); apply it first with "
                             "ds.transform(fn), or build the dataset without it")
        return BaseDataset(self.data.send(worker, **kwargs), self.targets.send(worker, **kwargs))

    def get(self) -> "BaseDataset":
        """Fetch data and targets back from their worker; returns this dataset, now local."""
        if self.federated:
            raise ValueError("use .get_dataset(worker) to get this dataset")
        if not _is_remote(self.data):
            raise ValueError("this dataset is already local: there is nothing to get")
        self.data = self.data.get()
        self.targets = self.targets.get() if _is_remote(self.targets) else self.targets
        return self

    def get_data(self) -> Any:
        return self.data

    def get_targets(self) -> Any:
        return self.targets

    def __repr__(self) -> str:
        return f"BaseDataset\n\tData: {self.data}\n\ttargets: {self.targets}"


def _sized(value: Any) -> bool:
    if isinstance(value, (torch.Tensor, PointerTensor)):
        return value.dim() > 0
    return hasattr(value, "__len__")


class FederatedDataset:
    """Datasets already sent to workers, one per worker, looked up by worker id.

    It is what :class:`~syftzmq.federated.FederatedDataLoader` reads. ``len`` is the total
    number of samples across workers.
    """

    def __init__(self, datasets: list[BaseDataset]) -> None:
        self.datasets: dict[str, BaseDataset] = {}
        for dataset in datasets:
            data = getattr(dataset, "data", None)
            targets = getattr(dataset, "targets", None)
            if not _is_remote(data) or not _is_remote(targets):
                raise TypeError("a FederatedDataset is made of datasets already on workers; "
                                "send each first (ds.send(worker)) or use "
                                "dataset.federate(workers)")
            worker_id = data.location.id
            if targets.location.id != worker_id:
                raise ValueError(f"a dataset's data is on {worker_id!r} but its targets are on "
                                 f"{targets.location.id!r}; move one so both are on one worker")
            if worker_id in self.datasets:
                # PySyft kept the last one silently, dropping (and deleting) the earlier data.
                raise ValueError(f"two datasets are on worker {worker_id!r}; a FederatedDataset "
                                 f"holds one per worker (concatenate them on the worker first)")
            self.datasets[worker_id] = dataset
            dataset.federated = True

    @property
    def workers(self) -> list[str]:
        """The ids of the workers holding the data, in the order the datasets were given."""
        return list(self.datasets.keys())

    locations = workers

    def get_dataset(self, worker: Any) -> BaseDataset:
        """Fetch one worker's dataset back (now local) and remove it from this one."""
        key = self._key(worker)
        dataset = self.datasets[key]
        dataset.federated = False
        dataset.get()
        del self.datasets[key]
        return dataset

    def _key(self, worker: Any) -> str:
        key = worker if isinstance(worker, str) else getattr(worker, "id", worker)
        if key not in self.datasets:
            raise KeyError(f"no dataset on worker {key!r}; this FederatedDataset has "
                           f"{self.workers}")
        return key

    def __getitem__(self, worker: Any) -> BaseDataset:
        return self.datasets[self._key(worker)]

    def __contains__(self, worker: Any) -> bool:
        key = worker if isinstance(worker, str) else getattr(worker, "id", worker)
        return key in self.datasets

    def __len__(self) -> int:
        return sum(len(dataset) for dataset in self.datasets.values())

    def __repr__(self) -> str:
        return (f"FederatedDataset\n    Distributed accross: {', '.join(self.workers)}\n"
                f"    Number of datapoints: {len(self)}\n")
