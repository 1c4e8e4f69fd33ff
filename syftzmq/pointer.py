"""``PointerTensor``: a local object that stands for a tensor held by a worker.

Every operation on a pointer becomes one fire-and-forget command: the client chooses the result
ids, computes the result's shape and dtype locally on the ``meta`` device, and returns new
pointers at once. Torch functions reach the pointer through PyTorch's ``__torch_function__``
protocol and tensor methods through ``__getattr__``, so no list of op names is kept here.

A pointer either *owns* its target (it was created by ``send``, by an operation, or handed over
by ``get``) or is a non-owning view (a snapshot in ``_objects``, or a pointer whose ownership was
handed on with ``send``). When an owning pointer is garbage collected its target is deleted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch
from torch.utils import _pytree as pytree

from . import runtime
from .errors import NeedsGetError, ObjectGoneError, WorkerMismatchError
from .ids import new_id
from .protocol import WorkerRef
from .shapes import TensorMeta, Unknown, infer

if TYPE_CHECKING:
    from .client.session import ClientSession

# Methods whose result is a plain Python value that the meta device computes exactly.
_LOCAL_RESULTS = frozenset({"size", "dim", "ndimension", "numel", "nelement", "element_size",
                            "is_floating_point", "is_complex", "is_signed", "__len__"})
# Methods whose result is a Python value that only the data can give.
_NEEDS_DATA = frozenset({"item", "tolist", "__bool__", "__int__", "__float__", "__index__",
                         "__complex__", "numpy", "__array__"})


def _is_inplace(name: str) -> bool:
    return (name.endswith("_") and not name.startswith("__")) or name in {
        "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__", "__imod__",
        "__ipow__", "__imatmul__", "__iand__", "__ior__", "__ixor__", "__ilshift__", "__irshift__"}


class PointerTensor:
    """A pointer to a tensor (or to another pointer) stored on a worker."""

    def __init__(self, location: WorkerRef, id_at_location: int, *, meta: TensorMeta | None,
                 owning: bool = True, id: int | None = None, owner: WorkerRef | None = None,
                 session: "ClientSession | None" = None) -> None:
        self._location = location
        self.id_at_location = id_at_location
        self.id = new_id() if id is None else id
        self._meta = meta
        self._owning = owning
        self._gone: str | None = None
        self._session = session
        self._owner = owner

    # ----------------------------------------------------------------- identity and display
    @property
    def location(self) -> Any:
        """The worker holding the target (its handle on a client)."""
        if self._session is not None:
            return self._session.handle(self._location)
        return self._location

    @property
    def owner(self) -> WorkerRef:
        """The process holding this pointer."""
        return self._owner if self._owner is not None else runtime.current().ref

    @property
    def shape(self) -> torch.Size:
        return self._resolved_meta().shape

    @property
    def dtype(self) -> torch.dtype:
        return self._resolved_meta().dtype

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
        return (f"[PointerTensor | {self.owner.id}:{self.id} -> "
                f"{self._location.id}:{self.id_at_location}]{state}")

    __str__ = __repr__

    # ----------------------------------------------------------------- lifetime
    def __del__(self) -> None:
        if self._owning and self._gone is None and self._session is not None:
            self._session.release(self._location, self.id_at_location)

    def _check_usable(self) -> None:
        if self._gone is not None:
            raise ObjectGoneError(f"{self!r} cannot be used: its target was {self._gone}")

    def _check_owning(self, action: str) -> None:
        self._check_usable()
        if not self._owning:
            raise ObjectGoneError(
                f"{self!r} does not own its target (it was handed on with .send(), or is a "
                f"snapshot from _objects), so it cannot {action} it; use the owning pointer")

    def _relinquish(self, reason: str) -> None:
        """This pointer no longer owns nor reaches its target (data fetched or handed on)."""
        self._owning = False
        self._gone = reason

    def _meta_or_none(self) -> TensorMeta | None:
        return self._meta

    def _resolved_meta(self) -> TensorMeta:
        if self._meta is None:
            self._check_usable()
            self._meta = self._require_session().info(self._location, self.id_at_location)
        return self._meta

    def _require_session(self) -> "ClientSession":
        if self._session is None:
            raise RuntimeError(f"{self!r} lives on a worker; it can only be used from a client")
        return self._session

    def _wire_copy(self, owning: bool, owner: WorkerRef | None = None) -> "PointerTensor":
        """A detached copy for a message.

        ``owning`` says whether ownership travels with it. ``owner`` is kept only for a
        snapshot (the pointer stays where it is); a transferred pointer belongs to whichever
        process rebuilds it.
        """
        return PointerTensor(self._location, self.id_at_location, meta=self._meta, owning=owning,
                             id=self.id, owner=owner, session=None)

    def __reduce__(self) -> tuple:
        return _rebuild_pointer, (self._location, self.id_at_location, self.id, self._meta,
                                  self._owning, self._owner)

    # ----------------------------------------------------------------- data movement
    def get(self) -> Any:
        """Fetch the target and remove it from its holder.

        On a pointer to a pointer this returns the middle pointer, which then owns the data.
        """
        self._check_owning("get")
        value = self._require_session().get(self._location, self.id_at_location)
        self._relinquish("fetched with .get()")
        return value

    def send(self, worker: Any) -> "PointerTensor":
        """Send this pointer (not the data) to ``worker``; returns a pointer to the stored pointer.

        Ownership of the target passes to ``worker``: this local pointer remains usable as a
        non-owning view, and the target lives as long as the pointer stored on ``worker``.
        """
        self._check_usable()
        session = self._require_session()
        dest = session.ref_of(worker)
        new = session.store_pointer(dest, self)
        self._owning = False
        return new

    def move(self, worker: Any) -> "PointerTensor":
        """Move the target straight from its holder to ``worker``; this pointer follows it."""
        self._check_owning("move")
        session = self._require_session()
        dest = session.ref_of(worker)
        if dest.node == self._location.node:
            return self
        new_id_at_dest = session.move(self._location, self.id_at_location, dest)
        self._location = dest
        self.id_at_location = new_id_at_dest
        return self

    # ----------------------------------------------------------------- remote execution
    @classmethod
    def __torch_function__(cls, func: Callable, types: tuple, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        name = getattr(func, "__name__", repr(func))
        return _remote_call(("func", func), name, func, tuple(args), dict(kwargs or {}))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") and not name.startswith("__"):
            raise AttributeError(name)
        attr = getattr(torch.Tensor, name, None)
        if attr is None or not callable(attr):
            raise AttributeError(f"'PointerTensor' has no attribute {name!r}")
        return _RemoteMethod(self, name)

    def __bool__(self) -> bool:
        raise NeedsGetError(f"the truth value of {self!r} needs the data: call .get() first")

    def __iter__(self):
        return iter(self.unbind(0))

    def __hash__(self) -> int:
        return hash(self.id)


class _RemoteMethod:
    """``pointer.name`` as a callable that runs ``tensor.name(...)`` on the holder."""

    __slots__ = ("pointer", "name")

    def __init__(self, pointer: PointerTensor, name: str) -> None:
        self.pointer = pointer
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name = self.name
        return _remote_call(("method", name), name,
                            lambda target, *a, **k: getattr(target, name)(*a, **k),
                            (self.pointer, *args), kwargs)

    def __repr__(self) -> str:
        return f"<remote method {self.name} of {self.pointer!r}>"


def _make_operator(name: str) -> Callable:
    def operator(self: PointerTensor, *args: Any) -> Any:
        return _RemoteMethod(self, name)(*args)
    operator.__name__ = name
    operator.__doc__ = f"``torch.Tensor.{name}`` on the holder; returns a pointer."
    return operator


for _name in ("add sub mul truediv floordiv mod pow matmul and or xor lshift rshift".split()):
    for _form in (f"__{_name}__", f"__r{_name}__", f"__i{_name}__"):
        if hasattr(torch.Tensor, _form):
            setattr(PointerTensor, _form, _make_operator(_form))
for _form in ("__neg__", "__pos__", "__abs__", "__invert__", "__lt__", "__le__", "__gt__",
              "__ge__", "__eq__", "__ne__", "__getitem__", "__setitem__"):
    setattr(PointerTensor, _form, _make_operator(_form))
PointerTensor.__hash__ = lambda self: hash(self.id)  # __eq__ is elementwise, as on tensors


def _remote_call(op: tuple, name: str, call: Callable, args: tuple, kwargs: dict) -> Any:
    """Check operands, infer the result's shape, send one command, return result pointers."""
    if name in _NEEDS_DATA:
        raise NeedsGetError(f"{name}() needs the data, which lives on a worker: call .get() first")
    leaves = pytree.tree_leaves((args, kwargs))
    pointers = [leaf for leaf in leaves if isinstance(leaf, PointerTensor)]
    for pointer in pointers:
        pointer._check_usable()
    location = pointers[0]._location
    strangers = [p for p in pointers if p._location.node != location.node]
    if strangers:
        raise WorkerMismatchError(
            f"{name}() mixes pointers on worker {location.id!r} and worker "
            f"{strangers[0]._location.id!r}; nothing was sent. Move one operand first, "
            f"e.g. ptr.move(...)")
    session = pointers[0]._require_session()

    try:
        meta_result = infer(call, args, kwargs)
    except Unknown:
        meta_result = None

    if name in _LOCAL_RESULTS and meta_result is not None and not isinstance(meta_result, torch.Tensor):
        return meta_result
    if _is_inplace(name) and op[0] == "method":
        session.command(location, op, args, kwargs, result_ids=[])
        return args[0]

    if meta_result is None:
        metas: list[TensorMeta | None] = [None]
        structure = None
    else:
        flat, structure = pytree.tree_flatten(meta_result)
        if not flat or not all(isinstance(leaf, torch.Tensor) for leaf in flat):
            raise NeedsGetError(f"{name}() returns a Python value ({type(meta_result).__name__}), "
                                f"which needs the data: call .get() first")
        metas = [TensorMeta(leaf.shape, leaf.dtype, leaf.requires_grad) for leaf in flat]
    result_ids = [new_id() for _ in metas]
    session.command(location, op, args, kwargs, result_ids=result_ids, metas=metas)
    results = [session.new_pointer(location, rid, meta) for rid, meta in zip(result_ids, metas)]
    if structure is None:
        return results[0]
    rebuilt = pytree.tree_unflatten(results, structure)
    return rebuilt


def _rebuild_pointer(location: WorkerRef, id_at_location: int, id: int, meta: TensorMeta | None,
                     owning: bool, owner: WorkerRef | None = None) -> PointerTensor:
    context = runtime.current()
    return PointerTensor(location, id_at_location, meta=meta, owning=owning, id=id,
                         owner=owner or context.ref, session=context.session)
