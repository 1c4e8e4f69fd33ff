"""A model sent back, unchanged, to the worker it was just fetched from is not sent again.

A training loop gets the model back after each step and sends it again at once (PySyft's
tutorials: ``model.send(data.location)`` ... ``model.get()`` per batch): when the next batch
is on the same worker, the parameters go back to where they came from. That worker still holds
what its ``GET`` took until this client confirms it has it (:mod:`syftzmq.client.deliveries`;
the confirmation rides on the next message there). So ``model.get`` keeps a copy of each
fetched parameter for as long as that lasts, and ``model.send`` to the same worker, for a
parameter whose values are still bitwise equal to that copy, sends the held copy's id instead
of the bytes (a ``STORE`` with ``held``, see :data:`syftzmq.core.messages.HELD`): the worker
stores a new leaf parameter over its held copy's data, as it would over the bytes.

Only when nothing else on the client can see the parameter's memory (:func:`private_data`):
the worker's held copy may share its pages with the client's tensor (a get hands pages over
instead of copying them), and after the send the worker writes them. The copies cost one
copy at the get (into the memory of copies dropped before, :func:`recycle`) and one
``memcmp`` at the send, against pickling, signing and writing the parameters into fresh
shared memory and mapping them on the worker (Part 6's model, 1.7 MB: its send went from
about 1.8 ms to 0.15 ms at the worker's end). They are dropped when the confirmation leaves
(the next message to that worker), so a model kept locally does not keep them; a get of more
than :data:`MAX_BYTES` keeps none, and at most :data:`SPARE_BYTES` of dropped copies' memory
is kept for reuse.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any, Iterable

import torch
from torch import nn

_libc = ctypes.CDLL(None)
_libc.memcmp.restype = ctypes.c_int
_libc.memcmp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
MAX_BYTES = 64 << 20  # a get of larger models keeps no copies (memory beats a saved send)
SPARE_BYTES = 16 << 20  # recycled copies' memory kept for the next get (see recycle)
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _storage_uses(tensor: torch.Tensor) -> int:
    return torch._C._storage_Use_Count(tensor.untyped_storage()._cdata)


_ALONE = _storage_uses(nn.Parameter(torch.zeros(2)))  # a parameter holding its memory alone


def copies_of(values: list[Any]) -> list[torch.Tensor | None]:
    """Per fetched value, a copy to compare with at the next send, or None (not a plain CPU
    parameter, or the values together exceed :data:`MAX_BYTES`)."""
    eligible = [type(v) is nn.Parameter and v.device.type == "cpu" and v.layout == torch.strided
                and v.element_size() in _BITS for v in values]
    total = sum(v.numel() * v.element_size() for v, ok in zip(values, eligible) if ok)
    if total > MAX_BYTES:
        return [None] * len(values)
    with torch.no_grad():
        return [_copy(v) if ok else None for v, ok in zip(values, eligible)]


_spares: dict[tuple, list[torch.Tensor]] = {}  # copies no longer needed, by dtype and shape
_spare_bytes = 0
_lock = threading.Lock()


def _copy(value: torch.Tensor) -> torch.Tensor:
    """A contiguous copy of ``value``, into a recycled copy's memory where one fits: copying
    into memory already in use costs a tenth of copying into fresh pages (1.6 MB here)."""
    global _spare_bytes
    with _lock:
        spares = _spares.get((value.dtype, value.shape))
        spare = spares.pop() if spares else None
        if spare is not None:
            _spare_bytes -= spare.numel() * spare.element_size()
    if spare is None:
        return value.detach().clone(memory_format=torch.contiguous_format)
    return spare.copy_(value.detach())


def recycle(copies: Iterable[torch.Tensor]) -> None:
    """Copies their keeper dropped: their memory serves the next :func:`copies_of` (up to
    :data:`SPARE_BYTES` in all). The caller holds no other reference to them."""
    global _spare_bytes
    with _lock:
        for copy in copies:
            nbytes = copy.numel() * copy.element_size()
            if _spare_bytes + nbytes <= SPARE_BYTES:
                _spares.setdefault((copy.dtype, copy.shape), []).append(copy)
                _spare_bytes += nbytes


def private_data(param: torch.Tensor) -> bool:
    """Whether nothing but ``param`` refers to its memory (no view, ``.data``, numpy array)."""
    return _storage_uses(param) <= _ALONE


def unchanged(param: torch.Tensor, copy: torch.Tensor) -> bool:
    """Whether ``param`` is a plain CPU parameter without a gradient, of ``copy``'s dtype and
    shape, with bitwise the same values (a changed sign of zero or NaN payload counts)."""
    if type(param) is not nn.Parameter or param.grad is not None or param.dtype != copy.dtype \
            or param.shape != copy.shape or param.device.type != "cpu" \
            or param.layout != torch.strided or param.is_conj() or param.is_neg():
        return False
    if param.is_contiguous() and copy.is_contiguous():  # memcmp: 2-3x faster than torch.equal
        return _libc.memcmp(param.data_ptr(), copy.data_ptr(), copy.numel() * copy.element_size()) == 0
    bits = _BITS[copy.element_size()]
    with torch.no_grad():
        return torch.equal(param.detach().view(bits), copy.view(bits))
