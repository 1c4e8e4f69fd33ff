"""Objects to ``(header, buffers)`` and back, with tensor bytes out of band.

Pickle protocol 5 carries the structure. Most messages (commands, replies) hold only builtins,
ids and tensors: the C pickler writes those in microseconds. Code that the receiver cannot import
— functions, lambdas and classes of the user's ``__main__``, modules registered with
``cloudpickle.register_pickle_by_value`` — needs cloudpickle, which pickles it by value but pays
a Python call per pickled object (tens of microseconds per command). So :func:`dumps` tries the
C pickler first and falls back to cloudpickle when the result would name unimportable code.

A plain CPU tensor is reduced to its dtype, shape and its bytes: from ``INLINE_LIMIT`` bytes on,
a ``PickleBuffer`` over its memory, which leaves the pickle and becomes a frame of its own, sent
without copying and rebuilt on the receiver over the received memory. Smaller ones are copied
into the pickle as ``bytes``, where one copy is cheaper than one more frame.
"""

from __future__ import annotations

import ctypes
import io
import pickle
from typing import Any

import cloudpickle
import torch

from ..errors import ProtocolError

INLINE_LIMIT = 4096
PROTOCOL = 5


def tensor_memory(tensor: torch.Tensor, lend: bool = False, keeps: bool = False) -> memoryview:
    """A writable memoryview over a contiguous CPU tensor's bytes, keeping the tensor alive.

    ``lend`` marks the memory as lendable: a shared-memory transfer may hand its pages to the
    receiver instead of copying them (see :func:`syftzmq.wire.shm.lent_references`); ``keeps``:
    the sender keeps reading them, so the receiver maps them copy-on-write."""
    nbytes = tensor.numel() * tensor.element_size()
    if nbytes == 0:
        return memoryview(bytearray())
    raw = (ctypes.c_char * nbytes).from_address(tensor.data_ptr())
    raw._owner = tensor  # the view must not outlive the tensor's storage
    if lend:
        raw._lend = True
        raw._lender_keeps = keeps
    return memoryview(raw).cast("B")


class Lent:
    """A tensor to send whose pages the receiver may take over instead of a copy.

    Only its sender can know that nothing else shares the tensor's memory and that it gives the
    tensor up once received (see :mod:`syftzmq.worker.handover`); it wraps the tensor in the
    message, and the receiver unpickles a plain tensor. Across hosts it travels like any other.
    ``keeps``: the sender still reads the memory (never writes it), so the receiver's writes
    must not reach it: the receiver maps the pages copy-on-write.
    """

    __slots__ = ("tensor", "keeps")

    def __init__(self, tensor: torch.Tensor, keeps: bool = False) -> None:
        self.tensor = tensor
        self.keeps = keeps


_STRIDED = torch.strided


def _plain_cpu(tensor: torch.Tensor) -> bool:
    return (type(tensor) in (torch.Tensor, torch.nn.Parameter) and tensor.is_cpu
            and tensor.layout is _STRIDED and not tensor.is_quantized)


def _in_band(data: torch.Tensor, nbytes: int) -> bytes:
    """The ``nbytes`` of dense ``data`` as bytes, to travel inside the pickle."""
    return ctypes.string_at(data.data_ptr(), nbytes) if nbytes else b""


def _shaped(flat: torch.Tensor, shape: tuple) -> torch.Tensor:
    """``flat`` as a tensor of ``shape`` over the same storage, with no 1-d base behind it (a
    view would be a second tensor over the memory, and keep the flat one alive)."""
    if flat.shape == shape:
        return flat
    return torch.empty(0, dtype=flat.dtype).set_(flat.untyped_storage(), 0, shape)


def rebuild_tensor(buffer: Any, dtype: torch.dtype, shape: tuple, requires_grad: bool,
                   grad: torch.Tensor | None, parameter: bool) -> torch.Tensor:
    """Inverse of the tensor reduction; checks that the bytes match the declared shape."""
    numel = 1
    for size in shape:
        numel *= size
    expected = numel * dtype.itemsize
    if type(buffer) is bytes and expected:  # a small tensor, in band: the usual reply
        if len(buffer) != expected:
            raise _size_mismatch(shape, dtype, expected, len(buffer))
        # One copy into memory of its own (a tensor over the unpickler's object would keep
        # that alive too); cheaper than allocating a tensor and copying.
        tensor = _shaped(torch.frombuffer(bytearray(buffer), dtype=dtype), shape)
        if parameter or requires_grad or grad is not None:
            return _with_autograd(tensor, requires_grad, grad, parameter)
        return tensor
    in_band = isinstance(buffer, (bytes, bytearray))
    view = None if in_band else (
        memoryview(buffer).cast("B") if not isinstance(buffer, memoryview) else buffer.cast("B"))
    nbytes = len(buffer) if in_band else view.nbytes
    if nbytes != expected:
        raise _size_mismatch(shape, dtype, expected, nbytes)
    if expected == 0:
        tensor = torch.empty(shape, dtype=dtype)
    elif in_band or view.readonly:
        tensor = _shaped(torch.frombuffer(bytearray(buffer if in_band else view), dtype=dtype), shape)
    else:  # over the received memory; a tensor of its own (no view of a 1-d base), so that
        # the only tensor over a received segment is this one (see syftzmq.worker.handover)
        tensor = _shaped(torch.frombuffer(view, dtype=dtype), shape)
    return _with_autograd(tensor, requires_grad, grad, parameter)


