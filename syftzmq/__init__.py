"""syftzmq: PySyft 0.2's pointer API over real worker processes and ZeroMQ.

    import torch
    import syftzmq as sy
    hook = sy.TorchHook(torch)
    bob = sy.VirtualWorker(hook, id="bob")      # a real worker process
    x_ptr = torch.tensor([1, 2, 3]).send(bob)  # data on bob, pointer here
    (x_ptr + x_ptr).get()                      # runs on bob

Packages, by the process that runs them: ``core`` and ``wire`` (both sides), ``security``,
``tensor`` (the pointer proxy), ``plan``, ``client`` (the user's process) and ``worker`` (a
worker process). See README's "How it works".
"""

from __future__ import annotations

from .client.cluster_file import cluster
from .client.handles import LocalWorker, VirtualWorker, Worker, default_session
from .client.session import Stats
from .client.torch_hook import TorchHook
from .federated import BaseDataset, FederatedDataLoader, FederatedDataset, federate
from .errors import (IdCollisionError, InvalidTensorForRemoteGet, NeedsGetError, ObjectGoneError, ObjectNotFoundError,
                     OperationRefused, ProtocolError, RefusedByPolicy, RemoteError,
                     StaleIncarnationError, SyftZmqError, WorkerMismatchError, WorkerUnavailable)
from .plan.plan import Plan, func2plan
from .tensor.pointer import PointerTensor

# ---- PySyft 0.2 pointer API beyond send/get/move: several locations, in place
from .tensor.inplace import RemoteTensor  # noqa: E402
from .tensor.multi_pointer import MultiPointerTensor, combine_pointers  # noqa: E402
from .plan.pysyft import PointerPlan  # noqa: E402
from .plan.state import State  # noqa: E402
# ----

__version__ = "0.2.0"

local_worker = LocalWorker()


def set_timeout(seconds: float) -> None:
    """How long an observation waits for a worker before raising :class:`WorkerUnavailable`
    (default 5 s, or ``SYFTZMQ_TIMEOUT``); applies to connections already open too."""
    default_session().set_timeout(seconds)


def stats() -> Stats:
    """Messages sent and blocking round trips made by this client so far."""
    return default_session().stats.snapshot()


__all__ = ["TorchHook", "VirtualWorker", "Worker", "LocalWorker", "PointerTensor", "cluster",
           "local_worker", "func2plan", "Plan", "stats", "set_timeout", "default_session",
           "Stats", "SyftZmqError", "RemoteError", "WorkerUnavailable", "WorkerMismatchError",
           "ObjectGoneError", "ObjectNotFoundError", "NeedsGetError", "ProtocolError",
           "StaleIncarnationError", "OperationRefused", "RefusedByPolicy", "IdCollisionError",
           "BaseDataset", "FederatedDataset", "FederatedDataLoader", "federate",
           # PySyft 0.2 pointer API beyond send/get/move
           "MultiPointerTensor", "combine_pointers", "RemoteTensor", "PointerPlan", "State",
           "InvalidTensorForRemoteGet"]
