"""What the hook adds to torch: ``Tensor.send`` and ``Tensor.move``, and the ``nn.Module`` methods
of :mod:`syftzmq.tensor.modules`.

It adds methods; it replaces nothing torch already has. Pointers do not need it: they intercept
torch through ``__torch_function__``. ``sy.TorchHook(torch)`` (:mod:`syftzmq.client.torch_hook`)
calls :func:`install`.
"""

from __future__ import annotations

from typing import Any

import torch

from . import modules
from .pointer import PointerTensor
from .remote_call import session_of


def tensor_send(self: torch.Tensor, worker: Any) -> PointerTensor:
    """Send this tensor to ``worker``; returns a pointer to it. The local tensor is unchanged."""
    session = session_of(worker)
    return session.store_tensor(session.ref_of(worker), self)


def tensor_move(self: torch.Tensor, worker: Any) -> PointerTensor:
    """A local tensor moves to ``worker`` by being sent there (PySyft's ``move`` on local data)."""
    return tensor_send(self, worker)


def install(torch_module: Any = torch) -> None:
    """Add the methods; installing twice is harmless."""
    torch_module.Tensor.send = tensor_send
    torch_module.Tensor.move = tensor_move
    modules.install()
