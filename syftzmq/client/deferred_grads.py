"""Gradients a model's parameters carry to a worker, sent only if something there can see them.

A training loop sends the model with the gradients of its last step (``model.get()`` brought
them back) and clears them at once (``optimizer.zero_grad()``): shipping them is as many bytes
as the parameters, for nothing. So ``model.send`` sends each parameter without its gradient
when the gradient is *private* — nothing but the parameter refers to it, so nobody can change
it any more (:func:`syftzmq.tensor.modules.private_grad`) — and keeps it here. It then leaves, as an ordinary
``setattr`` command applied before anything else, with the first message to that worker that
could see it: anything but setting a parameter's gradient to ``None``
(:func:`clears_grad`), which forgets that parameter's kept gradient instead — and is not sent
at all, since the worker's parameter has no gradient to clear. Until then the
parameter's pointer describes the gradient as present, as it would be on the worker.

A kept gradient whose parameter's pointer is gone is dropped (the worker's object is being
deleted, so a ``setattr`` on it would fail).
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

from ..core.messages import CMD, IDS_AT, message
from ..core.refs import Ref, WorkerRef
from ..wire.shm_map import deferred_unmaps

_SET_GRAD = ("setattr", "grad")


def clears_grad(msg: dict) -> int | None:
    """The object id whose gradient ``msg`` sets to ``None``, if that is all it does."""
    if msg.get("op") != _SET_GRAD or msg.get("kind") != CMD:
        return None
    args = msg.get("args")
    if not isinstance(args, tuple) or len(args) != 2 or args[1] is not None:
        return None
    target = args[0]
    if type(target) is int:  # a whole object travels as its plain id (see IDS_AT)
        return target if 0 in msg.get(IDS_AT, ()) else None
    return target.id if type(target) is Ref and target.attr is None else None


class DeferredGrads:
    """Kept gradients by worker incarnation, then by the parameter's id there. Runs under
    the session's lock, like the sender that owns it."""

    def __init__(self) -> None:
        self._kept: dict[str, dict[int, tuple[weakref.ref, torch.Tensor]]] = {}
        self._refs: dict[str, WorkerRef] = {}

    def keep(self, pointer: Any, grad: torch.Tensor) -> None:
        """Keep ``grad``, the gradient of the parameter ``pointer`` points at."""
        location = pointer._location
        self._refs[location.incarnation] = location
        self._kept.setdefault(location.incarnation, {})[pointer.id_at_location] = (
            weakref.ref(pointer), grad)

    def locations(self) -> list[WorkerRef]:
        return [self._refs[incarnation] for incarnation in self._kept]

    def forget(self, incarnation: str, object_id: int) -> bool:
        """Forget the gradient kept for ``object_id``; whether there was one (then the
        worker's parameter has no gradient: nothing has reached it since it was stored)."""
        kept = self._kept.get(incarnation)
        if kept is None:
            return False
        with deferred_unmaps():  # a fetched gradient's pages are freed off this thread
            if kept.pop(object_id, None) is None:
                return False
        if not kept:
            del self._kept[incarnation]
            del self._refs[incarnation]
        return True

    def take(self, incarnation: str, origin: str) -> list[dict]:
        """The kept gradients of ``incarnation`` as ``setattr`` commands, in the order kept;
        those whose parameter's pointer is gone are dropped."""
        kept = self._kept.pop(incarnation, None)
        self._refs.pop(incarnation, None)
        if not kept:
            return []
        return [message(CMD, origin=origin, op=_SET_GRAD, args=(Ref(object_id), grad), kwargs={},
                        results=[], metas=None)
                for object_id, (pointer, grad) in kept.items() if pointer() is not None]

    def discard(self, incarnation: str) -> None:
        self._kept.pop(incarnation, None)
        self._refs.pop(incarnation, None)

    def __contains__(self, incarnation: str) -> bool:
        return incarnation in self._kept

    @property
    def kept(self) -> dict:
        """The kept gradients by incarnation: a plain dict, so that the sender's test per
        message (is anything kept?) costs no call."""
        return self._kept
