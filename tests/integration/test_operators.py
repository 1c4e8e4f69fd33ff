"""Operators and torch functions on pointers run where the data lives and match local torch."""

from __future__ import annotations

import operator

import pytest
import torch

import syftzmq as sy

A = torch.tensor([[1.0, -2.0], [3.0, 4.5]])
B = torch.tensor([[0.5, 2.0], [-1.0, 3.0]])

BINARY = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "@": operator.matmul, "**": operator.pow, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
    "//": operator.floordiv, "%": operator.mod,
}


@pytest.mark.parametrize("symbol", list(BINARY))
def test_binary_operator_between_pointers(bob, symbol):
    op = BINARY[symbol]
    a, b = A.send(bob), B.send(bob)
    result = op(a, b)
    assert isinstance(result, sy.PointerTensor) and result.location == bob
    expected = op(A, B)
    assert result.shape == expected.shape and result.dtype == expected.dtype
    assert torch.equal(result.get(), expected)


@pytest.mark.parametrize("symbol", ["+", "-", "*", "/", "**"])
def test_operator_with_scalar_and_local_tensor_on_either_side(bob, symbol):
    op = BINARY[symbol]
    a = A.send(bob)
    assert torch.allclose(op(a, 2.0).get(), op(A, 2.0))
    assert torch.allclose(op(3.0, a).get(), op(3.0, A))
    assert torch.allclose(op(a, B).get(), op(A, B))
    assert torch.allclose(op(B, a).get(), op(B, A))


def test_unary_and_reductions(bob):
    a = A.send(bob)
    assert torch.equal((-a).get(), -A)
    assert torch.equal(abs(a).get(), abs(A))
    assert torch.equal(a.sum().get(), A.sum())
    assert torch.equal(a.mean().get(), A.mean())
    assert torch.equal(a.sum(dim=1).get(), A.sum(dim=1))
    assert a.mean(0, keepdim=True).shape == torch.Size([1, 2])


def test_torch_functions(bob):
    a, b = A.send(bob), B.send(bob)
    assert torch.equal(torch.add(a, b).get(), torch.add(A, B))
    assert torch.equal(torch.add(a, b, alpha=3).get(), torch.add(A, B, alpha=3))
    assert torch.equal(torch.mul(a, 2).get(), torch.mul(A, 2))
    assert torch.equal(torch.matmul(a, b).get(), torch.matmul(A, B))
    assert torch.equal(torch.matmul(A, b).get(), torch.matmul(A, B))  # local tensor first
    values, indices = torch.max(a, dim=1)
    assert torch.equal(values.get(), torch.max(A, dim=1).values)
    assert torch.equal(indices.get(), torch.max(A, dim=1).indices)


def test_in_place_operator_updates_the_remote_tensor(bob):
    a = A.clone().send(bob)
    same = a.add_(1)
    assert same is a
    a *= 2
    assert torch.equal(a.get(), (A + 1) * 2)
    assert bob._objects == {}


def test_indexing_reads_remotely(bob):
    a = A.send(bob)
    assert torch.equal(a[0].get(), A[0])
    assert torch.equal(a[:, 1].get(), A[:, 1])
    assert a[1:, :1].shape == torch.Size([1, 1])
