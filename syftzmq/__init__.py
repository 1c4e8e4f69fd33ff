"""syftzmq: PySyft 0.2's pointer API over real worker processes and ZeroMQ.

    import torch
    import syftzmq as sy
    hook = sy.TorchHook(torch)
    bob = sy.VirtualWorker(hook, id="bob")      # a real worker process
    x_ptr = torch.tensor([1, 2, 3]).send(bob)  # data on bob, pointer here
    (x_ptr + x_ptr).get()                      # runs on bob
"""

from __future__ import annotations

from .client.handle import LocalWorker, VirtualWorker, Worker
from .client.session import Stats, default_session
from .cluster import cluster
from .errors import (NeedsGetError, ObjectGoneError, ObjectNotFoundError, ProtocolError,
                     RemoteError, StaleIncarnationError, SyftZmqError, WorkerMismatchError,
                     WorkerUnavailable)
from .hook import TorchHook
from .plan import Plan, func2plan
from .pointer import PointerTensor

# federated data (PySyft's syft.frameworks.torch.fl)
from .federated import BaseDataset, FederatedDataLoader, FederatedDataset, federate

__version__ = "0.1.0"

local_worker = LocalWorker()


def set_timeout(seconds: float) -> None:
    """How long an observation waits for a worker before raising :class:`WorkerUnavailable`
    (default 5 s, or ``SYFTZMQ_TIMEOUT``)."""
    if not seconds > 0:
        raise ValueError("the timeout must be positive")
    default_session().timeout = float(seconds)


def stats() -> Stats:
    """Messages sent and blocking round trips made by this client so far."""
    return default_session().stats.snapshot()


__all__ = ["TorchHook", "VirtualWorker", "Worker", "LocalWorker", "PointerTensor", "cluster",
           "local_worker", "func2plan", "Plan", "stats", "set_timeout", "Stats", "SyftZmqError", "RemoteError", "WorkerUnavailable",
           "WorkerMismatchError", "ObjectGoneError", "ObjectNotFoundError", "NeedsGetError",
           "ProtocolError", "StaleIncarnationError"]
__all__ += ["BaseDataset", "FederatedDataset", "FederatedDataLoader", "federate"]
