"""``sy.TorchHook(torch)``: PySyft's entry point. It installs the tensor and module methods
(:func:`syftzmq.tensor.hook.install`) and names the client itself as ``hook.local_worker``."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch

from .. import federated
from ..tensor.hook import install
from .handles import LocalWorker, default_session


class TorchHook:
    """Installs ``torch.Tensor.send``/``move``, the ``nn.Module`` methods and
    ``Dataset.federate``. Creating it twice is harmless.

    PySyft's keywords: ``local_worker`` (the object to use as ``hook.local_worker``),
    ``is_client`` (sets its ``is_client_worker``; nothing depends on it here, since a syftzmq
    client never stores objects for workers) and ``verbose=True``, which prints one line per
    message this client sends (see :mod:`syftzmq.client.verbose`; PySyft printed the messages
    its in-process workers received).
    """

    def __init__(self, torch_module: ModuleType = torch, local_worker: Any = None,
                 is_client: bool = True, verbose: bool = False) -> None:
        self.torch = torch_module
        self.local_worker = local_worker if local_worker is not None else LocalWorker()
        if not is_client:
            self.local_worker.is_client_worker = False
        self.verbose = verbose
        install(torch_module)
        federated.install()  # torch.utils.data.Dataset.federate
        if verbose:
            default_session().set_verbose(True)

    def __repr__(self) -> str:
        return "<TorchHook>"
