"""What the hook adds to torch: ``Tensor.send``/``send_``/``move``/``copy``/``tag``/``describe``,
the ``nn.Module`` methods of :mod:`syftzmq.tensor.modules`, and remote-aware gradient utilities.

It adds methods; the only torch functions it replaces are the ``torch.nn.utils`` gradient
utilities (:mod:`syftzmq.tensor.grad_utils`), which on pointers would otherwise return wrong
numbers — and they behave exactly as before on local tensors. Pointers do not need the hook:
they intercept torch through ``__torch_function__``. ``sy.TorchHook(torch)``
(:mod:`syftzmq.client.torch_hook`) calls :func:`install`.
"""

from __future__ import annotations

from typing import Any

import torch

from . import grad_utils, modules
from .inplace import make_local, make_remote
from .multi_pointer import MultiPointerTensor
from .operand import RemoteOperand
from .pointer import PointerTensor
from .remote_call import session_of, unwrap
from .send_options import SendOptions, parse


def tensor_send(self: torch.Tensor, *workers: Any, **kwargs: Any) -> Any:
    """Send this tensor to ``worker``; returns a pointer to it. The local tensor is unchanged.

    To several workers (``x.send(bob, alice)``) a copy goes to each and a
    :class:`~syftzmq.tensor.multi_pointer.MultiPointerTensor` comes back. PySyft's keywords
    are checked by :func:`syftzmq.tensor.send_options.parse`.
    """
    if not workers:
        raise TypeError("send() needs at least one worker, e.g. x.send(bob)")
    pointer = unwrap(self)
    if isinstance(pointer, RemoteOperand):  # sent in place earlier: send the pointer on
        return pointer.send(*workers, **kwargs)
    options = parse(kwargs)
    if options.inplace:
        return tensor_send_(self, *workers, **{k: v for k, v in kwargs.items() if k != "inplace"})
    if len(workers) > 1:
        unique = list({session_of(w).ref_of(w).incarnation: w for w in workers}.values())
        return MultiPointerTensor([_send_one(self, worker, options) for worker in unique])
    return _send_one(self, workers[0], options)


def tensor_send_(self: torch.Tensor, *workers: Any, **kwargs: Any) -> torch.Tensor:
    """PySyft's in-place send: ``x`` itself becomes the remote tensor and is returned (see
    :mod:`syftzmq.tensor.inplace`)."""
    if len(workers) != 1:
        raise NotImplementedError("Inplace send to several workers is currently not supported.")
    pointer = unwrap(self)
    if isinstance(pointer, RemoteOperand):
        self._pointer = pointer.send(workers[0], **kwargs)  # type: ignore[attr-defined]
        return self
    return make_remote(self, _send_one(self, workers[0], parse(kwargs)))


def _send_one(tensor: torch.Tensor, worker: Any, options: SendOptions) -> PointerTensor:
    session = session_of(worker)
    dest = session.ref_of(worker)
    if dest.incarnation == session.ref.incarnation:
        raise ValueError("cannot send a tensor to the local worker: it is already here")
    value = tensor
    if options.requires_grad and not tensor.requires_grad:
        value = tensor.detach().requires_grad_(True)
    tags = getattr(tensor, "tags", None)
    description = getattr(tensor, "description", None)
    pointer = _store(session, dest, value, tags, description)
    if options.preinitialize_grad:
        with torch.no_grad():
            pointer.grad = torch.zeros_like(pointer)
    if not options.garbage_collect_data:
        pointer.garbage_collection = False
    if tags:
        pointer.tags = set(tags)
    if description is not None:
        pointer.description = description
    return pointer


def _store(session: Any, dest: Any, tensor: torch.Tensor, tags: Any, description: Any) -> Any:
    """Store ``tensor`` on ``dest``, with its tags and description (the worker indexes them
    for search)."""
    if tags or description is not None:
        return session.store_tensor(dest, tensor, tags=set(tags or ()), description=description)
    return session.store_tensor(dest, tensor)


def tensor_move(self: torch.Tensor, worker: Any) -> Any:
    """A local tensor moves to ``worker`` by being sent there (PySyft's ``move`` on local data);
    to the local worker it stays as it is. A tensor sent in place moves where it is."""
    pointer = unwrap(self)
    if isinstance(pointer, RemoteOperand):
        moved = pointer.move(worker)
        if isinstance(moved, torch.Tensor):  # moved home: it is local again
            if isinstance(self, torch.nn.Parameter):
                return modules.make_local(self, moved)
            return make_local(self, moved)
        return self
    session = session_of(worker)
    if session.ref_of(worker).incarnation == session.ref.incarnation:
        return self
    return tensor_send(self, worker)


def tensor_copy(self: torch.Tensor) -> torch.Tensor:
    """PySyft's ``copy``: ``self + 0`` (a new tensor in the autograd graph; bool becomes int64)."""
    return self + 0


def tensor_tag(self: torch.Tensor, *tags: str) -> torch.Tensor:
    """Add tags (a set of exact strings); returns the tensor. They travel with ``send``."""
    self.tags = set(self.tags or ()) | set(tags)  # type: ignore[attr-defined]
    return self


def tensor_describe(self: torch.Tensor, description: str) -> torch.Tensor:
    """Set the description; returns the tensor. It travels with ``send``."""
    self.description = description  # type: ignore[attr-defined]
    return self


def install(torch_module: Any = torch) -> None:
    """Add the methods; installing twice is harmless."""
    tensor = torch_module.Tensor
    tensor.send = tensor_send
    tensor.send_ = tensor_send_
    tensor.move = tensor_move
    tensor.copy = tensor_copy
    tensor.tag = tensor_tag
    tensor.describe = tensor_describe
    if not hasattr(tensor, "tags"):
        tensor.tags = None         # PySyft: a fresh tensor has no tags and no description
        tensor.description = None
    modules.install()
    grad_utils.install()
