"""``sy.TorchHook(torch)``: PySyft's entry point. It installs the tensor and module methods
(:func:`syftzmq.tensor.hook.install`) and names the client itself as ``hook.local_worker``."""

from __future__ import annotations

from types import ModuleType

import torch

from .. import federated
from ..tensor.hook import install
from .handles import LocalWorker


class TorchHook:
    """Installs ``torch.Tensor.send``/``move``, the ``nn.Module`` methods and
    ``Dataset.federate``. Creating it twice is harmless."""

    def __init__(self, torch_module: ModuleType = torch) -> None:
        self.torch = torch_module
        self.local_worker = LocalWorker()
        install(torch_module)
        federated.install()  # torch.utils.data.Dataset.federate

    def __repr__(self) -> str:
        return "<TorchHook>"
