"""Case 8's workload: one epoch of PySyft tutorial Part 6's training loop.

The tutorial trains its CNN with ``sy.FederatedDataLoader``; for each batch it sends the model to
the batch's worker, runs forward, ``F.nll_loss``, backward and ``optimizer.step()`` there, and
gets the model back. Here the data is synthetic (no network: ``torch.randn`` images of MNIST's
shape, random labels 0-9), cut the way ``dataset.federate((bob, alice))`` cuts it (in order,
half each) and batched the way the loader orders it (all of one worker's batches, then the
next's; the last batch of a worker may be short). The batches are sent before the clock starts:
the loader is not what is timed. The same :func:`train_epoch` runs on local tensors (the
baseline) and on pointers, so both sides do the same arithmetic.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn, optim

BATCH = 64
LR = 0.01
WORKERS = 2

Batch = tuple[Any, Any]  # (images, labels): tensors, or pointers to them


class Net(nn.Module):
    """The tutorial's CNN, as written there."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5, 1)
        self.conv2 = nn.Conv2d(20, 50, 5, 1)
        self.fc1 = nn.Linear(4 * 4 * 50, 500)
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x: Any) -> Any:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(x, 2, 2)
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2, 2)
        x = x.view(-1, 4 * 4 * 50)
        x = F.relu(self.fc1(x))
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


def initial_model(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net()


def make_shards(images: int, seed: int = 2) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Per worker, its batches in loader order: ``federate`` halves, then batches of 64."""
    generator = torch.Generator().manual_seed(seed)
    data = torch.randn(images, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (images,), generator=generator)
    per_worker = -(-images // WORKERS)
    shards = []
    for start in range(0, images, per_worker):
        stop = min(start + per_worker, images)
        shards.append([(data[i:min(i + BATCH, stop)].clone(), labels[i:min(i + BATCH, stop)].clone())
                       for i in range(start, stop, BATCH)])
    return shards


def train_epoch(model: nn.Module, batches: Sequence[Batch], remote: bool) -> None:
    """The tutorial's ``train`` (without its logging): ``remote`` adds the send and the get."""
    optimizer = optim.SGD(model.parameters(), lr=LR)
    model.train()
    for data, target in batches:
        if remote:
            model.send(data.location)
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        if remote:
            model.get()


def fresh(initial: Net) -> Net:
    return copy.deepcopy(initial)


def same_parameters(a: nn.Module, b: nn.Module, tolerance: float = 1e-3) -> bool:
    """After the same epoch the two models agree (thread counts change rounding, not results)."""
    return all(torch.allclose(x.detach(), y.detach(), atol=tolerance, rtol=tolerance)
               for x, y in zip(a.parameters(), b.parameters()))
