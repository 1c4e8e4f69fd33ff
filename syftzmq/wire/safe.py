"""A restricted unpickler for workers started with ``--safe``.

Unpickling is code execution: a pickle may name any importable callable and call it. A safe
worker therefore resolves only an allow-list of globals — the tensor rebuild function of
:mod:`syftzmq.wire.serde`, syftzmq's own message records, torch dtypes, sizes and devices, and a
few harmless builtins. Everything else (cloudpickle's function and class rebuilders,
``builtins.getattr``, ``os.system``, torch's own storage loaders, ...) is refused before it is
imported, with an error that names it. Plain containers, numbers, strings and bytes need no
globals at all.
"""

from __future__ import annotations

import pickle
from typing import Any

import torch

from ..core.failures import Failure
from ..core.meta import TensorMeta
from ..core.refs import ChainRef, Ref, WorkerRef
from ..errors import RefusedByPolicy
from .serde import rebuild_tensor


# Every syftzmq object that travels by name, listed once. Module and name are read off the
# objects themselves, so moving a class moves its entry (and must raise the envelope's
# protocol version: an older peer would name the old place).
TRAVELS_BY_NAME = (rebuild_tensor, WorkerRef, Ref, ChainRef, Failure, TensorMeta)

_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {(obj.__module__, obj.__qualname__) for obj in TRAVELS_BY_NAME} | {
    ("torch", "Size"),
    ("torch", "device"),
    ("builtins", "slice"),
    ("builtins", "Ellipsis"),
    ("builtins", "complex"),
    ("builtins", "range"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
})
_TORCH_VALUE_TYPES = (torch.dtype, torch.layout, torch.memory_format)


def _layout_named(name: Any) -> torch.layout:
    """Stands in for ``torch.serialization._get_layout``, which is how a layout pickles: the
    same lookup of a layout by its name, and nothing else."""
    value = vars(torch).get(name[len("torch."):]) if isinstance(name, str) and \
        name.startswith("torch.") else None
    if not isinstance(value, torch.layout):
        raise RefusedByPolicy(f"{name!r:.60} is not a torch layout")
    return value


class SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only allow-listed globals."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if (module, name) == ("torch.serialization", "_get_layout"):
            return _layout_named
        # torch dtypes, layouts and memory formats, looked up in torch's namespace dict (no
        # attribute hook runs, so no lazy submodule import). Memory formats pickle under a name
        # pickle found by scanning modules, e.g. ("torch._utils", "torch.preserve_format").
        if module == "torch":
            leaf = name
        else:
            leaf = name[len("torch."):] if name.startswith("torch.") else ""
        value = vars(torch).get(leaf) if leaf else None
        if isinstance(value, _TORCH_VALUE_TYPES):
            return value
        raise RefusedByPolicy(
            f"this worker runs in safe mode and refuses to unpickle {module}.{name}: only tensors, "
            f"numbers, strings, containers and torch operations named as strings are accepted")

