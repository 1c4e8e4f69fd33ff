"""The rest of PySyft 0.2's pointer API on real workers: copy, in-place send_/get_, several
locations, remote_get/remote_send, send(requires_grad=True), move home, tags."""

from __future__ import annotations

import gc

import pytest
import torch
from torch import nn

import syftzmq as sy
from syftzmq.errors import InvalidTensorForRemoteGet, ObjectGoneError


def _stored(worker) -> list:
    return list(worker._objects.values())


# ------------------------------------------------------------------------------ copy
def test_copy_of_a_tensor_is_self_plus_zero(hook):
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = x.copy()
    assert y is not x and y.grad_fn is not None  # joins the autograd graph
    torch.testing.assert_close(y, x)
    flags = torch.tensor([True, False]).copy()
    assert flags.dtype == torch.int64 and flags.tolist() == [1, 0]


def test_copy_of_a_pointer_is_a_new_remote_object(bob):
    ptr = torch.tensor([1, 2, 3]).send(bob)
    twin = ptr.copy()
    assert twin.id_at_location != ptr.id_at_location and twin.location == bob
    assert bob.object_count() == 2
    twin.add_(10)  # changing the copy leaves the original alone
    assert twin.get().tolist() == [11, 12, 13]
    assert ptr.get().tolist() == [1, 2, 3]
    assert torch.tensor([True]).send(bob).copy().get().dtype == torch.int64


# ------------------------------------------------------------------------------ in place
def test_send_in_place_keeps_the_same_object_and_get_in_place_refills_it(bob):
    x = torch.tensor([1, 2, 3])
    assert x.send_(bob) is x
    assert isinstance(x, torch.Tensor) and x.location == bob
    assert x.shape == (3,) and x.dtype == torch.int64
    with torch._C.DisableTorchFunctionSubclass():  # look at the local object itself
        assert x.untyped_storage().nbytes() <= 8  # its data no longer lives here
    assert (x * 2).get().tolist() == [2, 4, 6]  # operations run on bob
    x.add_(5)
    assert x.get_() is x and type(x) is torch.Tensor
    assert x.tolist() == [6, 7, 8] and x.dtype == torch.int64
    assert bob.object_count() == 0

    param = nn.Parameter(torch.tensor([0.5, -0.5]))
    assert param.send_(bob) is param and param.location == bob
    assert param.get_() is param and isinstance(param, nn.Parameter)
    torch.testing.assert_close(param.data, torch.tensor([0.5, -0.5]))

    with pytest.raises(NotImplementedError, match="Inplace send to several workers"):
        torch.ones(1).send_(bob, bob)


def test_get_in_place_on_a_pointer_returns_the_value_and_spends_the_pointer(bob):
    ptr = torch.tensor([4.0]).send(bob)
    assert ptr.get_().tolist() == [4.0]
    with pytest.raises(ObjectGoneError, match="get_"):
        ptr + 1


def test_pointer_send_in_place_becomes_the_chain(bob, alice):
    ptr = torch.tensor([1.0, 2.0]).send(bob)
    assert ptr.send_(alice) is ptr and ptr.location == alice
    assert isinstance(_stored(alice)[0], sy.PointerTensor)  # alice holds the hop
    assert ptr.get().get().tolist() == [1.0, 2.0]


# ------------------------------------------------------------------------------ several workers
def test_send_to_several_workers_makes_a_multi_pointer(bob, alice):
    multi = torch.tensor([1, 2, 3, 4, 5]).send(bob, alice)
    assert isinstance(multi, sy.MultiPointerTensor) and list(multi.child) == ["bob", "alice"]
    assert multi.shape == (5,) and multi.dim() == 1
    doubled = multi + multi  # one command per worker
    assert bob.object_count() == 2 and alice.object_count() == 2
    assert doubled.get(sum_results=True).tolist() == [4, 8, 12, 16, 20]
    results = (multi * torch.tensor([1, 0, 1, 0, 1])).get()
    assert [r.tolist() for r in results] == [[1, 0, 3, 0, 5]] * 2
    assert [r.tolist() for r in torch.neg(multi).get()] == [[-1, -2, -3, -4, -5]] * 2
    assert [r.tolist() for r in multi.get()] == [[1, 2, 3, 4, 5]] * 2


def test_combine_pointers_and_combine_keep_their_orders(bob, alice, charlie):
    on_bob, on_alice = torch.tensor([1.0]).send(bob), torch.tensor([2.0]).send(alice)
    combined = sy.combine_pointers(on_bob, on_alice)
    assert list(combined.child) == ["bob", "alice"]
    third = torch.tensor([3.0]).send(charlie)
    summed = (combined + 1).get(sum_results=True)
    assert summed.tolist() == [5.0]
    assert [t.tolist() for t in third.combine(on_alice).get()] == [[2.0], [3.0]]  # self last
    with pytest.raises(ValueError, match="one shape"):
        sy.combine_pointers(torch.ones(2).send(bob), torch.ones(3).send(alice))
    lonely = sy.combine_pointers(torch.ones(1).send(charlie))
    with pytest.raises(sy.WorkerMismatchError, match="charlie"):
        lonely + sy.combine_pointers(torch.ones(1).send(bob))
    del combined, lonely, on_bob, on_alice
    gc.collect()


