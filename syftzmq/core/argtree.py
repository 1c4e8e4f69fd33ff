"""Mapping over an operation's ``(args, kwargs)`` without pytree's cost in the common case.

Nearly every operation has flat arguments (pointers, tensors, numbers). Walking those with
``torch.utils._pytree`` costs tens of microseconds per call, a large share of the client's time
per operation; a comprehension costs one. Nested arguments (lists of tensors for ``torch.cat``,
tuples of indices) still go through pytree, which knows every container torch uses.

A receiver first measures nested arguments with :func:`check_budget`. Unpickling keeps shared
objects shared, so a message of a few hundred bytes can hold a list that contains itself twice,
64 levels deep: pytree would visit its 2**64 leaves. :func:`check_budget` visits each distinct
container once (remembering the size of what it has measured), so it costs what the message
holds, and refuses arguments whose walk would exceed a node budget, nest too deep, or contain
themselves.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from torch.utils import _pytree as pytree

_CONTAINERS = (tuple, list, dict)


def is_flat(args: tuple, kwargs: dict) -> bool:
    """True when no argument is itself a container."""
    for value in args:
        if isinstance(value, _CONTAINERS):
            return False
    for value in kwargs.values():
        if isinstance(value, _CONTAINERS):
            return False
    return True


def map_args(fn: Callable[[Any], Any], args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """``pytree.tree_map(fn, (args, kwargs))``, fast for flat arguments."""
    if is_flat(args, kwargs):
        return tuple([fn(value) for value in args]), {k: fn(v) for k, v in kwargs.items()}
    mapped_args, mapped_kwargs = pytree.tree_map(fn, (args, kwargs))
    return tuple(mapped_args), mapped_kwargs


def leaves(args: tuple, kwargs: dict) -> list[Any]:
    """Every leaf of ``(args, kwargs)``, fast for flat arguments."""
    if is_flat(args, kwargs):
        return [*args, *kwargs.values()]
    return pytree.tree_leaves((args, kwargs))


MAX_NODES = 1_000_000  # nodes (containers and leaves) a walk of the arguments may visit
MAX_DEPTH = 100  # containers nested in containers
_END = object()


def _children(node: Any) -> Any:
    """The items pytree would walk into, or ``None`` for a leaf (a superset of its rules)."""
    if isinstance(node, dict):
        return node.values()
    if isinstance(node, (list, tuple, deque)):
        return node
    return None


def check_budget(args: tuple, kwargs: dict, max_nodes: int = MAX_NODES,
                 max_depth: int = MAX_DEPTH) -> int:
    """How many nodes walking ``(args, kwargs)`` visits; ``ValueError`` if more than
    ``max_nodes``, nested deeper than ``max_depth``, or containing itself. Shared
    containers are measured once, so this costs the number of distinct containers and items."""
    root = (args, kwargs)
    sizes: dict[int, int] = {}
    path = [(root, iter(_children(root)))]
    on_path = {id(root)}
    totals = [1]
    while True:
        node, items = path[-1]
        child = next(items, _END)
        if child is _END:
            path.pop()
            on_path.discard(id(node))
            size = totals.pop()
            if not path:
                return size
            sizes[id(node)] = size
            totals[-1] += size
        elif (inner := _children(child)) is None:
            totals[-1] += 1
        elif id(child) in sizes:
            totals[-1] += sizes[id(child)]
        elif id(child) in on_path:
            raise ValueError("an argument contains itself: refused")
        elif len(path) >= max_depth:
            raise ValueError(f"arguments nested deeper than {max_depth} levels: refused")
        else:
            path.append((child, iter(inner)))
            on_path.add(id(child))
            totals.append(1)
        if totals[-1] > max_nodes:
            raise ValueError(f"walking these arguments would visit more than {max_nodes} "
                             f"nodes (a structure shared with itself?): refused")
