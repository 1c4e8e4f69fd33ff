"""The one dispatcher: every operation on a pointer passes through :func:`remote_call`.

Torch functions arrive through ``__torch_function__`` (:func:`call_function`), tensor methods and
operators through the pointer's attributes (:func:`call_method`), tensor properties through
:func:`get_property` and :func:`set_property`. :func:`remote_call` then, in this order:

1. refuses ops that need the data (``item``, ``tolist``, ``bool``): call ``.get()`` first;
2. replaces remote parameters by their pointers and checks that every pointer operand lives on
   one worker (:class:`~syftzmq.errors.WorkerMismatchError`, nothing sent);
3. looks the result up in the inference cache (:mod:`syftzmq.tensor.inference_cache`; results
   that require grad are wired into the mirrors' autograd graph by :mod:`syftzmq.tensor.replay`),
   else runs the call on the operands' meta mirrors (:mod:`syftzmq.tensor.mirrors`): result
   shapes, dtypes, autograd graph — and local torch's own errors, raised here at the user's line;
4. answers locally what the mirror computes exactly (``dim``, ``is_complex``);
5. chooses the result ids, hands one fire-and-forget command to the session, and returns
   pointers to the results, nested as torch nests them.

Design note — why ``__torch_function__`` and not a list of op names: a pointer is not a tensor
subclass, so torch calls it for every public function; a new torch release's ops work
unchanged. Why no round trip: the caller chooses the result ids, so nothing needs an answer
until an observation (see :mod:`syftzmq.client.session`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

import torch
from torch.autograd.graph import increment_version
from torch.utils import _pytree as pytree

from ..core import argtree
from ..core.ids import new_id
from ..core.meta import TensorMeta, describe
from ..core.ops import op_name
from ..core.vocabulary import ATTRIBUTE_POINTERS, PLAIN_VALUES, is_inplace
from ..errors import NeedsGetError, WorkerMismatchError
from .inference_cache import INFERRED
from .mirrors import Unknown, infer
from .replay import grad_operands, learn_edges, replay, replayable
from .operand import RemoteOperand

REMOTE_DEVICE = torch.device("cpu")  # what a pointer reports as its device
# Methods whose result is a Python value that only the data can give.
NEEDS_DATA = frozenset({"item", "tolist", "__bool__", "__int__", "__float__", "__index__",
                        "__complex__", "numpy", "__array__", "equal", "allclose"})
# Results a mirror computes exactly: a plain value, or a shape.
_PYTHON_RESULTS = tuple(PLAIN_VALUES | {torch.Size})
# ``is_inplace`` per op name, remembered: a loop asks it of the same few names every call.
_is_inplace = lru_cache(maxsize=4096)(is_inplace)


def call_function(func: Callable, args: tuple, kwargs: dict) -> Any:
    """A torch function (or ``Tensor`` method called as a function) with pointer operands.

    Operators of ``torch.ops`` (``torch.ops.aten.add.Tensor``) travel by their qualified name:
    they do not pickle, and a name is all the worker needs to find them.
    """
    name = getattr(func, "__name__", repr(func))
    if isinstance(func, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        return remote_call(("op", op_name(func)), name, func, args, kwargs)
    return remote_call(("func", func), name, func, args, kwargs)


def session_of(worker: Any) -> Any:
    """The client session behind a worker handle (``sy.VirtualWorker``, ``sy.Worker``,
    ``sy.local_worker``) or a pointer: where a command to that worker goes."""
    session = getattr(worker, "session", None)
    if session is None and isinstance(worker, RemoteOperand):
        session = worker._require_session()
    if session is None:
        raise TypeError(f"expected a worker (sy.VirtualWorker, sy.Worker) or a pointer, got "
                        f"{type(worker).__name__} {worker!r:.60}")
    return session


def call_method(name: str, args: tuple, kwargs: dict) -> Any:
    """``args[0].<name>(*args[1:], **kwargs)`` where ``args[0]`` is a pointer."""
    return remote_call(("method", name), name,
                       lambda target, *a, **k: getattr(target, name)(*a, **k), args, kwargs)


# Tensor classes whose instances stand for the pointer they carry in ``_pointer``: a tensor
# sent in place (``x.send_(bob)``, :mod:`syftzmq.tensor.inplace`). Remote parameters are
# ``nn.Parameter`` instances and are recognised as such.
WRAPPER_TYPES: set[type] = set()


def unwrap(value: Any) -> Any:
    """A remote parameter (see :mod:`syftzmq.tensor.modules`) or a tensor sent in place stands
    for its pointer. Both are tensors: anything else (a pointer, a number) is itself at the
    cost of one type check, without ``Parameter``'s instance-check hook."""
    if not isinstance(value, torch.Tensor):
        return value
    if isinstance(value, torch.nn.Parameter) or type(value) in WRAPPER_TYPES:
        pointer = value.__dict__.get("_pointer")
        if isinstance(pointer, RemoteOperand):
            return pointer
    return value


