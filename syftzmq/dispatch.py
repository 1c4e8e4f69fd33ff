"""From a torch call on pointers to one command: the client half of remote execution.

``call_function`` (torch functions, via ``__torch_function__``) and ``call_method`` (tensor
methods and operators) share one path: check the operands, run the call on the local meta
mirrors (result shapes, dtypes, autograd graph — and local torch's own errors), choose result
ids, send one fire-and-forget command, and return pointers to the results.

Ops with a Python result that the mirror computes exactly (``dim``, ``is_complex``) answer
locally; ops that need the data (``item``, ``tolist``, ``bool``) say to call ``.get()`` first.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils import _pytree as pytree

from . import argtree
from .errors import NeedsGetError, WorkerMismatchError
from .ids import new_id
from .pointer import ATTRIBUTE_POINTERS, REMOTE_DEVICE, PointerTensor
from .result_cache import RESULTS
from .shapes import TensorMeta, Unknown, describe, infer

# Methods whose result is a Python value that only the data can give.
NEEDS_DATA = frozenset({"item", "tolist", "__bool__", "__int__", "__float__", "__index__",
                        "__complex__", "numpy", "__array__", "equal", "allclose"})
_PYTHON_VALUES = (bool, int, float, complex, str, torch.Size, torch.dtype, torch.device,
                  torch.layout, torch.memory_format, type(None))


def is_inplace(name: str) -> bool:
    return (name.endswith("_") and not name.startswith("__")) or (
        name.startswith("__i") and name[3:] in {
            "add__", "sub__", "mul__", "truediv__", "floordiv__", "mod__", "pow__", "matmul__",
            "and__", "or__", "xor__", "lshift__", "rshift__"}) or name == "__setitem__"


def call_function(func: Callable, args: tuple, kwargs: dict) -> Any:
    """A torch function (or ``Tensor`` method called as a function) with pointer operands.

    Operators of ``torch.ops`` (``torch.ops.aten.add.Tensor``) travel by their qualified name:
    they do not pickle, and a name is all the worker needs to find them.
    """
    name = getattr(func, "__name__", repr(func))
    if isinstance(func, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        return remote_call(("op", op_name(func)), name, func, args, kwargs)
    return remote_call(("func", func), name, func, args, kwargs)


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


def call_method(name: str, args: tuple, kwargs: dict) -> Any:
    """``args[0].<name>(*args[1:], **kwargs)`` where ``args[0]`` is a pointer."""
    return remote_call(("method", name), name,
                       lambda target, *a, **k: getattr(target, name)(*a, **k), args, kwargs)


def unwrap(value: Any) -> Any:
    """A remote parameter stands for its pointer (see :mod:`syftzmq.modules`)."""
    if isinstance(value, torch.nn.Parameter):
        pointer = value.__dict__.get("_pointer")
        if isinstance(pointer, PointerTensor):
            return pointer
    return value


def _pointers_in(args: tuple, kwargs: dict) -> list[PointerTensor]:
    return [leaf for leaf in argtree.leaves(args, kwargs) if isinstance(leaf, PointerTensor)]


def _common_location(pointers: list[PointerTensor], name: str):
    for pointer in pointers:
        pointer._check_usable()
    location = pointers[0]._location
    stranger = next((p for p in pointers if p._location.node != location.node), None)
    if stranger is not None:
        raise WorkerMismatchError(
            f"{name}() mixes pointers on worker {location.id!r} and worker "
            f"{stranger._location.id!r}; nothing was sent. Move one operand first, "
            f"e.g. ptr.move(...)")
    return location


def remote_call(op: tuple, name: str, call: Callable, args: tuple, kwargs: dict) -> Any:
    """Check operands, infer results on the mirrors, send one command, return result pointers."""
    if name in NEEDS_DATA:
        raise NeedsGetError(f"{name}() needs the data, which lives on a worker: call .get() first")
    args, kwargs = argtree.map_args(unwrap, args, kwargs)
    pointers = _pointers_in(args, kwargs)
    location = _common_location(pointers, name)
    session = pointers[0]._require_session()

    inplace = is_inplace(name)
    cache_key = None if inplace else RESULTS.key(op, args, kwargs)
    if cache_key is not None:
        cached = RESULTS.get(cache_key)
        if cached is not None:
            return _send_with_results(session, location, op, args, kwargs, list(cached.metas),
                                      cached.structure, mirrors=None)

    try:
        mirror_result = infer(call, args, kwargs)
        known = True
    except Unknown:
        mirror_result, known = None, False
        if name == "backward":
            session.grads_uncertain = True

    if known and isinstance(mirror_result, _PYTHON_VALUES):
        if mirror_result is None or is_inplace(name):
            session.command(location, op, args, kwargs, result_ids=[])
            return None
        return mirror_result  # computed exactly by the mirror: no message
    if inplace and isinstance(args[0], PointerTensor):
        session.command(location, op, args, kwargs, result_ids=[])
        return args[0]

    if not known:
        leaves: list[Any] = [None]
        structure = None
    else:
        leaves, structure = pytree.tree_flatten(mirror_result)
        if not leaves or not all(isinstance(leaf, torch.Tensor) for leaf in leaves):
            raise NeedsGetError(f"{name}() returns a Python value ({type(mirror_result).__name__}), "
                                f"which needs the data: call .get() first")
    metas = [describe(leaf) if leaf is not None else None for leaf in leaves]
    if known and cache_key is not None:
        RESULTS.put(cache_key, leaves, structure, metas)
    return _send_with_results(session, location, op, args, kwargs, metas, structure,
                              mirrors=leaves)


def _send_with_results(session: Any, location: Any, op: tuple, args: tuple, kwargs: dict,
                       metas: list[TensorMeta | None], structure: Any,
                       mirrors: list[Any] | None) -> Any:
    """Send the command with fresh result ids; pointers to the results, nested as ``structure``.

    ``mirrors`` are the inferred meta results; without them (a cached inference) each pointer
    builds its mirror from its meta when first needed.
    """
    result_ids = [new_id() for _ in metas]
    session.command(location, op, args, kwargs, result_ids=result_ids, metas=metas)
    if mirrors is None:
        results = [session.new_pointer(location, rid, meta=meta) for rid, meta in zip(result_ids, metas)]
    else:
        results = [session.new_pointer(location, rid, mirror=leaf) for rid, leaf in zip(result_ids, mirrors)]
    return results[0] if structure is None else pytree.tree_unflatten(results, structure)


def get_property(pointer: PointerTensor, name: str) -> Any:
    """``pointer.<name>`` for a tensor property: answered by the mirror where it can be."""
    pointer._check_usable()
    session = pointer._require_session()
    if name == "device":
        return REMOTE_DEVICE
    if name == "grad" and (pointer._mirror is None or session.grads_uncertain
                           or pointer._grad_unknown):
        meta = session.info(pointer, attr="grad")
        return None if meta is None else _attribute_pointer(pointer, "grad", meta)
    mirror = pointer._resolved_mirror()
    value = getattr(mirror, name)
    if not isinstance(value, torch.Tensor):
        return value
    if name in ATTRIBUTE_POINTERS:
        return _attribute_pointer(pointer, name, value)
    return _remote_property(pointer, name)


def _remote_property(pointer: PointerTensor, name: str) -> Any:
    """A tensor-valued property (``x.T``, ``x.mH``) computed and stored on the holder."""
    return remote_call(("getattr", name), name, lambda target: getattr(target, name),
                       (pointer,), {})


def _attribute_pointer(pointer: PointerTensor, name: str, mirror: Any) -> PointerTensor:
    if pointer._attr is not None:  # x.grad.data: resolve one level on the worker
        return _remote_property(pointer, name)
    meta = mirror if isinstance(mirror, TensorMeta) else None
    return PointerTensor(pointer._location, pointer.id_at_location, meta=meta,
                         mirror=None if meta is not None else mirror, owning=False,
                         session=pointer._session, attr=name)


def set_property(pointer: PointerTensor, name: str, value: Any) -> None:
    """``pointer.<name> = value`` for ``grad``, ``data`` and ``requires_grad``."""
    pointer._check_usable()
    if isinstance(value, PointerTensor):
        _common_location([pointer, value], f"setting .{name}")
    session = pointer._require_session()
    mirror = pointer._mirror
    if mirror is not None:
        mirror_value = value._mirror if isinstance(value, PointerTensor) else value
        if isinstance(mirror_value, torch.Tensor) and mirror_value.device.type != "meta":
            mirror_value = mirror_value.detach().to("meta")
        setattr(mirror, name, mirror_value)  # raises local torch's error for a bad value
    session.command(pointer._location, ("setattr", name), (pointer, value), {}, result_ids=[])