def _size_mismatch(shape: tuple, dtype: torch.dtype, expected: int, nbytes: int) -> ProtocolError:
    return ProtocolError(f"tensor of shape {tuple(shape)} and dtype {dtype} needs {expected} "
                         f"bytes, got {nbytes}")


def _with_autograd(tensor: torch.Tensor, requires_grad: bool, grad: torch.Tensor | None,
                   parameter: bool) -> torch.Tensor:
    """``tensor`` as the parameter, or the tensor requiring grad (with ``grad``), it was."""
    if parameter:
        tensor = torch.nn.Parameter(tensor, requires_grad=requires_grad)
    elif requires_grad:
        tensor.requires_grad_(True)
    if grad is not None:
        tensor.grad = grad
    return tensor


def _materialized(tensor: torch.Tensor) -> torch.Tensor:
    """Plain dense memory for ``tensor``: resolves lazy zero, conjugate and negative views
    (a ZeroTensor — e.g. some gradients — has no memory at all: its data pointer is null)."""
    if tensor._is_zerotensor():
        return torch.zeros(tensor.shape, dtype=tensor.dtype)
    if tensor.is_conj():
        tensor = tensor.resolve_conj()
    if tensor.is_neg():
        tensor = tensor.resolve_neg()
    return tensor if tensor.is_contiguous() else tensor.contiguous()


def _reduce_tensor(obj: torch.Tensor, lend: bool = False, keeps: bool = False) -> tuple:
    data = _materialized(obj.detach())
    nbytes = data.numel() * data.element_size()
    # Small tensors travel in the pickle as bytes (one small copy, no buffer callback); larger
    # ones as a buffer over their memory, which leaves the pickle as a frame of its own.
    payload = _in_band(data, nbytes) if nbytes < INLINE_LIMIT \
        else pickle.PickleBuffer(tensor_memory(data, lend, keeps))
    return rebuild_tensor, (payload, obj.dtype, tuple(obj.shape),
                            obj.requires_grad, obj.grad if obj.is_leaf else None,
                            isinstance(obj, torch.nn.Parameter))


def _reduce_any_tensor(obj: torch.Tensor) -> Any:
    # The most common tensor on the wire first, in one function: small, plain, dense, no
    # autograd state (a result coming back, an operand going out). What it returns is what
    # _reduce_tensor returns for it; only the calls and checks in between are fewer.
    if (type(obj) is torch.Tensor and not obj.requires_grad and obj.is_cpu
            and obj.layout is _STRIDED and not obj.is_quantized and obj.grad is None
            and obj.is_contiguous() and not (obj._is_zerotensor() or obj.is_conj() or obj.is_neg())):
        nbytes = obj.numel() * obj.element_size()
        if nbytes < INLINE_LIMIT:
            return rebuild_tensor, (_in_band(obj, nbytes), obj.dtype, tuple(obj.shape),
                                    False, None, False)
    return _reduce_tensor(obj) if _plain_cpu(obj) else obj.__reduce_ex__(PROTOCOL)


def _reduce_lent(obj: Lent) -> Any:
    if _plain_cpu(obj.tensor):
        return _reduce_tensor(obj.tensor, lend=True, keeps=obj.keeps)
    return obj.tensor.__reduce_ex__(PROTOCOL)


# Looked up by exact type, so only these objects cost a Python call in the C pickler.
_TENSOR_REDUCERS = {torch.Tensor: _reduce_any_tensor, torch.nn.Parameter: _reduce_any_tensor,
                    Lent: _reduce_lent}


class _FastPickler(pickle.Pickler):
    dispatch_table = _TENSOR_REDUCERS


class _CodePickler(cloudpickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, torch.Tensor) and _plain_cpu(obj):
            return _reduce_tensor(obj)
        if isinstance(obj, Lent):
            return _reduce_lent(obj)
        return super().reducer_override(obj)


# The modules registered to be pickled by value, read in place: cloudpickle's own accessor
# copies the set, and every message asks.
_BY_VALUE = getattr(getattr(cloudpickle, "cloudpickle", None), "_PICKLE_BY_VALUE_MODULES", None)


