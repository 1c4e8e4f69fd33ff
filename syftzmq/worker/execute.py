"""What a worker does with a command: run it here, or pass it one hop along a chain.

If the command's operands are tensors stored here, it runs here and its results are stored under
the caller's ids. If they are pointers stored here (this worker is the middle of a chain), the
worker stores one new pointer per result and forwards the command, rewritten to name the next
hop's ids, to the worker those pointers point at: each hop gains exactly one object per result,
and no hop waits for the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils import _pytree as pytree

from ..errors import WorkerMismatchError
from ..ids import new_id
from ..pointer import PointerTensor
from ..protocol import CMD, Failure, Ref, WorkerRef, message
from .store import ObjectStore


class DependencyFailed(Exception):
    """An operand is the stored failure of an earlier command."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


@dataclass
class Forward:
    """A command to pass on to the next hop of a chain."""

    to: WorkerRef
    message: dict


def _resolve(store: ObjectStore, args: Any) -> tuple[Any, list[Any]]:
    """Replace every :class:`Ref` by the stored object; also return the stored objects."""
    stored: list[Any] = []

    def lookup(value: Any) -> Any:
        if isinstance(value, Ref):
            obj = store.get(value.id)
            if isinstance(obj, Failure):
                raise DependencyFailed(obj)
            stored.append(obj)
            return obj
        return value

    return pytree.tree_map(lookup, args), stored


def run_command(store: ObjectStore, msg: dict, sender: str, me: WorkerRef) -> Forward | None:
    """Execute or forward ``msg``; raises on failure (the caller stores the failure)."""
    (args, kwargs), stored = _resolve(store, (msg["args"], msg["kwargs"]))
    results: list[int] = msg["results"]
    pointers = [obj for obj in stored if isinstance(obj, PointerTensor)]
    if pointers:
        return _forward(store, msg, args, kwargs, stored, pointers, sender, me)

    kind, target = msg["op"]
    if kind == "method":
        if not args:
            raise TypeError(f"method {target!r} called without a tensor")
        value = getattr(args[0], target)(*args[1:], **kwargs)
    else:
        value = target(*args, **kwargs)
    _store_results(store, results, value, sender)
    return None


def _store_results(store: ObjectStore, results: list[int], value: Any, owner: str) -> None:
    if not results:
        return
    if len(results) == 1 and isinstance(value, torch.Tensor):
        store.put(results[0], value, owner)
        return
    leaves = pytree.tree_leaves(value)
    if len(leaves) == len(results):
        for result_id, leaf in zip(results, leaves):
            store.put(result_id, leaf, owner)
    elif len(results) == 1:
        store.put(results[0], value, owner)
    else:
        raise TypeError(f"operation returned {len(leaves)} values; {len(results)} expected")


def _forward(store: ObjectStore, msg: dict, args: Any, kwargs: Any, stored: list[Any],
             pointers: list[PointerTensor], sender: str, me: WorkerRef) -> Forward:
    location = pointers[0]._location
    if len(pointers) != len(stored):
        raise WorkerMismatchError(
            f"operation mixes data stored on {me.id!r} with pointers to {location.id!r}")
    for pointer in pointers:
        if pointer._location.node != location.node:
            raise WorkerMismatchError(f"operation mixes pointers to {location.id!r} and "
                                      f"{pointer._location.id!r}")
    results: list[int] = msg["results"]
    metas = msg.get("metas") or [None] * len(results)
    next_ids = [new_id() for _ in results]
    for result_id, next_id, meta in zip(results, next_ids, metas):
        store.put(result_id, PointerTensor(location, next_id, meta=meta, owning=True, owner=me),
                  sender)

    def rename(value: Any) -> Any:
        return Ref(value.id_at_location) if isinstance(value, PointerTensor) else value

    next_args, next_kwargs = pytree.tree_map(rename, (args, kwargs))
    forwarded = message(CMD, origin=msg["origin"], op=msg["op"], args=next_args,
                        kwargs=next_kwargs, results=next_ids, metas=msg.get("metas"))
    return Forward(location, forwarded)
