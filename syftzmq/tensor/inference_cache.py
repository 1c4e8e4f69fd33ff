"""Remembered shape inference: the result metas of an operation, keyed by what decides them.

Running an operation on meta mirrors (:func:`syftzmq.tensor.mirrors.infer`) goes through torch's Python
decompositions and costs about 200 µs, nearly half of the client's time per operation. Its
answer depends only on the operation, the operands' shapes, dtypes and strides, and the
non-tensor arguments, so a loop that repeats an operation can reuse it.

Only the safe cases are cached:

- operands that require grad are keyed as such, and their entry also records which result
  sends a gradient to which of them: ``backward()`` on the mirrors is how the client knows
  which leaves get gradients, so a replay wires its results into the mirrors' autograd graph
  (:mod:`syftzmq.tensor.replay`, which also says what it refuses: views, aliases...);
- a local tensor that requires grad is never cached (each call makes a fresh leaf of it);
- every tensor operand and every result is contiguous: a cached result comes back as a fresh
  contiguous mirror, which must behave like the one inference would have produced;
- ``out=`` is never cached; in-place operations only without grad and only when their
  inference left the changed tensor's shape, strides, dtype and grad flag as they were (then
  a replay only bumps its version counter, as the operation would);
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
    """The results of one inference: their metas, and how they nest (``None``: one tensor).

    ``edges`` (results that require grad): per operand that requires grad, in argument
    order, the results whose gradient reaches it. ``inplace``: an in-place operation that
    leaves its tensor's metadata as it was (no results)."""

    metas: tuple[TensorMeta, ...]
    structure: Any
    edges: tuple[frozenset[int], ...] | None = None
    inplace: bool = False


def _tensor_key(mirror: torch.Tensor) -> tuple:
    if mirror.requires_grad or not mirror.is_contiguous():
        raise _Uncacheable
    return ("T", tuple(mirror.shape), mirror.dtype)


def _operand_key(mirror: torch.Tensor) -> tuple:
    if not mirror.is_contiguous():
        raise _Uncacheable
    return ("G" if mirror.requires_grad else "T", tuple(mirror.shape), mirror.dtype)


def _key(value: Any) -> Hashable:
    kind = type(value)
    if kind in PLAIN_VALUES:
        return (kind, value)
    if kind is torch.Tensor:
        return _tensor_key(value)
    if isinstance(value, RemoteOperand):
        meta = value._pending_meta
        if meta is not None:  # a lazy mirror: contiguous by construction
            return ("G" if meta.requires_grad else "T", tuple(meta.shape), meta.dtype)
        mirror = value._built_mirror
        if mirror is None:
            raise _Uncacheable
        return _operand_key(mirror)
    if kind is tuple or kind is list or kind is torch.Size:
        return (kind, tuple([_key(item) for item in value]))
    if kind is dict:
        return (kind, tuple((name, _key(item)) for name, item in value.items()))
    raise _Uncacheable


_NO_KWARGS = (dict, ())  # what ``_key({})`` is


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
            # ``_key(args)``, one level less for the usual tuple
            arguments = (tuple, tuple([_key(item) for item in args])) if type(args) is tuple \
                else _key(args)
            key = (op, torch.is_grad_enabled(), arguments, _key(kwargs) if kwargs else _NO_KWARGS)
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
            metas: list[TensorMeta], edges: tuple[frozenset[int], ...] | None = None) -> None:
        """Remember a result, unless a leaf could not be rebuilt exactly from its meta (with
        ``edges``, results that require grad are rebuilt by a replay, which the caller has
        checked can rebuild them)."""
        for leaf in leaves:
            if (leaf.requires_grad and edges is None) or not leaf.is_contiguous():
                return
        self._store(key, Inferred(tuple(metas), structure, edges))

    def put_inplace(self, key: Hashable) -> None:
        """Remember that an in-place operation with this key changes no metadata."""
        self._store(key, Inferred((), None, inplace=True))

    def _store(self, key: Hashable, entry: Inferred) -> None:
        if len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[key] = entry


INFERRED = InferenceCache()
