"""``x.send_(bob)`` and ``x.get_()``: a local tensor that goes to a worker and comes back as the
same Python object.

PySyft 0.2 turned ``x`` itself into its pointer wrapper. Here ``x`` becomes a
:class:`RemoteTensor` in place — its class is switched, as :mod:`syftzmq.tensor.modules` does
for parameters, and its local storage shrinks to one element — so ``x`` is still a
``torch.Tensor`` (and still ``x``) while every torch function, method and property on it runs on
the worker through the pointer it carries. ``x.get_()`` switches it back and fills in the
value, cast to ``x``'s dtype (PySyft cast to the wrapper's dtype too); ``x.get()`` returns the
value as a new tensor and leaves ``x`` spent.

An ``nn.Parameter`` sent in place becomes a remote parameter, exactly as ``model.send(w)``
makes it.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from . import modules
from .pointer import PointerTensor
from .remote_call import WRAPPER_TYPES


class RemoteTensor(torch.Tensor):
    """A local tensor object whose data now lives on a worker (``self._pointer``)."""

    _pointer: PointerTensor

    @classmethod
    def __torch_function__(cls, func: Callable, types: tuple, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        return modules.route_to_pointer(RemoteTensor, func, args, kwargs or {})

    # Plain Python attributes of this class: torch never routes them.
    @property
    def child(self) -> PointerTensor:
        """The pointer this tensor stands for (PySyft's wrapper ``.child``)."""
        return self._pointer

    @property
    def location(self) -> Any:
        return self._pointer.location

    @property
    def id_at_location(self) -> int:
        return self._pointer.id_at_location

    @property
    def garbage_collection(self) -> bool:
        return self._pointer.garbage_collection

    @garbage_collection.setter
    def garbage_collection(self, value: bool) -> None:
        self._pointer.garbage_collection = value

    gc = garbage_collection

    @property
    def disable_gc(self) -> "RemoteTensor":
        self._pointer.garbage_collection = False
        return self

    def get(self) -> Any:
        """The value as a new tensor (removed from the worker); this object is spent."""
        return self._pointer.get()

    def get_(self) -> Any:
        """Bring the value back into this very object; returns it. On a pointer to a pointer
        this object now stands for the middle pointer."""
        value = self._pointer.get()
        if isinstance(value, PointerTensor):
            self._pointer = value
            return self
        return make_local(self, value)


WRAPPER_TYPES.add(RemoteTensor)


def _remote_parameter_get_(param: Any) -> nn.Parameter:
    value = param._pointer.get()
    if isinstance(value, PointerTensor):
        param._pointer = value
        return param
    return modules.make_local(param, value)


modules.RemoteParameter.get_ = _remote_parameter_get_  # type: ignore[attr-defined]
modules.RemoteParameter.get = lambda param: param._pointer.get()  # type: ignore[attr-defined]
modules.RemoteParameter.location = property(  # type: ignore[attr-defined]
    lambda param: param._pointer.location, doc="The worker holding the parameter.")


def make_remote(tensor: torch.Tensor, pointer: PointerTensor) -> torch.Tensor:
    """Turn ``tensor`` itself into a remote tensor standing for ``pointer``."""
    if isinstance(tensor, nn.Parameter):
        return modules.make_remote(tensor, pointer)
    with torch.no_grad():
        tensor.data = torch.zeros((), dtype=tensor.dtype).expand(tensor.shape)  # free memory
    if tensor.is_leaf:
        tensor.grad = None
    tensor.__class__ = RemoteTensor
    tensor._pointer = pointer
    return tensor


def make_local(tensor: RemoteTensor, value: torch.Tensor) -> torch.Tensor:
    """Turn a remote tensor back into a plain one holding ``value`` (cast to its dtype)."""
    del tensor._pointer
    tensor.__class__ = torch.Tensor
    dtype = tensor.dtype  # the local placeholder kept the dtype the tensor was sent with
    with torch.no_grad():
        tensor.data = value.detach().to(dtype)
    if tensor.is_leaf and value.grad is not None:
        tensor.grad = value.grad
    return tensor
