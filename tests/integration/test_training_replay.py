"""A training loop on a worker, step after step, as the client replays what it learned of the
first step (result metadata and autograd edges): the results, the gradients the client believes
in, and a last batch of another shape all agree with the same loop run locally."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn, optim

import syftzmq as sy
from syftzmq.tensor.inference_cache import INFERRED


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(6, 5)
        self.out = nn.Linear(5, 3)
        self.frozen = nn.Linear(5, 3)
        self.frozen.requires_grad_(False)    # never gets a gradient, here or there

    def forward(self, x):
        h = F.relu(self.hidden(x))
        return F.log_softmax(self.out(h) + self.frozen(h).detach(), dim=1)


def batches(sizes):
    generator = torch.Generator().manual_seed(3)
    return [(torch.randn(n, 6, generator=generator), torch.randint(0, 3, (n,), generator=generator))
            for n in sizes]


def train(model, data, worker=None):
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    shapes = []
    for x, y in data:
        if worker is not None:
            model.send(worker)
            x, y = x.send(worker), y.send(worker)
        optimizer.zero_grad()
        output = model(x)
        loss = F.nll_loss(output, y)
        loss.backward()
        shapes.append((tuple(output.shape), [None if p.grad is None else tuple(p.grad.shape)
                                             for p in model.parameters()]))
        optimizer.step()
        if worker is not None:
            model.get()
    return shapes


def test_replayed_steps_agree_with_local_training_also_when_the_last_batch_is_short(workers):
    torch.manual_seed(0)
    local = Net()
    remote = copy.deepcopy(local)
    data = batches([8, 8, 8, 5])                    # the last batch is short
    hits = INFERRED.hits
    expected = train(local, data)
    seen = train(remote, data, workers["bob"])
    assert seen == expected
    assert seen[-1][0] == (5, 3)
    assert seen[0][1][-2:] == [None, None]           # the frozen layer: no gradient
    assert INFERRED.hits > hits                      # later steps were replayed
    for got, want in zip(remote.parameters(), local.parameters()):
        assert torch.allclose(got, want, atol=1e-6)
        assert (got.grad is None) == (want.grad is None)
        if want.grad is not None:
            assert torch.allclose(got.grad, want.grad, atol=1e-6)


def test_a_model_goes_to_its_worker_in_one_message(workers):
    model = Net()
    before = sy.stats().snapshot()
    model.send(workers["alice"])
    assert (sy.stats() - before).messages_sent == 1
    assert all(p.location.id == "alice" for p in model.parameters())
    model.get()
    assert model.hidden.weight.shape == (5, 6)
