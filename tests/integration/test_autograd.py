"""Autograd runs on the worker; the client knows which gradients exist without asking."""

from __future__ import annotations

import torch

import syftzmq as sy


def test_requires_grad_survives_send(bob):
    x = torch.ones(2, requires_grad=True).send(bob)
    assert x.requires_grad
    assert x.get().requires_grad


def test_backward_matches_local_autograd_and_get_brings_grad(bob):
    torch.manual_seed(0)
    a_local = torch.randn(3, 4, requires_grad=True)
    b_local = torch.randn(4, 2, requires_grad=True)
    loss_local = ((a_local @ b_local).tanh() ** 2).mean()
    loss_local.backward()

    a = a_local.detach().requires_grad_().send(bob)
    b = b_local.detach().requires_grad_().send(bob)
    loss = ((a @ b).tanh() ** 2).mean()
    loss.backward()
    assert torch.allclose(a.grad.get(), a_local.grad)      # .grad is a pointer
    b_back = b.get()
    assert torch.allclose(b_back.grad, b_local.grad)      # get() brings .grad along
    assert torch.allclose(loss.get(), loss_local)
    del a


def test_grad_presence_known_without_a_round_trip(bob):
    x = torch.ones(3, requires_grad=True).send(bob)
    y = torch.ones(3).send(bob)
    before = sy.stats()
    assert x.grad is None and y.grad is None
    (x * 2).sum().backward()
    g = x.grad
    assert isinstance(g, sy.PointerTensor) and g.shape == torch.Size([3])
    assert y.grad is None
    assert (sy.stats() - before).round_trips == 0
    assert torch.equal(g.get(), torch.full((3,), 2.0))
    x.grad = None
    assert x.grad is None
    assert x.get().grad is None
    del y


def test_gradients_accumulate_like_local(bob):
    x = torch.ones(2, requires_grad=True).send(bob)
    for _ in range(3):
        (x * x).sum().backward()
    assert torch.equal(x.get().grad, torch.full((2,), 6.0))


def test_no_grad_on_the_client_means_no_grad_on_the_worker(bob):
    x = torch.ones(2, requires_grad=True).send(bob)
    with torch.no_grad():
        y = x * 3
        x.add_(1)          # in place on a leaf: only allowed without grad, there as here
    assert not y.requires_grad
    assert not y.get().requires_grad
    assert torch.equal(x.get(), torch.full((2,), 2.0))
