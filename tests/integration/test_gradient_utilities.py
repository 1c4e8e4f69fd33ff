"""``torch.nn.utils`` gradient and parameter utilities on remote tensors, against local torch.

Before the hook replaced them, ``clip_grad_norm_(x_ptr, 1)`` returned ``tensor(0.)`` and
clipped nothing; each test here compares the remote result (and the clipped gradients) with
the same call on local tensors.
"""

from __future__ import annotations

import copy
import gc
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import syftzmq as sy


def _model_with_grads(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    inputs, targets = torch.randn(8, 4) * 5, torch.randint(0, 2, (8,))
    return model, inputs, targets


def _backward(model: nn.Module, inputs, targets) -> None:
    F.cross_entropy(model(inputs), targets).backward()


def _local_and_remote(worker):
    """The same model twice, with the same gradients: one here, one on ``worker``."""
    local, inputs, targets = _model_with_grads()
    remote = copy.deepcopy(local).send(worker)
    _backward(local, inputs, targets)
    _backward(remote, inputs.send(worker), targets.send(worker))
    return local, remote


def _grads_of(remote: nn.Module) -> list[torch.Tensor]:
    remote.get()
    return [p.grad for p in remote.parameters()]


def test_clip_grad_norm_of_one_pointer(bob):
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    ptr = x.detach().send(bob, requires_grad=True)
    (x * x).sum().backward()
    (ptr * ptr).sum().backward()
    want = torch.nn.utils.clip_grad_norm_(x, 1)
    got = torch.nn.utils.clip_grad_norm_(ptr, 1)
    assert isinstance(got, sy.PointerTensor) and got.shape == want.shape
    torch.testing.assert_close(got.get(), want)
    assert want.item() == pytest.approx(math.sqrt(4 + 16 + 36))  # not tensor(0.)
    torch.testing.assert_close(ptr.grad.get(), x.grad)  # clipped on bob
    assert x.grad.norm().item() == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.05, 1e6])  # clipping, and a norm that needs none
def test_clip_grad_norm_of_a_sent_model(bob, norm_type, max_norm):
    local, remote = _local_and_remote(bob)
    want = torch.nn.utils.clip_grad_norm_(local.parameters(), max_norm, norm_type=norm_type)
    got = torch.nn.utils.clip_grad_norm_(remote.parameters(), max_norm, norm_type=norm_type)
    torch.testing.assert_close(got.get(), want)
    for got_grad, param in zip(_grads_of(remote), local.parameters()):
        torch.testing.assert_close(got_grad, param.grad)


def test_clip_grad_norm_error_if_nonfinite(bob):
    ptr = torch.tensor([1.0, 2.0]).send(bob, requires_grad=True)
    (ptr * math.inf).sum().backward()
    with pytest.raises(RuntimeError, match="non-finite"):
        torch.nn.utils.clip_grad_norm_(ptr, 1.0, error_if_nonfinite=True)
    assert ptr.grad.get().isinf().all()  # nothing was scaled


def test_clip_grad_value_of_a_sent_model(bob):
    local, remote = _local_and_remote(bob)
    assert torch.nn.utils.clip_grad_value_(remote.parameters(), 0.01) is None
    torch.nn.utils.clip_grad_value_(local.parameters(), 0.01)
    grads = _grads_of(remote)
    assert any((g.abs() == 0.01).any() for g in grads)  # something was clipped
    for got_grad, param in zip(grads, local.parameters()):
        torch.testing.assert_close(got_grad, param.grad)


def test_get_total_norm_and_clip_grads_with_norm(bob):
    local, remote = _local_and_remote(bob)
    local_grads = [p.grad for p in local.parameters()]
    remote_grads = [p.grad for p in remote.parameters()]
    want = torch.nn.utils.get_total_norm(local_grads, 3.0)
    got = torch.nn.utils.get_total_norm(remote_grads, 3.0)
    torch.testing.assert_close(got.get(), want)
    torch.nn.utils.clip_grads_with_norm_(local.parameters(), 0.1, want)
    torch.nn.utils.clip_grads_with_norm_(remote.parameters(), 0.1,
                                         torch.nn.utils.get_total_norm(remote_grads, 3.0))
    for got_grad, param in zip(_grads_of(remote), local.parameters()):
        torch.testing.assert_close(got_grad, param.grad)


def test_parameters_to_vector_and_back(bob):
    local, inputs, _ = _model_with_grads()
    remote = copy.deepcopy(local).send(bob)
    vector = torch.nn.utils.parameters_to_vector(remote.parameters())
    want = torch.nn.utils.parameters_to_vector(local.parameters())
    assert isinstance(vector, sy.PointerTensor)
    torch.testing.assert_close(vector.get(), want)

    new = torch.arange(float(want.numel())) / 100
    torch.nn.utils.vector_to_parameters(new, remote.parameters())  # a local vector
    torch.nn.utils.vector_to_parameters(new, local.parameters())
    torch.testing.assert_close(remote(inputs.send(bob)).get(), local(inputs))
    torch.nn.utils.vector_to_parameters((new * 2).send(bob), remote.parameters())  # remote one
    torch.nn.utils.vector_to_parameters(new * 2, local.parameters())
    remote.get()
    for got, param in zip(remote.parameters(), local.parameters()):
        torch.testing.assert_close(got.data, param.data)


def test_utilities_refuse_what_cannot_be_computed_in_one_place(bob, alice):
    on_bob = torch.ones(3).send(bob, requires_grad=True)
    on_alice = torch.ones(3).send(alice, requires_grad=True)
    (on_bob * 2).sum().backward()
    (on_alice * 2).sum().backward()
    local = torch.ones(3, requires_grad=True)
    before = sy.stats()
    with pytest.raises(sy.WorkerMismatchError, match="bob.*alice"):
        torch.nn.utils.clip_grad_norm_([on_bob, on_alice], 1.0)
    with pytest.raises(ValueError, match="both local and remote"):
        torch.nn.utils.clip_grad_value_([on_bob, local], 1.0)
    with pytest.raises(ValueError, match="remote vector and local parameters"):
        torch.nn.utils.vector_to_parameters(torch.zeros(3).send(bob), [local])
    with pytest.raises(TypeError, match="expected torch.Tensor"):
        torch.nn.utils.vector_to_parameters([0.0, 1.0], [local])
    assert (sy.stats() - before).round_trips == 0
    assert on_bob.grad.get().tolist() == [2.0, 2.0, 2.0]  # untouched
    assert on_alice.grad.get().tolist() == [2.0, 2.0, 2.0]
    # without gradients, as in torch: a zero norm and nothing to clip
    assert torch.nn.utils.clip_grad_norm_(torch.ones(2).send(bob), 1.0).item() == 0.0
    gc.collect()
