"""Objects to ``(header, buffers)`` and back, with tensor bytes out of band.

cloudpickle (pickle protocol 5) carries the structure, so functions and classes defined in the
user's ``__main__`` travel too. A plain CPU tensor is reduced to its dtype, shape and a
``PickleBuffer`` over its memory: buffers of at least ``INLINE_LIMIT`` bytes leave the pickle and
become frames of their own, sent without copying and rebuilt on the receiver over the received
memory. Smaller ones stay in the pickle, where one copy is cheaper than one more frame.
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


def tensor_memory(tensor: torch.Tensor) -> memoryview:
    """A writable memoryview over a contiguous CPU tensor's bytes, keeping the tensor alive."""
    nbytes = tensor.numel() * tensor.element_size()
    if nbytes == 0:
        return memoryview(bytearray())
    raw = (ctypes.c_char * nbytes).from_address(tensor.data_ptr())
    raw._owner = tensor  # the view must not outlive the tensor's storage
    return memoryview(raw).cast("B")


def _plain_cpu(tensor: torch.Tensor) -> bool:
    return (tensor.device.type == "cpu" and tensor.layout == torch.strided
            and not tensor.is_quantized and type(tensor) in (torch.Tensor, torch.nn.Parameter))


def rebuild_tensor(buffer: Any, dtype: torch.dtype, shape: tuple, requires_grad: bool,
                   grad: torch.Tensor | None, parameter: bool) -> torch.Tensor:
    """Inverse of the tensor reduction; checks that the bytes match the declared shape."""
    numel = 1
    for size in shape:
        numel *= size
    expected = numel * torch.empty((), dtype=dtype).element_size()
    view = memoryview(buffer).cast("B") if not isinstance(buffer, memoryview) else buffer.cast("B")
    if view.nbytes != expected:
        raise ProtocolError(f"tensor of shape {tuple(shape)} and dtype {dtype} needs {expected} bytes, "
                            f"got {view.nbytes}")
    if expected == 0:
        tensor = torch.empty(shape, dtype=dtype)
    elif isinstance(buffer, (bytes, bytearray)) or view.readonly:
        # in band (small): one copy into a tensor of its own frees the pickle's bytearray
        tensor = torch.empty(shape, dtype=dtype)
        tensor_memory(tensor)[:] = view
    else:
        tensor = torch.frombuffer(view, dtype=dtype).reshape(shape)  # over the received frame
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


class _Pickler(cloudpickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, torch.Tensor) and _plain_cpu(obj):
            data = _materialized(obj.detach())
            return rebuild_tensor, (pickle.PickleBuffer(tensor_memory(data)), obj.dtype,
                                    tuple(obj.shape), obj.requires_grad, obj.grad if obj.is_leaf else None,
                                    isinstance(obj, torch.nn.Parameter))
        return super().reducer_override(obj)


def dumps(obj: Any) -> tuple[bytes, list[memoryview]]:
    """Serialize ``obj``; large tensor buffers are returned separately, uncopied."""
    buffers: list[memoryview] = []

    def keep_out_of_band(buf: pickle.PickleBuffer) -> bool:
        raw = buf.raw()
        if raw.nbytes < INLINE_LIMIT:
            return True  # true means: serialize in band
        buffers.append(raw)
        return False

    stream = io.BytesIO()
    _Pickler(stream, protocol=PROTOCOL, buffer_callback=keep_out_of_band).dump(obj)
    return stream.getvalue(), buffers


def loads(header: bytes, buffers: list, safe: bool = False) -> Any:
    """Inverse of :func:`dumps`. Only call on verified messages: unpickling runs code.

    ``safe`` resolves only the allow-list of :mod:`syftzmq.wire.safe` (workers in safe mode).
    """
    try:
        if safe:
            from .safe import safe_loads
            return safe_loads(header, buffers)
        return pickle.loads(header, buffers=buffers)
    except ProtocolError:
        raise
    except Exception as exc:  # a message that cannot be parsed is the sender's error
        raise ProtocolError(f"cannot deserialize message: {type(exc).__name__}: {exc}") from exc
