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

from ..core import argtree
from ..core.failures import Failure
from ..core.ids import new_id
from ..core.messages import CMD, IDS_AT, message
from ..core.ops import resolve_op
from ..core.refs import ChainRef, Ref, WorkerRef
from ..core.allowlist import check_reference_attribute
from ..errors import ProtocolError, WorkerMismatchError
from . import heap
from .store import ObjectStore
from .validate import check_metas, short


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


def resolve_ref(store: ObjectStore, ref: Ref) -> Any:
    """The object a :class:`Ref` names: a stored object or one of its attributes.

    An attribute of a stored chain hop stays a (non-owning) hop with ``attr`` set: the
    attribute is resolved by the worker that holds the tensor.
    """
    attr = ref.attr
    if attr is not None:
        check_reference_attribute(attr)  # .grad or .data, never a free attribute lookup
    obj = _stored(store, ref.id)
    if attr is None:
        return obj
    if isinstance(obj, ChainRef):
        if obj.attr is not None:
            raise ValueError(f"cannot take .{ref.attr} of the attribute pointer {obj!r}")
        return ChainRef(obj.location, obj.id_at_location, obj.id, owning=False, attr=ref.attr)
    value = getattr(obj, ref.attr)
    if value is None:
        raise ValueError(f"the tensor under id {ref.id} has no .{ref.attr} (it is None)")
    return value


def _resolve(store: ObjectStore, args: Any, ids_at: Any = None) -> tuple[Any, list[Any]]:
    """Replace every :class:`Ref`, and every plain id at a position ``ids_at`` names (see
    :data:`~syftzmq.core.messages.IDS_AT`), by the object it names; also return those objects.
    Nested arguments are measured first (:func:`argtree.check_budget`): a structure shared
    with itself would otherwise take forever to walk."""
    stored: list[Any] = []
    positional, named = args
    if argtree.is_flat(positional, named):  # the common case: one pass, no closure, no tree walk
        resolved = list(positional)
        for index, value in enumerate(resolved):
            if isinstance(value, Ref):
                resolved[index] = obj = resolve_ref(store, value)
                stored.append(obj)
        if ids_at is not None:  # after the refs: an object found here is never looked up again
            for index in _positions(ids_at, len(resolved)):
                object_id = resolved[index]
                if type(object_id) is not int:
                    _stored_under(store, object_id)  # raises, saying why
                obj = store.get(object_id)  # _stored_under, inlined: every command asks it
                if isinstance(obj, Failure):
                    raise DependencyFailed(obj)
                resolved[index] = obj
                stored.append(obj)
        if named:
            named = dict(named)
            for key, value in named.items():
                if isinstance(value, Ref):
                    named[key] = obj = resolve_ref(store, value)
                    stored.append(obj)
        return (tuple(resolved), named), stored
    if ids_at is not None:
        raise ProtocolError(f"{IDS_AT!r} is for flat arguments only")
    argtree.check_budget(*args)

    def lookup(value: Any) -> Any:
        if isinstance(value, Ref):
            obj = resolve_ref(store, value)
            stored.append(obj)
            return obj
        return value

    return argtree.map_args(lookup, *args), stored


def _positions(ids_at: Any, count: int) -> list[int]:
    """``ids_at`` checked: a list of positions among ``count`` arguments."""
    if type(ids_at) is not list:
        raise ProtocolError(f"{IDS_AT!r} must be a list of argument positions, got {short(ids_at)}")
    for index in ids_at:
        if type(index) is not int or not 0 <= index < count:
            raise ProtocolError(f"{IDS_AT!r} names no argument position: {short(index)}")
    return ids_at


def _stored_under(store: ObjectStore, object_id: Any) -> Any:
    """The object an id argument names (a stored failure fails the command)."""
    if type(object_id) is not int:
        raise ProtocolError(f"{IDS_AT!r} names an argument that is no object id: "
                            f"{short(object_id)}")
    return _stored(store, object_id)


def _stored(store: ObjectStore, object_id: int) -> Any:
    """The object stored under ``object_id``; a stored failure fails the command using it."""
    obj = store.get(object_id)
    if isinstance(obj, Failure):
        raise DependencyFailed(obj)
    return obj


def run_command(store: ObjectStore, msg: dict, op: tuple, sender: str,
                me: WorkerRef) -> Forward | None:
    """Execute or forward ``msg``, whose operation, resolved (:func:`op_from_wire`), is ``op``;
    raises on failure (the caller stores the failure). A forwarded command names the
    operation as ``msg`` did: the next hop resolves it itself."""
    (args, kwargs), stored = _resolve(store, (msg["args"], msg["kwargs"]), msg.get(IDS_AT))
    results: list[int] = msg["results"]
    for obj in stored:
        if isinstance(obj, ChainRef):  # this worker holds pointers: pass the command on
            pointers = [obj for obj in stored if isinstance(obj, ChainRef)]
            return _forward(store, msg, args, kwargs, stored, pointers, sender, me)

    grad = msg.get("grad", True)
    if grad == torch.is_grad_enabled():  # the common case; the context manager costs microseconds
        value = _apply(op, args, kwargs)
    else:
        with torch.set_grad_enabled(grad):
            value = _apply(op, args, kwargs)
    _store_results(store, results, value, sender)
    return None


def _apply(op: tuple, args: Any, kwargs: Any) -> Any:
    kind, target = op
    if kind == "func":
        return target(*args, **kwargs)
    if kind == "op":
        return resolve_op(target)(*args, **kwargs)
    if not args:
        raise TypeError(f"{kind} {target!r} needs a tensor to act on")
    if kind == "method":
        if target == "backward":
            heap.on_backward()
        return getattr(args[0], target)(*args[1:], **kwargs)
    if kind == "setattr":
        setattr(args[0], target, args[1])
        return None
    if kind == "getattr":
        return getattr(args[0], target)
    raise ValueError(f"unknown operation kind {kind!r}")


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
             pointers: list[ChainRef], sender: str, me: WorkerRef) -> Forward:
    location = pointers[0].location
    if len(pointers) != len(stored):
        raise WorkerMismatchError(
            f"operation mixes data stored on {me.id!r} with pointers to {location.id!r}")
    for pointer in pointers:
        if pointer.location.incarnation != location.incarnation:
            raise WorkerMismatchError(f"operation mixes pointers to {location.id!r} and "
                                      f"{pointer.location.id!r}")
    results: list[int] = msg["results"]
    metas = check_metas(msg.get("metas"), len(results)) or [None] * len(results)
    next_ids = [new_id() for _ in results]
    for result_id, next_id, meta in zip(results, next_ids, metas):
        store.put(result_id, ChainRef(location, next_id, new_id(), meta, owning=True), sender)

    def rename(value: Any) -> Any:
        return value.as_ref() if isinstance(value, ChainRef) else value

    next_args, next_kwargs = argtree.map_args(rename, args, kwargs)
    forwarded = message(CMD, origin=msg["origin"], op=msg["op"], args=next_args,
                        kwargs=next_kwargs, results=next_ids, metas=msg.get("metas"),
                        grad=msg.get("grad", True))
    return Forward(location, forwarded)
