"""PySyft 0.2's federated data API: ``BaseDataset``, ``FederatedDataset``, ``federate`` and
``FederatedDataLoader``, over pointers to real worker processes.

Data is cut and sent once (``dataset.federate((bob, alice))``); from then on every batch is
built on the worker that holds it, by indexing the remote tensors, so no sample comes back
through the client.
"""

from __future__ import annotations

from .dataset import BaseDataset, FederatedDataset
from .federate import federate, install
from .loader import FederatedDataLoader, default_collate

__all__ = ["BaseDataset", "FederatedDataset", "FederatedDataLoader", "federate",
           "default_collate", "install"]
