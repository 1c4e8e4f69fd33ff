"""Checks on what an authenticated message brings in, made when it arrives.

A reference that is stored now is used later, outside the handler that stored it: a chain hop
whose holder has no usable address would make the lease-renewal tick, a cascading delete or a
forwarded command fail long after the message that brought it was answered. So every worker
reference is checked on receipt — plain strings where strings belong, an address
:func:`~syftzmq.wire.dealer.check_address` accepts — and a bad one fails the message that
carried it, with a reply that names what was wrong.

Error texts show received values through :func:`short`: a value can be a structure that shares
itself thousands of levels deep, whose full ``repr`` would never end.
"""

from __future__ import annotations

import reprlib
from typing import Any

import torch

from ..core.meta import TensorMeta
from ..core.refs import ChainRef, WorkerRef
from ..errors import ProtocolError
from ..wire.dealer import check_address

_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 3, 60, 60
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 6


def short(value: Any) -> str:
    """A bounded ``repr`` of a received value, for error messages."""
    try:
        return _SHORT.repr(value)
    except Exception:  # a repr that raises is the sender's problem, not ours
        return f"<{type(value).__name__}>"


def object_ids(value: Any) -> list[int]:
    """``value`` as a list of object ids, or a :class:`ProtocolError` saying what is wrong."""
    if not isinstance(value, (list, tuple)):
        raise ProtocolError(f"object ids must be a list of non-negative 64-bit ints, got {short(value)}")
    for item in value:  # a loop, not all(...): most lists hold one or two ids
        if type(item) is not int or not 0 <= item < _ID_LIMIT:
            raise ProtocolError(f"object ids must be a list of non-negative 64-bit ints, got "
                                f"{short(value)}")
    return list(value)


_ID_LIMIT = 1 << 64


def _named(ref: WorkerRef) -> bool:
    """Whether ``ref`` carries a string id and a non-empty string incarnation."""
    return type(ref.id) is str and type(ref.incarnation) is str and bool(ref.incarnation)


def check_worker_ref(value: Any, what: str) -> WorkerRef:
    """``value`` if it is a :class:`WorkerRef` this worker could connect to."""
    if not isinstance(value, WorkerRef):
        raise ProtocolError(f"{what} must be a WorkerRef, got {type(value).__name__}")
    if not _named(value):
        raise ProtocolError(f"{what} needs a string id and incarnation, got {short(value.id)} "
                            f"and {short(value.incarnation)}")
    if value.shm is not None and type(value.shm) is not str:
        raise ProtocolError(f"{what} has a shared-memory namespace that is not a string")
    try:
        check_address(value.address)
    except ValueError as exc:
        raise ProtocolError(f"{what} {value.id!r:.40}: {exc}") from None
    if value.liveness is not None:  # dialled later by the liveness tick, for every wait on it
        try:
            check_address(value.liveness)
        except ValueError as exc:
            raise ProtocolError(f"{what} {value.id!r:.40} has a bad liveness address: {exc}") from None
    return value


def check_received(obj: Any) -> Any:
    """``obj`` (about to be stored), if it is not a chain hop that could not be followed, nor
    one whose description (``meta``, answered to an ``INFO``; ``owner``, handed to the client
    that fetches the hop) would reach a client as something it cannot read."""
    if isinstance(obj, ChainRef):
        check_worker_ref(obj.location, "the location of a stored pointer")
        if type(obj.id_at_location) is not int or type(obj.id) is not int:
            raise ProtocolError("a stored pointer needs integer ids")
        if obj.attr is not None and type(obj.attr) is not str:
            raise ProtocolError("a stored pointer's attribute must be a string")
        if type(obj.owning) is not bool:
            raise ProtocolError(f"a stored pointer's 'owning' must be True or False, got "
                                f"{short(obj.owning)}")
        if obj.owner is not None and (type(obj.owner) is not WorkerRef or not _named(obj.owner)):
            raise ProtocolError(f"a stored pointer's owner must be a worker reference with a "
                                f"string id and incarnation, got {short(obj.owner)}")
        check_meta(obj.meta, "a stored pointer's meta")
    return obj


def check_meta(value: Any, what: str) -> TensorMeta | None:
    """A tensor's description as a client reads it: ``None``, or a :class:`TensorMeta` (see
    :func:`_check_description`) whose ``grad`` is absent or one too, without a ``grad`` of
    its own."""
    if value is None:
        return None
    _check_description(value, what)
    if value.grad is not None:
        _check_description(value.grad, f"{what} (its grad)")
        if value.grad.grad is not None:
            raise ProtocolError(f"{what} (its grad): a gradient has no gradient of its own")
    return value


def _check_description(value: Any, what: str) -> None:
    """A :class:`TensorMeta` with a shape of non-negative ints, a dtype and a bool
    ``requires_grad`` (its ``grad`` is the caller's)."""
    if type(value) is not TensorMeta:
        raise ProtocolError(f"{what} must be a TensorMeta or None, got {type(value).__name__}")
    shape = value.shape
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
        raise ProtocolError(f"{what} has a shape that is not a tuple of sizes: {short(shape)}")
    if not isinstance(value.dtype, torch.dtype) or type(value.requires_grad) is not bool:
        raise ProtocolError(f"{what} needs a torch dtype and a bool requires_grad, got "
                            f"{short(value.dtype)} and {short(value.requires_grad)}")


def check_metas(value: Any, results: int) -> list | None:
    """A command's ``metas`` (its results' descriptions, stored in the chain hops a holder
    makes for them): absent, or one :func:`check_meta` per result."""
    if value is None:
        return None
    if type(value) is not list or len(value) != results:
        raise ProtocolError(f"'metas' must be a list of {results} descriptions (one per result), "
                            f"got {short(value)}")
    for meta in value:
        check_meta(meta, "an entry of 'metas'")
    return value


def check_owner(value: Any) -> str | None:
    """An owner named in a message: an incarnation string, or absent."""
    if value is not None and type(value) is not str:
        raise ProtocolError(f"an owner must be an incarnation string, got {type(value).__name__}")
    return value
