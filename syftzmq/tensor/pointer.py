"""``PointerTensor``: a local object that stands for a tensor held by a worker.

Every operation on a pointer becomes one fire-and-forget command (see
:mod:`syftzmq.tensor.remote_call`, the one dispatcher every operation passes through).
Torch functions reach the pointer through PyTorch's ``__torch_function__`` protocol, tensor
methods and properties through ``__getattr__``: no list of op names is kept here, so a torch
release's new ops work unchanged.

A pointer either *owns* its target (it was created by ``send``, by an operation, or handed over
by ``get``) or is a non-owning view (a snapshot in ``_objects``, a pointer whose ownership was
handed on with ``send``, or an attribute such as ``x.grad``). When an owning pointer is garbage
collected, its target is deleted.

A pointer never travels as this class: on the wire it is a plain
:class:`~syftzmq.core.refs.ChainRef` record (what a worker stores for a chain hop), and a client
that receives a record turns it back into a pointer with :meth:`PointerTensor.from_record`.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..core.ids import new_id
from ..core.meta import TensorMeta, describe, mirror_of
from ..core.vocabulary import OPERATORS, SETTABLE_ATTRIBUTES, tensor_property
from ..core.refs import ChainRef, WorkerRef
from ..errors import NeedsGetError, ObjectGoneError
from . import remote_call
from .operand import RemoteOperand
from .pointer_api import POINTER_ATTRIBUTES, PointerAPI, check_single_worker


class PointerTensor(PointerAPI, RemoteOperand):
    """A pointer to a tensor (or to another pointer) stored on a worker.

    Besides operations, ``get``, ``send`` and ``move``, it has the rest of PySyft 0.2's pointer
    API (``copy``, ``send_``/``get_``, ``remote_get``/``remote_send``, ``combine``, the GC flags,
    ``tag``/``describe``): see :mod:`syftzmq.tensor.pointer_api`.
    """

    def __init__(self, location: WorkerRef, id_at_location: int, *, meta: TensorMeta | None = None,
                 mirror: torch.Tensor | None = None, owning: bool = True, id: int | None = None,
                 owner: WorkerRef | None = None, session: Any = None,
                 attr: str | None = None) -> None:
        # Written into the instance dict directly: ``__setattr__`` forwards to the target, and
        # none of these names is a descriptor, so this is ``object.__setattr__`` at a third
        # of its cost (every operation makes a pointer).
        state = self.__dict__
        state["_location"] = location
        state["id_at_location"] = id_at_location
        state["id"] = new_id() if id is None else id
        # The mirror is built on first use from ``meta``: most results (temporaries of a
        # pipeline) never need theirs, and building one costs a meta-tensor allocation.
        state["_built_mirror"] = mirror
        state["_pending_meta"] = meta if mirror is None else None
        state["_owning"] = owning and attr is None
        state["_session"] = session
        state["_owner"] = owner
        state["_attr"] = attr
        # ``_gone``, ``_grad_unknown`` and ``_move_doubt`` start as the class's defaults below.

    # State that nearly every pointer keeps at its default: written into the instance only
    # when it changes (every operation makes a pointer; three stores fewer make it cheaper).
    _gone: str | None = None  # why the target is out of reach (fetched, handed on), if it is
    # Set when code the mirrors did not see (a plan, a backward they could not follow, a graph
    # cut by a mirror rebuilt from the worker) may have changed the target's .grad: its
    # gradient is then asked of the worker.
    _grad_unknown = False
    # A move of the target whose wait raised: it may or may not have happened. The next use
    # asks its source (see syftzmq.client.deliveries.MoveDoubt).
    _move_doubt: Any = None

    # ----------------------------------------------------------------- identity and display
    @property
    def location(self) -> Any:
        """The worker holding the target (its handle on a client)."""
        if self._session is not None:
            return self._session.handle(self._location)
        return self._location

    @property
    def owner(self) -> Any:
        """The process holding this pointer: ``sy.local_worker`` on the client, else a worker."""
        ref = self._owner_ref()
        if self._session is not None:
            return self._session.handle(ref)
        return ref

    def _owner_ref(self) -> WorkerRef | None:
        return self._owner if self._owner is not None else getattr(self._session, "ref", None)

    @property
    def shape(self) -> torch.Size:
        return self._resolved_mirror().shape

    @property
    def dtype(self) -> torch.dtype:
        return self._resolved_mirror().dtype

    @property
    def _mirror(self) -> torch.Tensor | None:
        """The local meta stand-in (see :mod:`syftzmq.core.meta`), or ``None`` if unknown."""
        mirror = self._built_mirror
        if mirror is None and self._pending_meta is not None:
            mirror = mirror_of(self._pending_meta)
            object.__setattr__(self, "_built_mirror", mirror)
            object.__setattr__(self, "_pending_meta", None)
        return mirror

    @_mirror.setter
    def _mirror(self, mirror: torch.Tensor | None) -> None:
        object.__setattr__(self, "_built_mirror", mirror)
        object.__setattr__(self, "_pending_meta", None)

    @property
    def _meta(self) -> TensorMeta | None:
        if self._built_mirror is None:
            return self._pending_meta
        return describe(self._built_mirror)

    def size(self, dim: int | None = None) -> Any:
        shape = self.shape
        return shape if dim is None else shape[dim]

    def dim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        shape = self.shape
        if not shape:
            raise TypeError("len() of a 0-d tensor")
        return shape[0]

    def __repr__(self) -> str:
        state = "" if self._gone is None else f" ({self._gone})"
        target = f"{self.id_at_location}.{self._attr}" if self._attr else f"{self.id_at_location}"
        owner = self._owner_ref()
        owner_id = owner.id if owner is not None else "?"
        return f"[PointerTensor | {owner_id}:{self.id} -> {self._location.id}:{target}]{state}"

    __str__ = __repr__

    def __hash__(self) -> int:
        return hash(self.id)

    # ----------------------------------------------------------------- lifetime
    def __del__(self) -> None:
        if self._owning and self._gc and self._gone is None and self._session is not None:
            doubt = self.__dict__.get("_move_doubt")
            if doubt is not None:
                doubt.release(self._session)
            else:
                self._session.release(self._location, self.id_at_location)

    def _check_usable(self) -> None:
        if self._move_doubt is not None:
            self._move_doubt.settle(self._session, self)
        if self._gone is not None:
            raise ObjectGoneError(f"{self!r} cannot be used: its target was {self._gone}")

    def _check_owning(self, action: str) -> None:
        self._check_usable()
        if self._attr is not None:
            raise ObjectGoneError(f"{self!r} is the attribute .{self._attr} of a remote tensor; "
                                  f"it cannot {action} on its own (clone it first)")
        if not self._owning:
            raise ObjectGoneError(
                f"{self!r} does not own its target (it was handed on with .send(), is a "
                f"snapshot from _objects, or is a search result for an object another process "
                f"owns), so it cannot {action} it; use the owning pointer")

    def _relinquish(self, reason: str) -> None:
        """This pointer no longer owns nor reaches its target (data fetched or handed on)."""
        object.__setattr__(self, "_owning", False)
        object.__setattr__(self, "_gone", reason)

    def _resolved_mirror(self) -> torch.Tensor:
        if self._mirror is None:
            self._check_usable()
            session = self._require_session()
            meta = session.info(self)
            if meta.requires_grad:
                # a mirror learned from the worker is a leaf: the local autograd graph is cut
                # here, so which tensors there get gradients must from now on be asked
                session.grads_became_uncertain(self._location)
                object.__setattr__(self, "_grad_unknown", True)
            object.__setattr__(self, "_mirror", mirror_of(meta))
        return self._mirror

    def _require_session(self) -> Any:
        if self._session is None:
            raise RuntimeError(f"{self!r} lives on a worker; it can only be used from a client")
        return self._session

    def _attribute(self, name: str, known: Any) -> "PointerTensor":
        """A non-owning pointer to the target's attribute ``name`` (``x.grad``); ``known`` is
        its meta or its mirror."""
        meta = known if isinstance(known, TensorMeta) else None
        return PointerTensor(self._location, self.id_at_location, meta=meta,
                             mirror=None if meta is not None else known, owning=False,
                             session=self._session, attr=name)

    def to_record(self, owning: bool) -> ChainRef:
        """This pointer as it travels: a plain record. ``owning`` says whether ownership of the
        target goes with it (the receiver then keeps the target alive)."""
        return ChainRef(self._location, self.id_at_location, self.id, self._meta, owning,
                        None, self._attr)

    @classmethod
    def from_record(cls, record: ChainRef, session: Any) -> "PointerTensor":
        """The pointer a client holds for a record it received (a fetched chain hop, an entry of
        a store snapshot). It owns the target if the record did."""
        return cls(record.location, record.id_at_location, meta=record.meta,
                   owning=record.owning, id=record.id, owner=record.owner or session.ref,
                   session=session, attr=record.attr)

    def __reduce__(self) -> tuple:
        """Pickled, a pointer is its record (a non-owning one: pickling hands nothing on)."""
        return ChainRef, (self._location, self.id_at_location, self.id, self._meta, False, None,
                          self._attr)

    # ----------------------------------------------------------------- data movement
    def get(self, timeout: float | None = None) -> Any:
        """Fetch the target and remove it from its holder.

        On a pointer to a pointer this returns the middle pointer, which then owns the data.
        On an attribute pointer (``x.grad.get()``) the attribute is fetched and stays remote.
        Waits as long as the worker is alive, or at most ``timeout`` seconds (then
        :class:`~syftzmq.errors.WorkerTimeout`); a get that raises leaves the target where it
        was, so it can be retried.
        """
        if self._attr is None:
            self._check_owning("get")  # (checks it is usable first)
        else:
            self._check_usable()
        value = self._require_session().get(self, timeout)
        if self._attr is None:
            self._relinquish("fetched with .get()")
        return value

    def send(self, *workers: Any, **kwargs: Any) -> "PointerTensor":
        """Send this pointer (not the data) to ``worker``; returns a pointer to the stored pointer.

        Ownership of the target passes to ``worker``: this local pointer remains usable as a
        non-owning view, and the target lives as long as the pointer stored on ``worker``.
        Tags and the description go along; ``garbage_collect_data=False`` applies to the new
        pointer.
        """
        options = self._send_options(kwargs)
        worker = check_single_worker(workers, "pointer.send()")
        if options.inplace:
            return self.send_(worker, garbage_collect_data=options.garbage_collect_data)
        self._check_usable()
        if self._attr is not None:
            self._check_owning("be sent")
        session = self._require_session()
        new = session.store_pointer(session.ref_of(worker), self)
        object.__setattr__(self, "_owning", False)
        if not options.garbage_collect_data:
            object.__setattr__(new, "_gc", False)
        if self.tags is not None:
            object.__setattr__(new, "tags", set(self.tags))
        if self.description is not None:
            object.__setattr__(new, "description", self.description)
        return new

    def move(self, worker: Any) -> Any:
        """Move the target straight from its holder to ``worker``; this pointer follows it.

        To the client itself (``hook.local_worker``, ``sy.local_worker``) it is ``get()``: the
        tensor comes back and the remote copy is gone. To the current location it is a no-op.
        """
        self._check_owning("move")
        session = self._require_session()
        dest = session.ref_of(worker)
        if dest.incarnation == session.ref.incarnation:
            return self.get()
        if dest.incarnation == self._location.incarnation:
            return self
        (new_id_at_dest,) = session.move(self._location, [self.id_at_location], dest,
                                         pointers=[self])
        self._moved_to(dest, new_id_at_dest)
        return self

    def _moved_to(self, dest: WorkerRef, new_id_at_dest: int) -> None:
        object.__setattr__(self, "_location", dest)
        object.__setattr__(self, "id_at_location", new_id_at_dest)

    # ----------------------------------------------------------------- remote execution
    @classmethod
    def __torch_function__(cls, func: Callable, types: tuple, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        return remote_call.call_function(func, tuple(args), dict(kwargs or {}))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") and not name.startswith("__"):
            raise AttributeError(name)
        if tensor_property(name):
            return remote_call.get_property(self, name)
        attr = getattr(torch.Tensor, name, None)
        if attr is None or not callable(attr):
            raise AttributeError(f"'PointerTensor' has no attribute {name!r}")
        return _RemoteMethod(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        """``grad``, ``data`` and ``requires_grad`` are set on the remote tensor; the GC flags,
        ``tags`` and ``description`` on this pointer. Anything else raises: an attribute kept
        here would be silently ignored by the worker. (Internal state is set with
        ``object.__setattr__``.)"""
        if name in SETTABLE_ATTRIBUTES:
            remote_call.set_property(self, name, value)
        elif name in POINTER_ATTRIBUTES:
            if name == "tags" and value is not None:
                value = {value} if isinstance(value, str) else set(value)
            object.__setattr__(self, name, value)
        else:
            raise AttributeError(
                f"cannot set {name!r} on a pointer: syftzmq supports setting "
                f"{', '.join(sorted(SETTABLE_ATTRIBUTES | POINTER_ATTRIBUTES))}; anything else "
                f"would be kept here and ignored by the worker")

    @property
    def device(self) -> torch.device:
        return remote_call.REMOTE_DEVICE

    @property
    def is_meta(self) -> bool:
        return False

    def __bool__(self) -> bool:
        raise NeedsGetError(f"the truth value of {self!r} needs the data: call .get() first")

    def _needs_data(self, *_: Any) -> Any:
        raise NeedsGetError(f"converting {self!r} to a Python number needs the data: "
                            f"call .get() first")

    __float__ = __int__ = __index__ = __complex__ = __array__ = _needs_data

    def __iter__(self):
        return iter(self.unbind(0))


class _RemoteMethod:
    """``pointer.name`` as a callable that runs ``tensor.name(...)`` on the holder."""

    __slots__ = ("pointer", "name")

    def __init__(self, pointer: PointerTensor, name: str) -> None:
        self.pointer = pointer
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return remote_call.call_method(self.name, (self.pointer, *args), kwargs)

    def __repr__(self) -> str:
        return f"<remote method {self.name} of {self.pointer!r}>"


def _make_operator(name: str) -> Callable:
    def operator(self: PointerTensor, *args: Any) -> Any:
        return remote_call.call_method(name, (self, *args), {})
    operator.__name__ = name
    operator.__doc__ = f"``torch.Tensor.{name}`` on the holder; returns a pointer."
    return operator


for _form in OPERATORS:
    setattr(PointerTensor, _form, _make_operator(_form))
PointerTensor.__hash__ = lambda self: hash(self.id)  # __eq__ is elementwise, as on tensors

