"""The rest of PySyft 0.2's pointer API, as a mixin of :class:`~syftzmq.tensor.pointer.PointerTensor`:
``copy``, in-place ``send_``/``get_``, ``remote_get``/``remote_send``, ``combine``, the
garbage-collection flags, and tags.

Where PySyft relied on an in-process trick, this module says what it does instead:

* ``get_()`` — PySyft refilled the very wrapper object with the value. A ``PointerTensor`` is
  not a ``torch.Tensor`` and cannot become one, so ``ptr.get_()`` returns the fetched tensor and
  the pointer is spent (using it raises :class:`~syftzmq.errors.ObjectGoneError`, saying so).
  For a tensor that really stays the same object, send it with ``x.send_(bob)``: ``x`` becomes
  a remote tensor in place and ``x.get_()`` turns it back (:mod:`syftzmq.tensor.inplace`).
* ``remote_send(w)`` — PySyft left the pointer dangling at the old worker; here the object
  moves to ``w`` exactly as with ``move`` and the pointer follows it.
* ``disable_gc`` — a property in PySyft (reading it turns GC off and returns the pointer), so
  ``ptr.disable_gc()`` failed there. Both forms work here: the pointer called with no argument
  returns itself.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..core.messages import FLUSH, message
from ..errors import InvalidTensorForRemoteGet
from .multi_pointer import MultiPointerTensor
from .send_options import parse

# What may be set on a pointer besides the remote tensor attributes (grad, data,
# requires_grad): everything else raises AttributeError instead of being silently kept.
POINTER_ATTRIBUTES = frozenset({"garbage_collection", "gc", "tags", "description"})


class PointerAPI:
    """PySyft 0.2's pointer methods beyond operations, get, send and move."""

    # Class-level defaults: an instance attribute appears only when one is set, so creating the
    # pointers of ordinary operations costs nothing more.
    _gc = True
    tags: set[str] | None = None
    description: str | None = None

    # ------------------------------------------------------------------ garbage collection
    @property
    def garbage_collection(self) -> bool:
        """Whether dropping this pointer deletes its target (PySyft's
        ``garbage_collect_data``). False: the remote object outlives the pointer."""
        return self._gc

    @garbage_collection.setter
    def garbage_collection(self, value: bool) -> None:
        object.__setattr__(self, "_gc", bool(value))

    gc = garbage_collection

    @property
    def disable_gc(self) -> Any:
        """Turn garbage collection off and return this pointer (also callable:
        ``ptr.disable_gc()``)."""
        object.__setattr__(self, "_gc", False)
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Only so that ``ptr.disable_gc()`` works: a pointer is not otherwise callable."""
        if args or kwargs:
            raise TypeError(f"'{type(self).__name__}' object is not callable")
        return self

    # ------------------------------------------------------------------ tags
    def tag(self, *tags: str) -> Any:
        """Add tags (exact strings: ``"#x"`` is not ``"x"``); returns this pointer. Tagging a
        pointer is local: the worker indexes the tags a tensor had when it was sent."""
        object.__setattr__(self, "tags", set(self.tags or ()) | set(tags))
        return self

    def describe(self, description: str) -> Any:
        """Set the description; returns this pointer."""
        object.__setattr__(self, "description", description)
        return self

    # ------------------------------------------------------------------ copies
    def copy(self) -> Any:
        """PySyft's ``copy`` is ``self + 0``: a new remote object (new id, new owning pointer);
        a bool tensor becomes int64, as it does locally."""
        return self + 0

    # ------------------------------------------------------------------ in place
    def get_(self) -> Any:
        """Fetch the target, like ``get()``. A pointer cannot turn into the local tensor in
        place (see the module docstring): use the returned value."""
        value = self.get()
        object.__setattr__(self, "_gone", "fetched with .get_(): a PointerTensor cannot become "
                           "a local tensor in place; use the tensor get_() returned")
        return value

    def send_(self, *workers: Any, **kwargs: Any) -> Any:
        """Send this pointer on to ``worker`` and become the pointer to the stored pointer,
        in place; returns ``self``."""
        if len(workers) != 1:
            raise NotImplementedError("Inplace send to several workers is currently not supported.")
        new = self.send(workers[0], **kwargs)
        for name, value in vars(new).items():
            if name != "id":
                object.__setattr__(self, name, value)
        object.__setattr__(new, "_owning", False)  # self owns the stored pointer now
        return self

    # ------------------------------------------------------------------ along chains
    def remote_get(self) -> Any:
        """On ``me -> alice -> bob``: alice takes bob's object (bob's copy is gone) and this
        pointer, unchanged, now names it on alice. Returns ``self``.

        Built from a ``get`` of the middle hop and a ``move`` back into alice. On a one-hop
        pointer it raises :class:`InvalidTensorForRemoteGet` and leaves the data on its worker.
        """
        self._check_owning("remote_get")
        session = self._require_session()
        middle_worker = self._location
        fetched = self.get()
        if not isinstance(fetched, PointerAPI):
            restored = session.store_tensor(middle_worker, fetched)
            self._take_target_of(restored)
            raise InvalidTensorForRemoteGet(
                f"remote_get() should be called on a chain of pointer tensors (me -> alice -> "
                f"bob); {self!r} points at data. Nothing was lost: the data is back on "
                f"{middle_worker.id!r} (under a new id); use .get() to fetch it")
        # The middle worker handed ownership of the last hop to us (a FORK to its holder):
        # make sure it arrived before the holder is asked to move the object.
        session.observe(middle_worker, message(FLUSH, complete=True))
        (new_id,) = session.move(fetched._location, [fetched.id_at_location], middle_worker,
                                 pointers=[self])  # self follows it
        object.__setattr__(fetched, "_owning", False)
        fetched._relinquish("moved back by remote_get()")
        object.__setattr__(self, "_location", middle_worker)
        object.__setattr__(self, "id_at_location", new_id)
        object.__setattr__(self, "_owning", True)
        object.__setattr__(self, "_gone", None)
        return self

    def _take_target_of(self, other: Any) -> None:
        """Own ``other``'s target instead of the one this pointer had; ``other`` lets go."""
        object.__setattr__(self, "_location", other._location)
        object.__setattr__(self, "id_at_location", other.id_at_location)
        object.__setattr__(self, "_owning", True)
        object.__setattr__(self, "_gone", None)
        object.__setattr__(other, "_owning", False)

    def remote_send(self, worker: Any, requires_grad: bool = False) -> Any:
        """The holder sends the object (data, or the next hop of a chain) straight to ``worker``
        and deletes its copy; this pointer follows it (PySyft left it dangling). Returns
        ``self``."""
        if requires_grad:
            raise NotImplementedError("remote_send(..., requires_grad=True) is not supported: the "
                                      "remote copy keeps requires_grad as it is")
        session = self._require_session()
        if session.ref_of(worker).incarnation == session.ref.incarnation:
            raise ValueError("remote_send() sends to another worker; to bring the data here "
                             "use .get()")
        return self.move(worker)

    # ------------------------------------------------------------------ several workers
    def combine(self, *others: Any) -> Any:
        """PySyft's ``x.combine(y, z)``: a multi-pointer over ``[y, z, x]`` (self last)."""
        return MultiPointerTensor([*others, self])

    def _send_options(self, kwargs: dict) -> Any:
        options = parse(kwargs)
        if options.requires_grad or options.preinitialize_grad:
            raise NotImplementedError("requires_grad/preinitialize_grad apply when a tensor is "
                                      "first sent; a pointer sent on keeps its target as it is")
        return options


def check_single_worker(workers: Iterable[Any], what: str) -> Any:
    workers = list(workers)
    if len(workers) != 1:
        raise NotImplementedError(
            f"{what} sends a pointer to exactly one worker (got {len(workers)}); ownership of "
            f"the target can go to one holder only. Send the data itself to several workers: "
            f"tensor.send(bob, alice)")
    return workers[0]