# ------------------------------------------------------------------------------ along chains
def test_remote_get_pulls_the_data_into_the_middle_worker(bob, alice):
    chain = torch.tensor([1.0, 2.0]).send(bob).send(alice)
    assert chain.remote_get() is chain
    assert bob.object_count() == 0  # bob's copy is gone
    (held,) = _stored(alice)
    assert isinstance(held, torch.Tensor) and held.tolist() == [1.0, 2.0]  # data, not a pointer
    assert chain.location == alice
    assert (chain + 1).get().tolist() == [2.0, 3.0]
    assert chain.get().tolist() == [1.0, 2.0]


def test_remote_get_on_one_hop_refuses_and_keeps_the_data(bob):
    ptr = torch.tensor([7.0]).send(bob)
    with pytest.raises(InvalidTensorForRemoteGet, match="chain of pointer tensors"):
        ptr.remote_get()
    assert bob.object_count() == 1
    assert ptr.get().tolist() == [7.0]


def test_remote_send_moves_the_object_and_the_pointer_follows(bob, alice, charlie):
    ptr = torch.tensor([3.0, 4.0]).send(bob)
    assert ptr.remote_send(alice) is ptr
    assert bob.object_count() == 0 and ptr.location == alice
    assert ptr.get().tolist() == [3.0, 4.0]
    chain = torch.tensor([5.0]).send(bob).send(alice)
    chain.remote_send(charlie)  # alice's hop goes to charlie; the data stays on bob
    assert alice.object_count() == 0 and isinstance(_stored(charlie)[0], sy.PointerTensor)
    assert chain.get().get().tolist() == [5.0]


# ------------------------------------------------------------------------------ autograd
def test_send_with_requires_grad_gives_a_remote_gradient(bob):
    x = torch.tensor([1.0, 2.0, 3.0])
    ptr = x.send(bob, requires_grad=True)
    assert ptr.requires_grad and not x.requires_grad
    (ptr * ptr).sum().backward()
    assert ptr.grad.get().tolist() == [2.0, 4.0, 6.0]
    assert x.grad is None  # the worker never writes into this process: fetch it
    pre = torch.ones(2).send(bob, requires_grad=True, preinitialize_grad=True)
    assert pre.grad.get().tolist() == [0.0, 0.0]
    with pytest.raises(NotImplementedError, match="local_autograd"):
        torch.ones(1).send(bob, local_autograd=True)
    with pytest.raises(TypeError, match="unexpected keyword"):
        torch.ones(1).send(bob, nonsense=True)


# ------------------------------------------------------------------------------ move
def test_move_to_the_local_worker_is_get(hook, bob):
    ptr = torch.tensor([1, 2]).send(bob)
    back = ptr.move(hook.local_worker)
    assert isinstance(back, torch.Tensor) and back.tolist() == [1, 2]
    assert bob.object_count() == 0
    assert torch.tensor([3]).send(bob).move(sy.local_worker).tolist() == [3]
    here = torch.tensor([4])
    assert here.move(sy.local_worker) is here
    ptr = torch.tensor([5]).send(bob)
    assert ptr.move(ptr.location) is ptr and ptr.get().tolist() == [5]
    x = torch.tensor([6.0])
    x.send_(bob)
    assert x.move(hook.local_worker) is x and type(x) is torch.Tensor and x.tolist() == [6.0]


# ------------------------------------------------------------------------------ tags
def test_tags_and_description_stay_with_the_tensor_and_its_pointer(bob, alice):
    fresh = torch.tensor([1.0])
    assert fresh.tags is None and fresh.description is None
    x = torch.tensor([1.0, 2.0])
    assert x.tag("#x", "#data") is x and x.describe("two numbers") is x
    assert x.tags == {"#x", "#data"} and "x" not in x.tags  # exact strings
    ptr = x.send(bob)
    assert ptr.tags == {"#x", "#data"} and ptr.description == "two numbers"
    assert ptr.tag("#more") is ptr and ptr.tags == {"#x", "#data", "#more"}
    assert x.tags == {"#x", "#data"}  # tagging the pointer is local to it
    onward = ptr.send(alice)
    assert onward.tags == {"#x", "#data", "#more"} and onward.description == "two numbers"
    assert onward.get().get().tolist() == [1.0, 2.0]
