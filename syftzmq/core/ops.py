"""Operations by name: what a command's ``op`` looks like on the wire, and what a worker may run.

A torch function pickled as an object arrives as ``getattr(torch._C._VariableFunctionsClass,
'add')``: unpickling it needs ``builtins.getattr``, which a worker in ``--safe`` mode can never
allow. So the client names every torch function it knows (``("func", "torch.add")``) and the
worker looks the name up. Names come from the safe allow-list (:mod:`syftzmq.core.allowlist`) first,
then from the set of functions that take part in PyTorch's ``__torch_function__`` protocol, so a
default worker can still run a tensor operation the allow-list leaves out.

Tensor methods already travel by name (``("method", "add_")``), torch.ops operators as
``("op", "aten::mul.Tensor")``. A safe worker runs only what :mod:`syftzmq.core.allowlist` lists,
resolved through its fixed table; a default worker runs any name (its key holders can run code
anyway, see SECURITY.md).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch

from ..errors import OperationRefused
from . import allowlist
from .vocabulary import SETTABLE_ATTRIBUTES, tensor_property

def op_name(func: Any) -> str:
    """``namespace::name.overload`` of a ``torch.ops`` operator."""
    if isinstance(func, torch._ops.OpOverload):
        return f"{func._schema.name}.{func._overloadname}"
    return f"{func._qualified_op_name}"


def resolve_op(qualified: str) -> Any:
    """Inverse of :func:`op_name`: the operator object, looked up in ``torch.ops``."""
    namespace, _, rest = qualified.partition("::")
    name, _, overload = rest.partition(".")
    packet = getattr(getattr(torch.ops, namespace), name)
    return getattr(packet, overload) if overload else packet


@functools.lru_cache(maxsize=None)
def _method_names() -> dict[Callable, str]:
    """``torch.Tensor.add`` -> ``"add"``: tensor methods that reach a pointer as functions
    (``torch.ones(3) * ptr`` calls ``Tensor.__mul__`` through ``__torch_function__``)."""
    from torch.overrides import get_overridable_functions
    names: dict[Callable, str] = {}
    for function in get_overridable_functions().get(torch.Tensor, []):
        name = getattr(function, "__name__", None)
        if callable(function) and isinstance(name, str):
            try:
                names.setdefault(function, name)
            except TypeError:
                continue
    return names


@functools.lru_cache(maxsize=None)
def _registry() -> tuple[dict[str, Callable], dict[Callable, str]]:
    """(name -> function, function -> name) of the ``__torch_function__`` functions, built once."""
    from torch.overrides import get_overridable_functions
    by_name: dict[str, Callable] = {}
    for namespace, functions in get_overridable_functions().items():
        if namespace is torch.Tensor:
            continue
        prefix = getattr(namespace, "__name__", None)
        if not isinstance(prefix, str) or not prefix.startswith("torch"):
            continue
        for function in functions:
            name = getattr(function, "__name__", None)
            if callable(function) and isinstance(name, str) and not name.startswith("_"):
                by_name.setdefault(f"{prefix}.{name}", function)
    by_function: dict[Callable, str] = {}
    for name, function in by_name.items():
        try:
            by_function.setdefault(function, name)
        except TypeError:  # unhashable callables cannot be looked up; they travel pickled
            continue
    return by_name, by_function


def op_to_wire(op: tuple) -> tuple:
    """The client's form of an op: torch functions by qualified name, anything else as is."""
    kind, target = op
    if kind == "func" and not isinstance(target, str):
        try:
            name = allowlist.function_name(target) or _registry()[1].get(target)
            method = _method_names().get(target) or allowlist.method_name(target)
        except TypeError:
            name = method = None
        if name is not None:
            return ("func", name)
        if method is not None and getattr(torch.Tensor, method, None) is target:
            return ("method", method)
    return op


def op_from_wire(op: Any, safe: bool) -> tuple:
    """The worker's form: names resolved to functions. In safe mode only the names on the
    allow-list of :mod:`syftzmq.core.allowlist` pass.

    Raises :class:`OperationRefused` (a name that is refused or unknown) or ``ValueError``
    (malformed op).
    """
    if not (isinstance(op, tuple) and len(op) == 2
            and op[0] in ("func", "method", "op", "getattr", "setattr")):
        raise ValueError(f"malformed operation {op!r:.80}")
    kind, target = op
    if safe:  # only what syftzmq/core/allowlist.py lists, resolved through its fixed table
        return allowlist.safe_op(kind, target)
    if kind in ("op", "getattr", "setattr"):
        return _checked_named_op(kind, target)
    if kind == "method":
        if not isinstance(target, str):
            raise ValueError(f"method name must be a string, got {type(target).__name__}")
        return op
    if isinstance(target, str):
        function = _registry()[0].get(target) or allowlist.resolve_function(target)
        if function is None:
            raise OperationRefused(f"unknown torch operation {target!r} (only torch functions "
                                   f"that take part in __torch_function__ can be named)")
        return ("func", function)
    return op  # default mode: a pickled function runs as it is


def _checked_named_op(kind: str, target: Any) -> tuple:
    """Default mode: ``torch.ops`` operators by qualified name, and tensor properties by name."""
    if not isinstance(target, str):
        raise ValueError(f"{kind} needs a name, got {type(target).__name__}")
    if kind == "op":
        return (kind, target)
    if kind == "setattr" and target not in SETTABLE_ATTRIBUTES:
        raise OperationRefused(f"only {sorted(SETTABLE_ATTRIBUTES)} can be set remotely, "
                               f"not {target!r}")
    if not tensor_property(target) or target.startswith("_"):
        raise OperationRefused(f"{target!r} is not a tensor property")
    return (kind, target)
