"""A worker fixes glibc's heap thresholds at its first ``backward`` (syftzmq/worker/heap.py):
the training that follows, on a fresh worker whose thresholds change mid-run, computes what
the same training computes locally, step after step, with tensors both below and above the
default ``mmap`` threshold (128 KiB) so both kinds of block are freed and reused."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn, optim

import syftzmq as sy


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.fc = nn.Linear(8 * 26 * 26, 10)  # a 0.2 MiB weight and a 1.4 MiB activation

    def forward(self, x):
        return F.log_softmax(self.fc(F.relu(self.conv(x)).view(x.shape[0], -1)), dim=1)


def _train(model: nn.Module, batches, remote: bool) -> None:
    optimizer = optim.SGD(model.parameters(), lr=0.05)
    for data, target in batches:
        if remote:
            model.send(data.location)
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()
        if remote:
            model.get()


@pytest.fixture
def trainee(hook):
    worker = sy.VirtualWorker(hook, id="heap-trainee")  # fresh: its first backward is in the test
    yield worker
    worker.shutdown()


def test_training_across_the_heap_switch_matches_local_training(trainee):
    torch.manual_seed(0)
    batches = [(torch.randn(48, 1, 28, 28), torch.randint(0, 10, (48,))) for _ in range(6)]
    local = _Net()
    remote = copy.deepcopy(local)
    _train(local, batches, remote=False)
    pointers = [(x.send(trainee), y.send(trainee)) for x, y in batches]
    _train(remote, pointers, remote=True)
    for a, b in zip(local.parameters(), remote.parameters()):
        assert torch.allclose(a.detach(), b.detach(), atol=1e-5, rtol=1e-4)
    # the worker's store holds what it held before: the batches (the model came back)
    assert trainee.object_count() == 2 * len(batches)
