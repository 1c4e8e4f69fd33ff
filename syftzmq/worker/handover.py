"""When a worker may hand a stored tensor's pages to its receiver instead of copying them.

A tensor that reached this worker through shared memory lives in pages the receiver of a move
or a get can map too (:mod:`syftzmq.wire.shm_map`). Handing them over is a move of the memory,
so it is right only if nothing else here sees it: no view stored under another id, no other
tensor over the same storage, no container or autograd graph holding the tensor. :func:`lendable`
checks exactly that, by counting references: the store's is the only one.

After a move hands pages over, the source drops the tensor. Should anything of the source
still hold the memory then (a view made while the move was under way), :func:`settle` gives it
a private copy before the move is reported done, so it never sees the destination's writes.

A get may also lend a parameter that autograd holds besides the store: a training step's graph
keeps every leaf it used (its gradient accumulator, and saved tensors for backward), so after
``loss.backward()`` and ``optimizer.step()`` the weights a ``model.get()`` takes are never
sole. Autograd only reads them (a backward through saved tensors), so the pages are lent with
:data:`~syftzmq.wire.serde.Lent` ``keeps``: the receiver maps them copy-on-write
(:mod:`syftzmq.wire.shm_map`), and its writes land in pages of its own; the graph here keeps
seeing the values it saved. Nothing here writes them after the get: the store gave the tensor
up, and the copy a get holds until confirmed is written again only once its requester sent it
back unchanged (:mod:`syftzmq.tensor.unchanged`), having dropped its own. Tutorial Part 6: the
1.6 MB ``fc1.weight`` was written into a fresh segment per batch (0.6-0.7 ms of the worker's
reply, on the loop's critical path).
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from ..wire import serde, shm
from ..wire.shm_map import Mapping, mapping_at
from .store import ObjectStore

_PLAIN = (torch.Tensor, torch.nn.Parameter)


def offer(store: ObjectStore, object_id: int, *, autograd_may_keep: bool = False) -> Any:
    """The object under ``object_id`` as it should be sent when it leaves this worker: wrapped
    in :class:`~syftzmq.wire.serde.Lent` if its pages may be handed over, else as it is.
    ``autograd_may_keep`` (a get): also a leaf that autograd holds besides the store, lent to
    be mapped copy-on-write (see the module docstring).

    Call it while the store holds the object and the caller holds no reference of its own.
    A tensor below the shared-memory threshold is sent as it is without looking further:
    copying its few bytes is what a hand-over would save, and checking costs more.
    """
    obj = store.get(object_id)  # the store's reference and this one
    if type(obj) not in _PLAIN or obj.numel() * obj.element_size() < shm.THRESHOLD:
        return obj
    if _sole(obj, 2):
        return serde.Lent(obj)
    if autograd_may_keep and _kept_by_autograd(obj, 2):
        return serde.Lent(obj, keeps=True)
    return obj


def _sole(tensor: torch.Tensor, holders: int) -> bool:
    """Whether ``holders`` references (the caller's) are all there are to ``tensor``, its
    storage is used by it alone, and its memory is exactly one lendable mapping."""
    if sys.getrefcount(tensor) != holders + 2:  # + this frame's argument and getrefcount's
        return False
    if tensor._use_count() != 1:
        return False  # held in C++ (an autograd graph)
    return _one_mapping(tensor)


def _kept_by_autograd(tensor: torch.Tensor, holders: int) -> bool:
    """Whether ``tensor`` is a leaf that, besides the ``holders`` Python references, only
    autograd holds (in C++, which keeps its Python object alive: :data:`_HELD_IN_CPP`), its
    storage used by it alone, its memory one lendable mapping."""
    if not (tensor.is_leaf and tensor.requires_grad) or tensor._use_count() < 2:
        return False
    if sys.getrefcount(tensor) != holders + 2 + _HELD_IN_CPP:
        return False
    return _one_mapping(tensor)


def _one_mapping(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is no view, the only tensor over its storage, and exactly the
    memory of one lendable mapping."""
    if tensor._base is not None or not tensor.is_contiguous():
        return False
    if tensor.is_conj() or tensor.is_neg() or tensor.device.type != "cpu" or tensor.is_sparse:
        return False
    storage = tensor.untyped_storage()
    if torch._C._storage_Use_Count(storage._cdata) != 2:  # the tensor's and ``storage``'s
        return False
    nbytes = storage.nbytes()
    if tensor.storage_offset() != 0 or tensor.numel() * tensor.element_size() != nbytes:
        return False
    return mapping_at(tensor.data_ptr(), nbytes) is not None


def _held_in_cpp() -> int:
    """The Python references torch itself adds to a tensor C++ holds too (a graph's leaf):
    counted once, the way :func:`_kept_by_autograd` counts, so that any other holder shows."""
    leaf = torch.zeros(2, requires_grad=True)
    bare = sys.getrefcount(leaf)
    graph = (leaf * 2).sum()
    held = sys.getrefcount(leaf) - bare
    del graph
    return held


_HELD_IN_CPP = _held_in_cpp()


def mapping_of(obj: Any) -> Mapping | None:
    """The mapping a lent object's pages belong to (None for anything else)."""
    if not isinstance(obj, serde.Lent):
        return None
    tensor = obj.tensor
    return mapping_at(tensor.data_ptr(), tensor.numel() * tensor.element_size())


def settle(mappings: list) -> None:
    """After a hand-over, once the source dropped its references: whatever still holds one
    of these mappings (weak references) gets private pages."""
    for weak in mappings:
        mapping = weak()
        if mapping is not None:
            mapping.make_private()
