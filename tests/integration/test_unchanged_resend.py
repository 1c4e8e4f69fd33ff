"""A model sent back unchanged to the worker it was just fetched from (syftzmq/tensor/unchanged.py):
the worker stores its held copies again instead of receiving the bytes — and whatever changed,
or whatever the client could still see, travels as before, so every value agrees with the same
steps run locally."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn, optim

import syftzmq as sy

WIDTH = 256  # the first layer's weight: 256 KiB, far more than a resend without it costs


def _pair(seed: int = 5) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    local = nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, 3))
    remote = nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, 3))
    remote.load_state_dict(local.state_dict())
    return local, remote


def _param_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _sent(action) -> int:
    before = sy.stats().snapshot()
    action()
    return (sy.stats() - before).bytes_sent


def _train(model: nn.Module, optimizer, x, y, worker=None) -> int:
    """One tutorial step; the bytes its ``model.send`` sent (0 locally)."""
    sent = _sent(lambda: model.send(worker)) if worker is not None else 0
    optimizer.zero_grad()
    F.nll_loss(F.log_softmax(model(x), dim=1), y).backward()
    optimizer.step()
    if worker is not None:
        model.get()
    return sent


def _agree(remote: nn.Module, local: nn.Module) -> None:
    for mine, theirs in zip(remote.parameters(), local.parameters()):
        assert type(mine) is nn.Parameter and mine.is_leaf
        assert torch.allclose(mine.detach(), theirs.detach(), atol=1e-6)
        assert torch.allclose(mine.grad, theirs.grad, atol=1e-6)


def _data(worker, seed: int = 6):
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.randn(9, WIDTH, generator=generator), torch.randint(0, 3, (9,), generator=generator)
    return x, y, x.send(worker), y.send(worker)


def test_a_model_sent_back_unchanged_sends_no_parameter_bytes_and_trains_the_same(bob):
    local, remote = _pair()
    x, y, xs, ys = _data(bob)
    opt_local, opt_remote = optim.SGD(local.parameters(), lr=0.1), optim.SGD(remote.parameters(), lr=0.1)
    sends = []
    for _ in range(3):
        _train(local, opt_local, x, y)
        sends.append(_train(remote, opt_remote, xs, ys, bob))
    assert sends[0] > _param_bytes(remote)  # the first send carries the parameters
    assert all(sent < _param_bytes(remote) // 4 for sent in sends[1:])
    _agree(remote, local)


def _trained_once(bob):
    """A local model and its twin trained one step on bob (sent, trained, fetched back)."""
    local, remote = _pair()
    data = x, y, xs, ys = _data(bob)
    opt_local, opt_remote = optim.SGD(local.parameters(), lr=0.1), optim.SGD(remote.parameters(), lr=0.1)
    _train(local, opt_local, x, y)
    _train(remote, opt_remote, xs, ys, bob)
    return local, remote, opt_local, opt_remote, data


def test_a_parameter_changed_behind_torchs_back_travels_again(bob):
    """``p.data.add_`` changes the memory without bumping ``p``'s version: only the values tell."""
    local, remote, opt_local, opt_remote, (x, y, xs, ys) = _trained_once(bob)
    for model in (local, remote):
        model[0].weight.data.add_(0.5)
        model[2].bias.data.numpy()[1] = -0.0 if model[2].bias.data[1] == 0 else 0.0
    _train(local, opt_local, x, y)
    sent = _train(remote, opt_remote, xs, ys, bob)
    assert sent > WIDTH * WIDTH * 4  # the changed weight travelled
    _agree(remote, local)


def test_memory_the_client_still_sees_is_sent_not_shared(bob):
    """A view the caller keeps of a fetched parameter must not see the worker's next steps."""
    local, remote, opt_local, opt_remote, (x, y, xs, ys) = _trained_once(bob)
    kept = remote[0].weight.data  # shares the fetched parameter's memory
    expected = kept.clone()
    _train(local, opt_local, x, y)
    sent = _train(remote, opt_remote, xs, ys, bob)
    assert sent > WIDTH * WIDTH * 4
    assert torch.equal(kept, expected)
    _agree(remote, local)


def test_after_the_confirmation_left_or_to_another_worker_the_parameters_travel(bob, alice):
    local, remote = _pair()
    x, y, xs, ys = _data(bob)
    _, _, xa, ya = _data(alice)
    opt_local, opt_remote = optim.SGD(local.parameters(), lr=0.1), optim.SGD(remote.parameters(), lr=0.1)
    _train(local, opt_local, x, y)
    _train(remote, opt_remote, xs, ys, bob)
    bob.ping()  # carries the get's confirmation: bob no longer holds the fetched copies
    _train(local, opt_local, x, y)
    assert _train(remote, opt_remote, xs, ys, bob) > _param_bytes(remote)
    _train(local, opt_local, x, y)
    assert _train(remote, opt_remote, xa, ya, alice) > _param_bytes(remote)
    _agree(remote, local)
    _train(local, opt_local, x, y)
    assert _train(remote, opt_remote, xa, ya, alice) < _param_bytes(remote) // 4
    _agree(remote, local)
