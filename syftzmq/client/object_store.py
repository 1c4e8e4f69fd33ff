"""``worker.object_store``: PySyft's view of a worker's store, read from the worker process.

In PySyft the object store lived in the same process (``worker.object_store._objects`` was the
dict itself). Here the store is in the worker process, so each read is an observation of it:
``_objects`` and ``_tensors`` are snapshots taken when read, and ``get_obj(id)`` fetches a copy
of one object, which stays on the worker. Changing a snapshot changes nothing remote.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ObjectNotFoundError
from ..tensor.pointer import PointerTensor


def not_found(object_id: Any, worker_id: str) -> ObjectNotFoundError:
    """PySyft's message for an object a worker does not hold, and what to check."""
    return ObjectNotFoundError(
        f'Object "{object_id}" not found on worker! Worker {worker_id!r} holds no object under '
        f"this id: it was deleted when its last pointer died, fetched with .get(), moved, or "
        f"dropped by clear_objects(). Look at worker._objects to see what it holds.")


def tensors_of(objects: dict) -> dict:
    """The entries of a store snapshot that are tensors or pointers (PySyft's ``_tensors``)."""
    return {object_id: obj for object_id, obj in objects.items()
            if isinstance(obj, (torch.Tensor, PointerTensor))}


class RemoteObjectStore:
    """``worker.object_store``: ``_objects``, ``_tensors`` and ``get_obj`` of one worker."""

    def __init__(self, worker: Any) -> None:
        self._worker = worker

    @property
    def _objects(self) -> dict:
        """A snapshot of the worker's store: id -> tensor (or pointer, for stored pointers)."""
        return self._worker._objects

    @property
    def _tensors(self) -> dict:
        """The snapshot's tensors and pointers (what is not a tensor, a plan's code, is left out)."""
        return tensors_of(self._objects)

    def get_obj(self, object_id: int) -> Any:
        """A copy of the object under ``object_id``; it stays on the worker. Raises
        :class:`ObjectNotFoundError` if the worker holds nothing under that id."""
        worker = self._worker
        try:
            return worker.session.object_of(worker.ref, object_id)
        except KeyError:
            raise not_found(object_id, worker.id) from None

    def __repr__(self) -> str:
        return f"<ObjectStore of worker {self._worker.id!r}>"
