"""Remembered shape inference: the result metas of an operation, keyed by what decides them.

Running an operation on meta mirrors (:func:`syftzmq.tensor.mirrors.infer`) goes through torch's Python
decompositions and costs about 200 µs, nearly half of the client's time per operation. Its
answer depends only on the operation, the operands' shapes, dtypes and strides, and the
non-tensor arguments, so a loop that repeats an operation can reuse it.

Only the safe cases are cached:

- no operand requires grad: with grad, the mirrors' autograd graph must be built, since
  ``backward()`` on the mirrors is how the client knows which leaves get gradients;
- every tensor operand and every result is contiguous: a cached result comes back as a fresh
  contiguous mirror, which must behave like the one inference would have produced;
- in-place operations and ``out=`` are never cached: they change their operands' mirrors;
- every non-tensor argument is a plain hashable value (numbers, strings, dtypes...), compared
  by type and value, so ``x + 1`` and ``x + 1.0`` are different entries.

The cache is a pure function of its keys, bounded by :data:`LIMIT`: one per process, shared by
every session, never reset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable

import torch

from ..core.meta import TensorMeta
from ..core.vocabulary import PLAIN_VALUES
from .operand import RemoteOperand

LIMIT = 4096  # entries; the cache is emptied when full (loops reuse a handful of keys)


class _Uncacheable(Exception):
    pass


@dataclass(frozen=True)
class Inferred:
    """The results of one inference: their metas, and how they nest (``None``: one tensor)."""

    metas: tuple[TensorMeta, ...]
    structure: Any


def _tensor_key(mirror: torch.Tensor) -> tuple:
    if mirror.requires_grad or not mirror.is_contiguous():
        raise _Uncacheable
    return ("T", tuple(mirror.shape), mirror.dtype)


def _key(value: Any) -> Hashable:
    kind = type(value)
    if kind in PLAIN_VALUES:
        return (kind, value)
    if kind is torch.Tensor:
        return _tensor_key(value)
    if isinstance(value, RemoteOperand):
        meta = value._pending_meta
        if meta is not None:  # a lazy mirror: contiguous by construction
            if meta.requires_grad:
                raise _Uncacheable
            return ("T", tuple(meta.shape), meta.dtype)
        mirror = value._built_mirror
        if mirror is None:
            raise _Uncacheable
        return _tensor_key(mirror)
    if kind in (tuple, list, torch.Size):
        return (kind, tuple(_key(item) for item in value))
    if kind is dict:
        return (kind, tuple((name, _key(item)) for name, item in value.items()))
    raise _Uncacheable


class InferenceCache:
    """Inferred results by ``(op, argument key)``; see the module docstring for what qualifies."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._entries: dict[Hashable, Inferred] = {}
        self.hits = 0
        self.misses = 0

    def key(self, op: tuple, args: tuple, kwargs: dict) -> Hashable | None:
        """The key for this call, or ``None`` if it must not be cached."""
        if "out" in kwargs:
            return None
        try:
            key = (op, torch.is_grad_enabled(), _key(args), _key(kwargs))
            hash(key)
        except (_Uncacheable, TypeError):
            return None
        return key

    def get(self, key: Hashable) -> Inferred | None:
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def put(self, key: Hashable, leaves: list[torch.Tensor], structure: Any,
            metas: list[TensorMeta]) -> None:
        """Remember a result, unless a leaf could not be rebuilt exactly from its meta."""
        for leaf in leaves:
            if leaf.requires_grad or not leaf.is_contiguous():
                return
        if len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[key] = Inferred(tuple(metas), structure)


INFERRED = InferenceCache()
