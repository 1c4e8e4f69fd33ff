"""Mapping over an operation's ``(args, kwargs)`` without pytree's cost in the common case.

Nearly every operation has flat arguments (pointers, tensors, numbers). Walking those with
``torch.utils._pytree`` costs tens of microseconds per call, a large share of the client's time
per operation; a comprehension costs one. Nested arguments (lists of tensors for ``torch.cat``,
tuples of indices) still go through pytree, which knows every container torch uses.
"""

from __future__ import annotations

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
