"""Gradients a sent model carries (syftzmq/client/deferred_grads.py): kept on the client while
nothing on the worker could see them, yet every observation and every later step agrees with
a model whose gradients travelled with it (the same operations run locally)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn, optim

import syftzmq as sy


def _model_with_grads(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    F.nll_loss(F.log_softmax(model(torch.randn(5, 6)), dim=1), torch.tensor([0, 1, 2, 0, 1])).backward()
    return model


def _step(model: nn.Module, x, y) -> None:
    F.nll_loss(F.log_softmax(model(x), dim=1), y).backward()


def _store_bytes(model: nn.Module, worker) -> int:
    before = sy.stats().snapshot()
    model.send(worker)
    return (sy.stats() - before).bytes_sent


def test_gradients_kept_back_accumulate_as_if_they_had_travelled(bob):
    """No ``zero_grad``: backward on the worker adds to the gradients the model brought."""
    local, remote = _model_with_grads(), _model_with_grads()  # (a deep copy drops gradients)
    x, y = torch.randn(7, 6), torch.randint(0, 3, (7,))
    _step(local, x, y)
    remote.send(bob)
    _step(remote, x.send(bob), y.send(bob))
    remote.get()
    for mine, theirs in zip(remote.parameters(), local.parameters()):
        assert torch.allclose(mine.grad, theirs.grad, atol=1e-6)
        assert torch.allclose(mine.detach(), theirs.detach())


def test_a_get_right_after_the_send_brings_the_kept_gradients_back(bob):
    model = _model_with_grads()
    expected = [p.grad.clone() for p in model.parameters()]
    model.send(bob)
    assert all(p.grad is not None for p in model.parameters())  # described as present
    model.get()
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), expected))


def test_zero_grad_forgets_kept_gradients_and_a_step_still_agrees(bob):
    local, remote = _model_with_grads(), _model_with_grads()
    x, y = torch.randn(7, 6), torch.randint(0, 3, (7,))
    for model, worker in ((local, None), (remote, bob)):
        optimizer = optim.SGD(model.parameters(), lr=0.1)
        xs, ys = (x, y) if worker is None else (x.send(worker), y.send(worker))
        if worker is not None:
            model.send(worker)
        optimizer.zero_grad()
        _step(model, xs, ys)
        optimizer.step()
        if worker is not None:
            model.get()
    for mine, theirs in zip(remote.parameters(), local.parameters()):
        assert torch.allclose(mine.detach(), theirs.detach(), atol=1e-6)
        assert torch.allclose(mine.grad, theirs.grad, atol=1e-6)


def test_a_gradient_someone_else_refers_to_travels_with_the_send_as_it_was(bob):
    """A gradient the caller still holds could change after the send: it is pickled at once,
    so a later change does not reach the worker."""
    model = _model_with_grads()
    held = model[0].weight.grad
    expected = held.clone()
    model.send(bob)
    held.add_(100.0)
    model.get()
    assert torch.equal(model[0].weight.grad, expected)


def test_kept_gradients_make_the_send_smaller_and_a_dropped_model_raises_nothing(bob):
    model, held = _model_with_grads(), _model_with_grads()
    keep_alive = [p.grad for p in held.parameters()]  # these must travel
    grad_bytes = sum(g.numel() * g.element_size() for g in keep_alive)
    kept, eager = _store_bytes(model, bob), _store_bytes(held, bob)
    assert eager - kept >= grad_bytes
    del model, held, keep_alive  # pointers gone: their kept gradients are dropped
    y = torch.ones(2).send(bob) + 1
    assert torch.equal(y.get(), torch.full((2,), 2.0))


def test_a_training_step_after_zero_grad_sends_none_of_the_kept_gradients(bob):
    """The tutorial's loop: ``model.send``, ``zero_grad``, a step, ``model.get``. The gradients
    the model brought back are cleared before anything could see them, so none of their bytes
    leave the client, and the step still agrees with the same step run locally."""
    torch.manual_seed(3)
    local = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 3))
    remote = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 3))
    remote.load_state_dict(local.state_dict())
    x, y = torch.randn(5, 256), torch.tensor([0, 1, 2, 0, 1])
    xs, ys = x.send(bob), y.send(bob)
    for model in (local, remote):
        _step(model, x, y)  # gradients of a step before: what model.get() brings back
    grad_bytes = sum(p.grad.numel() * p.grad.element_size() for p in remote.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in remote.parameters())
    for model, (a, b) in ((local, (x, y)), (remote, (xs, ys))):
        optimizer = optim.SGD(model.parameters(), lr=0.1)
        before = sy.stats().snapshot()
        if model is remote:
            model.send(bob)
        optimizer.zero_grad()
        _step(model, a, b)
        optimizer.step()
        if model is remote:
            model.get()
            sent = (sy.stats() - before).bytes_sent
    assert sent < param_bytes + grad_bytes // 2  # the parameters, commands; no gradients
    for mine, theirs in zip(remote.parameters(), local.parameters()):
        assert torch.allclose(mine.detach(), theirs.detach(), atol=1e-6)
        assert torch.allclose(mine.grad, theirs.grad, atol=1e-6)
