"""Models on workers: ``model.send(w)`` in place, ``model(ptr)``, ``get``, ``move``, ``copy``.

``send`` keeps every ``nn.Parameter`` the same Python object — an optimizer built before the
send keeps working — by turning it into a :class:`RemoteParameter`: still an ``nn.Parameter``
(same class layout; its local storage shrinks to one element), but every torch function, method
and property on it goes, through ``__torch_function__``, to the pointer it carries. ``get``
turns it back and fills in the data and gradient.

Optimizer state follows its parameters: a global step pre-hook moves state tensors to wherever
their parameter now lives, so one optimizer can serve a model that visits several workers.
"""

from __future__ import annotations

import copy
import sys
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

from ..core import argtree
from ..core.vocabulary import is_inplace
from ..wire.shm_map import deferred_unmaps
from . import unchanged
from .pointer import PointerTensor
from .remote_call import call_function, get_property, session_of, set_property, unwrap

_PROPERTY_ACCESS = {"__get__", "__set__", "__delete__"}


class RemoteParameter(nn.Parameter):
    """An ``nn.Parameter`` whose data lives on a worker (``self._pointer``)."""

    _pointer: PointerTensor

    @classmethod
    def __torch_function__(cls, func: Callable, types: tuple, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        return route_to_pointer(RemoteParameter, func, args, kwargs or {})


def route_to_pointer(wrapper: type, func: Callable, args: tuple, kwargs: dict) -> Any:
    """``__torch_function__`` of a tensor class whose instances stand for the pointer in their
    ``_pointer`` (``wrapper``): properties answered from the pointer's mirror, everything else
    run where the data lives. An in-place operation returns the wrapper itself."""
    name = getattr(func, "__name__", "")
    if name in _PROPERTY_ACCESS and args and isinstance(args[0], wrapper):
        return _property(func, args)
    if name in ("__repr__", "__str__", "__format__"):
        return f"{wrapper.__name__}({args[0]._pointer!r})"
    if name == "__reduce_ex__":
        raise TypeError(f"a {wrapper.__name__} cannot be pickled; .get() it first")
    wrappers = [a for a in argtree.leaves(args, kwargs) if isinstance(a, wrapper)]
    result = call_function(func, tuple(args), kwargs)
    if is_inplace(name) and wrappers and result is wrappers[0]._pointer:
        return wrappers[0]
    return result


def _property(func: Callable, args: tuple) -> Any:
    param: Any = args[0]
    prop = func.__self__.__name__
    if func.__name__ == "__get__":
        if prop in ("shape", "dtype", "device", "is_leaf", "requires_grad", "ndim", "layout",
                    "is_sparse", "is_quantized", "is_meta", "is_cuda", "is_nested", "names",
                    "is_mkldnn", "is_xpu", "is_mps", "is_complex", "itemsize", "nbytes"):
            if prop == "device":
                return param._pointer.device
            return getattr(param._pointer._resolved_mirror(), prop)
        return get_property(param._pointer, prop)
    if func.__name__ == "__set__":
        return set_property(param._pointer, prop, unwrap(args[1]))
    raise AttributeError(f"cannot delete .{prop} of a remote tensor")


def make_remote(param: nn.Parameter, pointer: PointerTensor) -> RemoteParameter:
    """Turn ``param`` itself into a RemoteParameter pointing at ``pointer``."""
    with torch.no_grad():
        param.data = torch.zeros((), dtype=param.dtype).expand(param.shape)  # free local memory
    param.grad = None
    param.__class__ = RemoteParameter
    param._pointer = pointer
    return param  # type: ignore[return-value]


def make_local(param: RemoteParameter, value: torch.Tensor) -> nn.Parameter:
    """Turn a RemoteParameter back into a plain ``nn.Parameter`` holding ``value``."""
    del param._pointer
    param.__class__ = nn.Parameter
    with torch.no_grad():
        param.data = value.detach()
    param.grad = value.grad
    return param


def _parameters(module: nn.Module) -> list[tuple[nn.Module, str, nn.Parameter]]:
    return [(owner, name, param) for owner in module.modules()
            for name, param in owner._parameters.items() if param is not None]


def _buffers(module: nn.Module) -> list[tuple[nn.Module, str, Any]]:
    return [(owner, name, buf) for owner in module.modules()
            for name, buf in owner._buffers.items() if buf is not None]


def _references(grad: torch.Tensor) -> tuple[int, int]:
    """References to ``grad`` and to its memory, counted the same way for every caller."""
    return sys.getrefcount(grad), torch._C._storage_Use_Count(grad.untyped_storage()._cdata)


def _baseline() -> tuple[int, int]:
    param = torch.nn.Parameter(torch.zeros(2))
    param.grad = torch.zeros(2)
    grad = param.grad  # held the way :func:`private_grad` holds it
    return _references(grad)


_PRIVATE = _baseline()  # what a gradient held by its parameter alone shows


def private_grad(param: torch.Tensor) -> torch.Tensor | None:
    """``param``'s gradient if nothing else refers to it or to its memory (no other variable,
    view, numpy array or autograd graph), so it cannot change before it is sent; else None."""
    grad = param.grad
    if grad is None or type(grad) is not torch.Tensor or grad.requires_grad \
            or grad.grad_fn is not None or grad.layout != torch.strided \
            or grad.device.type != "cpu" or grad.is_conj() or grad.is_neg():
        return None
    refs = _references(grad)
    if refs[0] > _PRIVATE[0] or refs[1] > _PRIVATE[1]:
        return None
    return grad


def module_send(module: nn.Module, worker: Any) -> nn.Module:
    """Send the module's parameters and buffers to ``worker``, in place; returns the module."""
    session = session_of(worker)
    dest = session.ref_of(worker)
    local: dict[int, nn.Parameter] = {}  # a tied parameter goes once
    for _, _, param in _parameters(module):
        if isinstance(param, RemoteParameter):
            param._pointer = param._pointer.send(dest)  # a pointer to the remote parameter
        else:
            local.setdefault(id(param), param)
    buffers = []
    for owner, name, buf in _buffers(module):
        if isinstance(buf, PointerTensor):
            owner._buffers[name] = buf.send(dest)
        else:
            buffers.append((owner, name, buf))
    # every local tensor in one message, pickled before any parameter gives up its data; a
    # gradient nothing else refers to stays out of it until the worker could see it (a
    # training loop clears it first: see :mod:`syftzmq.client.deferred_grads`)
    params = list(local.values())
    kept = [private_grad(param) for param in params]
    for param, grad in zip(params, kept):
        if grad is not None:
            param.grad = None
    fetched = [_fetched_from(param, dest) for param in params]
    try:
        pointers = session.store_tensors(dest, params + [buf for _, _, buf in buffers],
                                         kept_grads=kept + [None] * len(buffers),
                                         fetched=fetched + [None] * len(buffers))
    except BaseException:
        for param, grad in zip(params, kept):
            if grad is not None:
                param.grad = grad
        raise
    with deferred_unmaps():  # the fetched values' pages are freed off this thread
        for param, pointer in zip(params, pointers):
            make_remote(param, pointer)
    for (owner, name, _), pointer in zip(buffers, pointers[len(local):]):
        owner._buffers[name] = pointer
    return module


def _fetched_from(param: nn.Parameter, dest: Any) -> int | None:
    """The id ``param`` was fetched under from ``dest`` by the last ``model.get`` (forgotten
    here: see :mod:`syftzmq.tensor.unchanged`)."""
    fetched = _FETCHED.pop(param, None)
    return fetched[1] if fetched is not None and fetched[0] == dest.incarnation else None


# (incarnation, id) of a parameter a model.get brought back, by the parameter (not an attribute
# of it: a saved checkpoint would carry it)
_FETCHED: WeakIdKeyDictionary = WeakIdKeyDictionary()


def module_get(module: nn.Module) -> nn.Module:
    """Bring the parameters (with their gradients) and buffers back, in place."""
    params = [p for _, _, p in _parameters(module) if isinstance(p, RemoteParameter)]
    buffers = [(o, n, b) for o, n, b in _buffers(module) if isinstance(b, PointerTensor)]
    pointers = [p._pointer for p in params] + [b for _, _, b in buffers]
    if not pointers:
        return module
    for pointer in pointers:
        pointer._check_usable()  # a move in flight or in doubt is settled: where is each
    session = pointers[0]._require_session()
    values = session.get_many(pointers)
    session.keep_fetched_copies(pointers[:len(params)], unchanged.copies_of(values[:len(params)]))
    for pointer in pointers:
        pointer._relinquish("fetched with .get()")
    for param, value, pointer in zip(params, values, pointers):
        if isinstance(value, PointerTensor):  # one hop of a chain came back
            param._pointer = value
        else:
            make_local(param, value)
            if pointer._attr is None:
                _FETCHED[param] = (pointer._location.incarnation, pointer.id_at_location)
    for (owner, name, _), value in zip(buffers, values[len(params):]):
        owner._buffers[name] = value
    return module


def module_move(module: nn.Module, worker: Any) -> nn.Module:
    """Move parameters and buffers straight to ``worker`` (worker to worker); returns the module.

    One round trip per worker they come from, however many tensors there are.
    """
    session = session_of(worker)
    dest = session.ref_of(worker)
    pointers = [param._pointer for _, _, param in _parameters(module)
                if isinstance(param, RemoteParameter)]
    pointers += [buf for _, _, buf in _buffers(module) if isinstance(buf, PointerTensor)]
    by_location: dict[str, list[PointerTensor]] = {}
    for pointer in {id(p): p for p in pointers}.values():  # a tied tensor moves once
        if pointer._location.incarnation != dest.incarnation:
            pointer._check_owning("move")
            by_location.setdefault(pointer._location.incarnation, []).append(pointer)
    for group in by_location.values():
        new_ids = session.move(group[0]._location, [p.id_at_location for p in group], dest,
                               pointers=group)
        for pointer, new_id_at_dest in zip(group, new_ids):
            pointer._moved_to(dest, new_id_at_dest)
    if module_location(module) is None:
        module_send(module, worker)
    return module


def module_copy(module: nn.Module) -> nn.Module:
    """A copy of the module; remote parameters are cloned where they live."""
    memo: dict[int, Any] = {}
    for _, _, param in _parameters(module):
        if isinstance(param, RemoteParameter):
            twin = nn.Parameter(torch.zeros((), dtype=param.dtype).expand(param.shape),
                                requires_grad=param.requires_grad)
            with torch.no_grad():
                clone = param._pointer.detach().clone()
            if param.requires_grad:
                clone.requires_grad_(True)
            memo[id(param)] = make_remote(twin, clone)
    for _, _, buf in _buffers(module):
        if isinstance(buf, PointerTensor):
            memo[id(buf)] = buf.clone()
    return copy.deepcopy(module, memo)


def module_location(module: nn.Module) -> Any:
    """The worker holding the module's parameters, or ``None`` if they are local."""
    for _, _, param in _parameters(module):
        if isinstance(param, RemoteParameter):
            return param._pointer.location
    return None


def _state_follows_parameters(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    """Before a step: state tensors shaped like their parameter go where the parameter is."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param)
            if not state:
                continue
            remote = isinstance(param, RemoteParameter)
            for key, value in state.items():
                if isinstance(value, PointerTensor):
                    if not remote:
                        state[key] = value.get()
                    elif value._location.incarnation != param._pointer._location.incarnation:
                        value.move(param._pointer._location)
                elif remote and isinstance(value, torch.Tensor) and value.shape == param.shape \
                        and value.dim() > 0:
                    pointer = param._pointer
                    state[key] = pointer._require_session().store_tensor(pointer._location, value)


def install() -> None:
    """Give ``nn.Module`` send/get/move/copy/location and let optimizer state follow."""
    nn.Module.send = module_send
    nn.Module.get = module_get
    nn.Module.move = module_move
    nn.Module.copy = module_copy
    nn.Module.location = property(module_location)
    if not getattr(install, "_hooked", False):
        from torch.optim.optimizer import register_optimizer_step_pre_hook
        register_optimizer_step_pre_hook(_state_follows_parameters)
        install._hooked = True  # type: ignore[attr-defined]
