"""syftzmq: PySyft 0.2's pointer API over real worker processes and ZeroMQ.

    import torch
    import syftzmq as sy
    hook = sy.TorchHook(torch)
    bob = sy.VirtualWorker(hook, id="bob")      # a real worker process
    x_ptr = torch.tensor([1, 2, 3]).send(bob)  # data on bob, pointer here
    (x_ptr + x_ptr).get()                      # runs on bob

Packages, by the process that runs them: ``core`` and ``wire`` (both sides), ``security``,
``tensor`` (the pointer proxy), ``plan``, ``federated``, ``client`` (the user's process),
``worker`` (a worker process) and ``deploy`` (the ``syftzmq`` command that starts and supervises
workers). See README's "How it works".

The names below are imported on first use (PEP 562): a worker process, or ``syftzmq --help``,
imports ``syftzmq.worker`` or ``syftzmq.deploy`` without loading the client and the tensor proxy.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

# name -> module that defines it: the public API, each name defined once in its own module
_EXPORTS = {
    "TorchHook": "client.torch_hook",
    "VirtualWorker": "client.handles", "Worker": "client.handles",
    "LocalWorker": "client.handles", "default_session": "client.handles",
    "Stats": "client.session",
    "cluster": "client.cluster_file",
    "PrivateGridNetwork": "client.search",
    "PointerTensor": "tensor.pointer",
    "Plan": "plan.plan", "func2plan": "plan.plan",
    "BaseDataset": "federated", "FederatedDataset": "federated",
    "FederatedDataLoader": "federated", "federate": "federated",
    "RemoteTensor": "tensor.inplace",
    "MultiPointerTensor": "tensor.multi_pointer", "combine_pointers": "tensor.multi_pointer",
    "PointerPlan": "plan.pysyft", "State": "plan.state",
    **{name: "errors" for name in (
        "SyftZmqError", "RemoteError", "WorkerUnavailable", "WorkerTimeout", "WorkerMismatchError",
        "ObjectGoneError", "ObjectNotFoundError", "NeedsGetError", "ProtocolError",
        "StaleIncarnationError", "OperationRefused", "RefusedByPolicy", "IdCollisionError",
        "InvalidTensorForRemoteGet", "WorkerShutDown", "NotConnected", "MessageTooLarge",
        "WorkerIdMismatch")},
}
_local_worker: Any = None


def __getattr__(name: str) -> Any:
    global _local_worker
    if name == "local_worker":  # ``sy.local_worker``: the client itself (id "me")
        if _local_worker is None:
            _local_worker = importlib.import_module(".client.handles", __name__).LocalWorker()
        return _local_worker
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'syftzmq' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def set_timeout(seconds: float | None) -> None:
    """Bound every observation to ``seconds``: one that runs out raises :class:`WorkerTimeout`
    (the worker is alive, still working). ``None`` (the default, or ``SYFTZMQ_TIMEOUT``): wait
    as long as the worker is alive. Applies to connections already open too."""
    __getattr__("default_session")().set_timeout(seconds)


def set_liveness_timeout(seconds: float) -> None:
    """Report a worker dead (:class:`WorkerUnavailable`) once it has answered no liveness probe
    for ``seconds`` (default 5, or ``SYFTZMQ_LIVENESS_TIMEOUT``)."""
    __getattr__("default_session")().set_liveness_timeout(seconds)


def stats() -> Any:
    """Messages sent and blocking round trips made by this client so far (a ``sy.Stats``)."""
    return __getattr__("default_session")().stats.snapshot()


__all__ = sorted([*_EXPORTS, "local_worker", "set_timeout", "set_liveness_timeout", "stats"])


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
