"""``sy.TorchHook(torch)``: gives local tensors ``send`` and ``move``.

The hook adds methods to ``torch.Tensor``; it replaces nothing torch already has. Pointers do
not need the hook: they intercept torch through ``__torch_function__``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch

from . import federated, modules
from .client.handle import LocalWorker
from .client.session import default_session
from .pointer import PointerTensor


def _send(self: torch.Tensor, worker: Any) -> PointerTensor:
    """Send this tensor to ``worker``; returns a pointer to it. The local tensor is unchanged."""
    session = default_session()
    return session.store_tensor(session.ref_of(worker), self)


def _move(self: torch.Tensor, worker: Any) -> PointerTensor:
    """A local tensor moves to ``worker`` by being sent there (PySyft's ``move`` on local data)."""
    return _send(self, worker)


class TorchHook:
    """Installs ``torch.Tensor.send``, ``torch.Tensor.move`` and ``Dataset.federate``. Creating
    it twice is harmless."""

    def __init__(self, torch_module: ModuleType = torch) -> None:
        self.torch = torch_module
        self.local_worker = LocalWorker()
        torch_module.Tensor.send = _send
        torch_module.Tensor.move = _move
        modules.install()
        federated.install()  # torch.utils.data.Dataset.federate

    def __repr__(self) -> str:
        return "<TorchHook>"
