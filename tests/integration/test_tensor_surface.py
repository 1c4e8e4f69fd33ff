"""What a tensor does, a pointer does: indexing, in-place ops, properties, several results,
and shapes known locally."""

from __future__ import annotations

import pytest
import torch

import syftzmq as sy

X = torch.arange(12.0).reshape(3, 4)


def test_indexing_and_slicing_read_and_write(bob):
    x = X.clone().send(bob)
    assert torch.equal(x[1].get(), X[1])
    assert torch.equal(x[:, 1:3].get(), X[:, 1:3])
    assert torch.equal(x[..., -1].get(), X[..., -1])
    x[0] = 100.0
    x[1:, :2] = torch.zeros(2, 2)
    x[2, 3] = x[0, 0] + 1
    expected = X.clone()
    expected[0] = 100.0
    expected[1:, :2] = 0
    expected[2, 3] = 101.0
    assert torch.equal(x.get(), expected)


def test_in_place_operations(bob):
    x = X.clone().send(bob)
    assert x.add_(1) is x
    x.mul_(2).sub_(1)
    assert torch.equal(x.clone().get(), (X + 1) * 2 - 1)
    x.zero_()
    assert torch.equal(x.clone().get(), torch.zeros(3, 4))
    x.copy_(torch.ones(3, 4))
    other = torch.full((2, 2), 7.0).send(bob)
    x.set_(other)
    assert x.shape == torch.Size([2, 2])           # the mirror follows set_
    assert torch.equal(x.get(), torch.full((2, 2), 7.0))
    del other


def test_properties(bob):
    x = torch.randn(2, 3, requires_grad=True).send(bob)
    assert x.requires_grad and x.is_leaf and x.ndim == 2 and x.device == torch.device("cpu")
    assert x.T.shape == torch.Size([3, 2])
    data = x.data
    assert isinstance(data, sy.PointerTensor) and not data.requires_grad
    assert x.grad is None
    x.requires_grad = False
    assert not x.requires_grad
    assert x.get().requires_grad is False


def test_operations_with_several_results_return_tuples_of_pointers(bob):
    local = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 4.0]])
    x = local.send(bob)
    values, indices = torch.max(x, dim=1)
    assert torch.equal(values.get(), torch.max(local, dim=1).values)
    assert torch.equal(indices.get(), torch.max(local, dim=1).indices)
    for got, want in zip(x.split(1, dim=0), local.split(1, dim=0)):
        assert torch.equal(got.get(), want)
    chunks = torch.chunk(x, 3, dim=1)
    assert len(chunks) == 3 and all(isinstance(c, sy.PointerTensor) for c in chunks)
    sorted_, order = x.sort(dim=1, descending=True)
    assert torch.equal(order.get(), local.sort(dim=1, descending=True).indices)
    top = x.topk(2)
    assert torch.equal(top.values.get(), local.topk(2).values)
    del sorted_, chunks


@pytest.mark.parametrize("call", [lambda p: p.item(), lambda p: p.tolist(), lambda p: bool(p),
                                  lambda p: float(p), lambda p: p.sum().item()])
def test_python_values_say_to_call_get(bob, call):
    x = torch.tensor([2.0]).send(bob)
    with pytest.raises(sy.NeedsGetError, match=r"call \.get\(\) first"):
        call(x)


def test_shapes_are_known_without_a_round_trip(bob):
    x = torch.randn(4, 3).send(bob)
    before = sy.stats()
    y = (x @ torch.randn(3, 5)).relu().sum(dim=0, keepdim=True).T
    assert y.shape == torch.Size([5, 1]) and y.dtype == torch.float32
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied|same reduction dim"):
        torch.mm(x, torch.randn(4, 4))
    assert (sy.stats() - before).round_trips == 0


def test_data_dependent_shapes_are_resolved_on_first_use(bob):
    local = torch.tensor([0.0, 3.0, 0.0, 5.0, 1.0])
    x = local.send(bob)
    nonzero = torch.nonzero(x)
    masked = x[x > 0.5]
    before = sy.stats()
    assert nonzero.shape == torch.Size([3, 1])
    assert masked.shape == torch.Size([3])
    assert (sy.stats() - before).round_trips == 2   # one each, then known
    assert masked.shape == torch.Size([3]) and (sy.stats() - before).round_trips == 2
    assert torch.equal(masked.get(), local[local > 0.5])
    del nonzero


def test_new_ops_need_no_code_here(bob):
    """Ops are found by name through torch's own protocols, not from a list kept here."""
    local = torch.randn(3, 3)
    x = local.send(bob)
    assert torch.allclose(torch.special.expit(x).get(), torch.special.expit(local))
    assert torch.allclose(torch.linalg.matrix_norm(x).get(), torch.linalg.matrix_norm(local))
    assert torch.allclose(x.logsumexp(dim=1).get(), local.logsumexp(dim=1))
