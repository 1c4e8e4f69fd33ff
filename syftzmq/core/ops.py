"""Operations by name: what a command's ``op`` looks like on the wire, and what a worker may run.

A torch function pickled as an object arrives as ``getattr(torch._C._VariableFunctionsClass,
'add')``: unpickling it needs ``builtins.getattr``, which a worker in ``--safe`` mode can never
allow. So the client names every torch function it knows (``("func", "torch.add")``) and the
worker looks the name up in the same registry. The registry is the set of functions that take
part in PyTorch's ``__torch_function__`` protocol — the tensor operations — which leaves out
``torch.load``, ``torch.save``, ``torch.hub`` and everything else that touches files or code.

Tensor methods already travel by name (``("method", "add_")``). A safe worker runs only the
tensor methods of the same registry, minus the few that expose memory, shared memory or take
Python callables.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import torch

from ..errors import OperationRefused

# ------------------------------------------------------------------------------ vocabulary
# Python operators a tensor (and so a pointer) supports: ``a + b`` is ``__add__``, ``1 + a``
# ``__radd__``, ``a += b`` ``__iadd__``.
BINARY_OPERATORS = ("add", "sub", "mul", "div", "truediv", "floordiv", "mod", "pow", "matmul", "and",
                    "or", "xor", "lshift", "rshift")
UNARY_AND_COMPARISON_OPERATORS = ("__neg__", "__pos__", "__abs__", "__invert__", "__lt__",
                                  "__le__", "__gt__", "__ge__", "__eq__", "__ne__",
                                  "__getitem__", "__setitem__")
INPLACE_OPERATORS = frozenset(f"__i{name}__" for name in BINARY_OPERATORS)
OPERATORS = frozenset(f"__{prefix}{name}__" for name in BINARY_OPERATORS
                      for prefix in ("", "r", "i")) | frozenset(UNARY_AND_COMPARISON_OPERATORS)
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


# Tensor methods that reach raw memory, shared memory, devices or take Python callables.
_UNSAFE_METHODS = frozenset({
    "apply_", "map_", "map2_", "register_hook", "register_post_accumulate_grad_hook",
    "share_memory_", "storage", "untyped_storage", "data_ptr", "const_data_ptr", "set_",
    "pin_memory", "record_stream", "cuda", "ipu", "xpu", "mps", "numpy", "tolist",
    "storage_offset", "is_set_to", "module_load", "new_tensor",
})


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
def _registry() -> tuple[dict[str, Callable], dict[Callable, str], frozenset[str]]:
    """(name -> function, function -> name, allowed tensor method names), built once."""
    from torch.overrides import get_overridable_functions
    by_name: dict[str, Callable] = {}
    methods: set[str] = set()
    for namespace, functions in get_overridable_functions().items():
        if namespace is torch.Tensor:
            methods.update(getattr(f, "__name__", "") for f in functions if callable(f))
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
    allowed = {m for m in methods if m and not m.startswith("_")} - _UNSAFE_METHODS
    return by_name, by_function, frozenset(allowed | OPERATORS)


def op_to_wire(op: tuple) -> tuple:
    """The client's form of an op: torch functions by qualified name, anything else as is."""
    kind, target = op
    if kind == "func" and not isinstance(target, str):
        try:
            name = _registry()[1].get(target)
            method = _method_names().get(target)
        except TypeError:
            name = method = None
        if name is not None:
            return ("func", name)
        if method is not None and getattr(torch.Tensor, method, None) is target:
            return ("method", method)
    return op


def op_from_wire(op: Any, safe: bool) -> tuple:
    """The worker's form: names resolved to functions. In safe mode only registered names pass.

    Raises :class:`OperationRefused` (safe mode) or ``ValueError`` (malformed op).
    """
    if not (isinstance(op, tuple) and len(op) == 2
            and op[0] in ("func", "method", "op", "getattr", "setattr")):
        raise ValueError(f"malformed operation {op!r:.80}")
    kind, target = op
    if kind in ("op", "getattr", "setattr"):
        return _checked_named_op(kind, target, safe)
    by_name, _, methods = _registry()
    if kind == "method":
        if not isinstance(target, str):
            raise ValueError(f"method name must be a string, got {type(target).__name__}")
        if safe and target not in methods:
            raise OperationRefused(f"this worker runs in safe mode and refuses tensor method "
                                   f"{target!r}: only named torch tensor operations are allowed")
        return op
    if isinstance(target, str):
        function = by_name.get(target)
        if function is None:
            raise OperationRefused(f"unknown torch operation {target!r} (only torch functions "
                                   f"that take part in __torch_function__ can be named)")
        return ("func", function)
    if safe:
        raise OperationRefused("this worker runs in safe mode: operations must be named torch "
                               "functions, not pickled code")
    return op


def _checked_named_op(kind: str, target: Any, safe: bool) -> tuple:
    """``torch.ops`` operators by qualified name, and tensor properties by name."""
    if not isinstance(target, str):
        raise ValueError(f"{kind} needs a name, got {type(target).__name__}")
    if kind == "op":
        namespace = target.partition("::")[0]
        if safe and namespace != "aten":
            raise OperationRefused(f"this worker runs in safe mode: only aten operators may be "
                                   f"named, not {target!r}")
        return (kind, target)
    if kind == "setattr" and target not in SETTABLE_ATTRIBUTES:
        raise OperationRefused(f"only {sorted(SETTABLE_ATTRIBUTES)} can be set remotely, "
                               f"not {target!r}")
    if not tensor_property(target) or target.startswith("_"):
        raise OperationRefused(f"{target!r} is not a tensor property")
    return (kind, target)
