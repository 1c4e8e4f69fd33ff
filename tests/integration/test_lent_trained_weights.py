"""A get lends a weight that the worker's autograd graph still holds, mapped copy-on-write
(syftzmq/worker/handover.py): after a training step's ``model.get()`` the fetched weight and
the worker's graph are independent (a write on one side never shows on the other), and a
worker killed while the client takes the lent pages fails the get without changing the model.
Whether pages were lent or copied is read from the worker's ``shm_lent`` counter.
"""

from __future__ import annotations

import os
import signal

import pytest
import torch
from torch import nn

import syftzmq as sy
from support.processes import EXIT_DEADLINE, wait_for_exit, wait_until
from syftzmq.client.handles import default_session
from syftzmq.tensor.modules import RemoteParameter
from syftzmq.wire import shm

pytestmark = pytest.mark.skipif(not shm.enabled(), reason="no /dev/shm on this host")

IN, OUT = 512, 1024  # a 2 MiB weight: above the shared-memory threshold


def _lent(worker) -> int:
    return worker.ping()["shm_lent"]


def _model() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(IN, OUT, bias=False)


def _step_on(worker, model: nn.Module):
    """Send, forward, backward (the graph, freed, still holds the weight: its gradient's
    accumulator); the pointers to the input and the loss."""
    x = torch.randn(8, IN, requires_grad=True).send(worker)
    model.send(worker)
    loss = model(x).sum()
    loss.backward()
    return x, loss


class Scaled(nn.Module):
    """``(x * weight).sum()``: its backward saves the weight itself (no view of it), so a
    graph kept for a second backward reads the weight's own memory."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.weight = nn.Parameter(torch.randn(OUT, IN))

    def forward(self, x):
        return (x * self.weight).sum()


def test_a_weight_the_graph_holds_is_lent_and_the_clients_write_stays_on_the_client(bob):
    model = Scaled()
    expected = model.weight.detach().clone()
    x = torch.randn(OUT, IN, requires_grad=True).send(bob)
    model.send(bob)
    loss = model(x)
    loss.backward(retain_graph=True)  # the graph keeps the weight for a second backward
    lent = _lent(bob)
    model.get()
    assert _lent(bob) == lent + 1, "the weight should have been lent, not copied"
    assert torch.equal(model.weight.detach(), expected)
    assert torch.equal(model.weight.grad, x.clone().detach().get())

    model.weight.data.mul_(0)  # the client's own pages now (copy-on-write)
    assert torch.count_nonzero(model.weight.detach()) == 0
    loss.backward()  # on bob, through the saved weight: still the fetched values
    assert torch.allclose(x.grad.get(), 2 * expected), "the worker's graph saw the client's write"
    del x, loss


def test_a_fetched_weight_kept_by_the_client_never_sees_the_next_step(bob):
    model = _model()
    x, loss = _step_on(bob, model)
    lent = _lent(bob)
    model.get()
    assert _lent(bob) == lent + 1, "the trained weight should have been lent, not copied"
    kept = model.weight.detach()  # shares the fetched memory: the next send must copy it
    fetched = kept.clone()
    del x, loss
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    x, loss = _step_on(bob, model)
    optimizer.step()
    model.get()
    assert torch.equal(kept, fetched), "the worker's step wrote the client's fetched weight"
    assert not torch.equal(model.weight.detach(), fetched)
    del x, loss


def test_a_worker_killed_while_its_pages_are_taken_fails_the_get_and_changes_nothing(
        hook, monkeypatch):
    worker = sy.VirtualWorker(hook, id="lends-then-dies")
    session = default_session()
    before = set(shm.segments_of([os.getpid()]))
    model = _model()
    x, loss = _step_on(worker, model)
    opened = shm._open

    def killed_first(name: str, size: int):
        """The reply with the lent pages is here: the lender dies before they are opened."""
        if name.startswith("fdc-"):
            os.kill(worker.process.pid, signal.SIGKILL)
            assert wait_for_exit(worker.process.pid, EXIT_DEADLINE)
        return opened(name, size)

    monkeypatch.setattr(shm, "_open", killed_first)
    with pytest.raises(sy.WorkerUnavailable):
        model.get()
    monkeypatch.undo()
    assert isinstance(model.weight, RemoteParameter), "a get that failed changed the model"
    assert model.location is not None
    del x, loss
    worker.process.stop()
    session.forget(worker.ref)
    wait_until(lambda: not set(shm.segments_of([os.getpid(), worker.process.pid])) - before,
               10, "segments left behind")