def _pointers_in(args: tuple, kwargs: dict) -> list[Any]:
    return [leaf for leaf in argtree.leaves(args, kwargs) if isinstance(leaf, RemoteOperand)]


def common_location(pointers: list[Any], name: str) -> Any:
    """The worker all ``pointers`` live on; :class:`WorkerMismatchError` if they differ."""
    for pointer in pointers:
        pointer._check_usable()
    location = pointers[0]._location  # read after the checks: settling a move changes it
    for stranger in pointers:
        if stranger._location.incarnation != location.incarnation:
            raise WorkerMismatchError(
                f"{name}() mixes pointers on worker {location.id!r} and worker "
                f"{stranger._location.id!r}; nothing was sent. Move one operand first, "
                f"e.g. ptr.move(...)")
    return location


def remote_call(op: tuple, name: str, call: Callable, args: tuple, kwargs: dict) -> Any:
    """Check operands, infer results on the mirrors, send one command, return result pointers."""
    if name in NEEDS_DATA:
        raise NeedsGetError(f"{name}() needs the data, which lives on a worker: call .get() first")
    if argtree.is_flat(args, kwargs):  # the common case: one pass, no tree walk
        pointers = []
        unwrapped = None
        for index, value in enumerate(args):
            if isinstance(value, torch.Tensor):  # what unwrap() looks at
                value = unwrap(value)
                if unwrapped is None:
                    unwrapped = list(args)
                unwrapped[index] = value
            if isinstance(value, RemoteOperand):
                pointers.append(value)
        if unwrapped is not None:
            args = tuple(unwrapped)
        if kwargs:
            kwargs = {key: unwrap(value) for key, value in kwargs.items()}
            pointers += [value for value in kwargs.values() if isinstance(value, RemoteOperand)]
    else:
        args, kwargs = argtree.map_args(unwrap, args, kwargs)
        pointers = _pointers_in(args, kwargs)
    location = common_location(pointers, name)
    session = pointers[0]._require_session()

    inplace = _is_inplace(name)
    cache_key = _cache_key(op, inplace, args, kwargs)
    if cache_key is not None:
        cached = INFERRED.get(cache_key)
        if cached is not None:
            return _replayed(session, location, op, args, kwargs, cached)
    before = _metadata(args[0]) if cache_key is not None and inplace else None

    try:
        mirror_result = infer(call, args, kwargs)
        known = True
    except Unknown:
        mirror_result, known = None, False
        if name == "backward":
            session.grads_became_uncertain(location)

    if known and isinstance(mirror_result, _PYTHON_RESULTS):
        if mirror_result is None or inplace:
            session.command(location, op, args, kwargs, result_ids=[])
            return None
        return mirror_result  # computed exactly by the mirror: no message
    if inplace and isinstance(args[0], RemoteOperand):
        if before is not None and known and mirror_result is args[0]._mirror \
                and _metadata(args[0]) == before:
            INFERRED.put_inplace(cache_key)
        session.command(location, op, args, kwargs, result_ids=[])
        return args[0]

    if not known:
        leaves: list[Any] = [None]
        structure = None
    else:
        leaves, structure = pytree.tree_flatten(mirror_result)
        if structure.is_leaf():
            structure = None  # one tensor: no tree to rebuild per call (or per replay)
        if not leaves or not all(isinstance(leaf, torch.Tensor) for leaf in leaves):
            raise NeedsGetError(f"{name}() returns a Python value ({type(mirror_result).__name__}), "
                                f"which needs the data: call .get() first")
    metas = [describe(leaf) if leaf is not None else None for leaf in leaves]
    if known and cache_key is not None and not inplace:
        _remember(cache_key, call, args, kwargs, leaves, structure, metas)
    return _send_with_results(session, location, op, args, kwargs, metas, structure,
                              mirrors=leaves)


def _cache_key(op: tuple, inplace: bool, args: tuple, kwargs: dict) -> Any:
    """The inference-cache key of this call, or ``None``: in-place operations only without
    grad (with grad they rewrite the mirrors' autograd history) and only on a pointer."""
    if inplace and (torch.is_grad_enabled() or not args or not isinstance(args[0], RemoteOperand)):
        return None
    return INFERRED.key(op, args, kwargs)


def _metadata(pointer: RemoteOperand) -> tuple | None:
    """What an in-place operation must leave unchanged for its replay to be a no-op here."""
    mirror = pointer._mirror
    if mirror is None:
        return None
    return (mirror.shape, mirror.stride(), mirror.dtype, mirror.requires_grad, mirror.is_leaf)