def _registered_by_value() -> "set[str]":
    if isinstance(_BY_VALUE, set):
        return _BY_VALUE
    return cloudpickle.list_registry_pickle_by_value()


def _names_unimportable_code(header: bytes) -> bool:
    """Whether a plain pickle refers to code the receiver may lack (by name, not by value).

    A global is written as its module's name: ``__main__`` or a module registered to be
    pickled by value. A string that merely contains such a name costs a cloudpickle pass, no more.
    """
    if b"__main__" in header:
        return True
    registered = _registered_by_value()
    return bool(registered) and any(name.encode() in header for name in list(registered))


def _bytes_of(buf: pickle.PickleBuffer) -> memoryview:
    """The bytes behind ``buf`` as a view one level above the memory's owner.

    ``buf.raw()`` is a view of a view (our tensors' PickleBuffers wrap a memoryview), and
    CPython 3.11's garbage collector can crash (a segmentation fault in ``mbuf_clear``) when
    it clears such a chain that is garbage in one cycle — as it is when a failed send's
    traceback, which holds the message's frames, is kept by the frame of the caller that
    caught it. The wrapped memoryview itself, or a view of a wrapped object that is not one,
    has a single level. (A buffer that is not C-contiguous cannot be cast to bytes: it keeps
    ``raw()``.)"""
    view = memoryview(buf)  # through the buffer protocol: a view of the wrapped object
    wrapped = view.obj
    if isinstance(wrapped, memoryview):
        view.release()
        view = wrapped
    if view.ndim == 1 and view.format == "B":
        return view
    try:
        return view.cast("B")
    except TypeError:
        return buf.raw()


class _Pickling:
    """A pickler with its stream and its out-of-band buffers, used for one message at a time.

    Building a pickler, its stream and a callback per message costs more than pickling a small
    one; idle ones wait in :data:`_IDLE` (taking one and putting it back are single steps under
    the GIL, so threads never share one). Its memo is cleared after each message: it keeps
    nothing it pickled alive."""

    __slots__ = ("stream", "pickler", "buffers")

    def __init__(self, pickler_type: "type | None" = None) -> None:
        self.stream = io.BytesIO()
        self.buffers: list[memoryview] = []
        self.pickler = (pickler_type or _FastPickler)(self.stream, protocol=PROTOCOL,
                                                      buffer_callback=self.keep_out_of_band)

    def keep_out_of_band(self, buf: pickle.PickleBuffer) -> bool:
        raw = _bytes_of(buf)
        if raw.nbytes < INLINE_LIMIT:
            return True  # true means: serialize in band
        self.buffers.append(raw)
        return False

    def dump(self, obj: Any) -> tuple[bytes, list[memoryview]]:
        stream = self.stream
        try:
            self.pickler.dump(obj)
            return stream.getvalue(), self.buffers
        finally:
            self.pickler.clear_memo()
            self.buffers = []
            stream.seek(0)
            stream.truncate()


_IDLE: list[_Pickling] = []
_MAX_IDLE = 8


def _dump(pickler_type: type, obj: Any) -> tuple[bytes, list[memoryview]]:
    """``obj`` pickled by a fresh ``pickler_type`` (the rare cloudpickle path: not pooled)."""
    return _Pickling(pickler_type).dump(obj)


def _fast_dump(obj: Any) -> tuple[bytes, list[memoryview]]:
    """:func:`_dump` with the C pickler, by an idle :class:`_Pickling`."""
    try:
        pickling = _IDLE.pop()
    except IndexError:
        pickling = _Pickling()
    try:
        return pickling.dump(obj)
    finally:
        if len(_IDLE) < _MAX_IDLE:
            _IDLE.append(pickling)


def dumps(obj: Any) -> tuple[bytes, list[memoryview]]:
    """Serialize ``obj``; large tensor buffers are returned separately, uncopied."""
    try:
        header, buffers = _fast_dump(obj)
        if not _names_unimportable_code(header):
            return header, buffers
    except (pickle.PicklingError, TypeError, AttributeError):
        pass  # a lambda, a local function: only cloudpickle can
    return _dump(_CodePickler, obj)


def loads(header: bytes, buffers: list, unpickler: type[pickle.Unpickler] | None = None) -> Any:
    """Inverse of :func:`dumps`. Only call on verified messages: unpickling runs code.

    ``unpickler`` restricts what may be unpickled (a safe worker passes
    :class:`syftzmq.wire.safe.SafeUnpickler`); by default the C unpickler resolves anything.
    """
    try:
        if unpickler is not None:
            return unpickler(io.BytesIO(header), buffers=buffers).load()
        return pickle.loads(header, buffers=buffers)
    except ProtocolError:
        raise
    except Exception as exc:  # a message that cannot be parsed is the sender's error
        raise ProtocolError(f"cannot deserialize message: {type(exc).__name__}: {exc}") from exc
