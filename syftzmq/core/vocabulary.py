"""The one vocabulary both sides use for tensor operations: operator names, the attributes a
pointer names or sets, and the values that count as plain data.

The pointer (:mod:`syftzmq.tensor.pointer`) installs exactly these operators, the dispatcher and
the session test these sets, and the safe worker's allow-list (:mod:`syftzmq.core.allowlist`)
admits the same operators and attributes: one definition, so they cannot drift apart.
"""

from __future__ import annotations

import inspect

import torch

# Python operators a tensor (and so a pointer) supports: ``a + b`` is ``__add__``, ``1 + a``
# ``__radd__``, ``a += b`` ``__iadd__``.
BINARY_OPERATORS = ("add", "sub", "mul", "div", "truediv", "floordiv", "mod", "pow", "matmul", "and",
                    "or", "xor", "lshift", "rshift")
UNARY_AND_COMPARISON_OPERATORS = ("__neg__", "__pos__", "__abs__", "__invert__", "__lt__",
                                  "__le__", "__gt__", "__ge__", "__eq__", "__ne__",
                                  "__getitem__", "__setitem__")
INPLACE_OPERATORS = frozenset(f"__i{name}__" for name in BINARY_OPERATORS)
# Every operator form torch.Tensor itself has (there is no ``__imatmul__``, for one).
OPERATORS = frozenset(form for name in BINARY_OPERATORS for prefix in ("", "r", "i")
                      if hasattr(torch.Tensor, form := f"__{prefix}{name}__")) \
    | frozenset(UNARY_AND_COMPARISON_OPERATORS)
# Tensor attributes whose pointer names the attribute itself (no message, no stored alias),
# and the attributes a client may set on a remote tensor.
ATTRIBUTE_POINTERS = frozenset({"grad", "data"})
SETTABLE_ATTRIBUTES = frozenset({"grad", "data", "requires_grad"})
# Values that are plain data, not objects: immutable, cheap to compare and to hash.
PLAIN_VALUES = frozenset({bool, int, float, complex, str, type(None), type(Ellipsis), torch.dtype,
                          torch.device, torch.layout, torch.memory_format})


def is_inplace(name: str) -> bool:
    """Whether tensor method ``name`` changes its tensor (``add_``, ``__iadd__``, ``__setitem__``)."""
    return (name.endswith("_") and not name.startswith("__")) or name in INPLACE_OPERATORS \
        or name == "__setitem__"


def tensor_property(name: str) -> bool:
    """True if ``torch.Tensor.<name>`` is a property (``x.T``), not a method (``x.sum``)."""
    try:
        attr = inspect.getattr_static(torch.Tensor, name)
    except AttributeError:
        return False
    return hasattr(attr, "__get__") and not callable(attr)