def _remember(cache_key: Any, call: Callable, args: tuple, kwargs: dict, leaves: list[Any],
              structure: Any, metas: list[TensorMeta | None]) -> None:
    """Cache a first inference; with results that require grad, only once their autograd
    edges are learned and a replay can rebuild them (see :mod:`syftzmq.tensor.replay`)."""
    if not any(leaf.requires_grad for leaf in leaves):
        INFERRED.put(cache_key, leaves, structure, metas)
        return
    operands = grad_operands(args, kwargs)
    if not replayable(leaves, [operand._mirror for operand in operands]):
        return
    edges = learn_edges(call, args, kwargs, operands)
    if edges is not None:
        INFERRED.put(cache_key, leaves, structure, metas, edges)


def _replayed(session: Any, location: Any, op: tuple, args: tuple, kwargs: dict,
              cached: Any) -> Any:
    """A call whose inference is remembered: no inference, the same command."""
    if cached.inplace:
        increment_version(args[0]._mirror)  # as the operation would: saved tensors notice
        session.command(location, op, args, kwargs, result_ids=[])
        return args[0]
    if cached.edges is None:
        return _send_with_results(session, location, op, args, kwargs, list(cached.metas),
                                  cached.structure, mirrors=None)
    mirrors = replay(cached.metas, cached.edges, grad_operands(args, kwargs))
    return _send_with_results(session, location, op, args, kwargs, list(cached.metas),
                              cached.structure, mirrors=mirrors)


def _send_with_results(session: Any, location: Any, op: tuple, args: tuple, kwargs: dict,
                       metas: list[TensorMeta | None], structure: Any,
                       mirrors: list[Any] | None) -> Any:
    """Send the command with fresh result ids; pointers to the results, nested as ``structure``.

    ``mirrors`` are the inferred meta results; without them (a cached inference) each pointer
    builds its mirror from its meta when first needed.
    """
    if structure is None and len(metas) == 1:  # one tensor: no lists to build and zip
        result_id = new_id()
        session.command(location, op, args, kwargs, result_ids=[result_id], metas=metas)
        if mirrors is None:
            return session.new_pointer(location, result_id, meta=metas[0])
        return session.new_pointer(location, result_id, mirror=mirrors[0])
    result_ids = [new_id() for _ in metas]
    session.command(location, op, args, kwargs, result_ids=result_ids, metas=metas)
    if mirrors is None:
        results = [session.new_pointer(location, rid, meta=meta) for rid, meta in zip(result_ids, metas)]
    else:
        results = [session.new_pointer(location, rid, mirror=leaf) for rid, leaf in zip(result_ids, mirrors)]
    return results[0] if structure is None else pytree.tree_unflatten(results, structure)


def get_property(pointer: Any, name: str) -> Any:
    """``pointer.<name>`` for a tensor property: answered by the mirror where it can be."""
    pointer._check_usable()
    session = pointer._require_session()
    if name == "device":
        return REMOTE_DEVICE
    if name == "grad" and (pointer._mirror is None or pointer._grad_unknown):
        meta = session.info(pointer, attr="grad")
        return None if meta is None else _attribute_pointer(pointer, "grad", meta)
    mirror = pointer._resolved_mirror()
    value = getattr(mirror, name)
    if not isinstance(value, torch.Tensor):
        return value
    if name in ATTRIBUTE_POINTERS:
        return _attribute_pointer(pointer, name, value)
    return _remote_property(pointer, name)


def _remote_property(pointer: Any, name: str) -> Any:
    """A tensor-valued property (``x.T``, ``x.mH``) computed and stored on the holder."""
    return remote_call(("getattr", name), name, lambda target: getattr(target, name),
                       (pointer,), {})


def _attribute_pointer(pointer: Any, name: str, known: Any) -> Any:
    if pointer._attr is not None:  # x.grad.data: resolve one level on the worker
        return _remote_property(pointer, name)
    return pointer._attribute(name, known)


def set_property(pointer: Any, name: str, value: Any) -> None:
    """``pointer.<name> = value`` for ``grad``, ``data`` and ``requires_grad``."""
    pointer._check_usable()
    if isinstance(value, RemoteOperand):
        common_location([pointer, value], f"setting .{name}")
    session = pointer._require_session()
    mirror = pointer._mirror
    if mirror is not None:
        mirror_value = value._mirror if isinstance(value, RemoteOperand) else value
        if isinstance(mirror_value, torch.Tensor) and mirror_value.device.type != "meta":
            mirror_value = mirror_value.detach().to("meta")
        setattr(mirror, name, mirror_value)  # raises local torch's error for a bad value
    session.command(pointer._location, ("setattr", name), (pointer, value), {}, result_ids=[])
