"""Pointer chains of depth 3 and more, and move between every pair of workers."""

from __future__ import annotations

import itertools

import pytest
import torch

import syftzmq as sy

from support.workers import started_workers


def chain(tensor, workers):
    """Send ``tensor`` to workers[0], then the pointer on along the others."""
    pointer = tensor.send(workers[0])
    for worker in workers[1:]:
        pointer = pointer.send(worker)
    return pointer


def unwind(pointer, depth):
    value = pointer
    for _ in range(depth):
        value = value.get()
    return value


@pytest.mark.parametrize("depth", [3, 4, 6])
def test_operation_travels_along_deep_chain(workers, depth):
    names = ["bob", "alice", "charlie"]
    hops = [workers[names[i % 3]] for i in range(depth)]
    data = torch.arange(6.0).reshape(2, 3)
    p = chain(data, hops)
    before = {name: len(w._objects) for name, w in workers.items()}
    tripled = p * 3
    shifted = tripled - 1
    y = shifted @ torch.ones(3, 1)
    assert y.shape == torch.Size([2, 1]) and y.location == hops[-1]

    def gained():
        return {name: len(w._objects) - before[name] for name, w in workers.items()}
    # three operations, each gains exactly one object per hop it passes
    hops_per_worker = {name: sum(1 for h in hops if h.id == name) for name in workers}
    assert gained() == {name: 3 * n for name, n in hops_per_worker.items()}
    del tripled, shifted  # temporaries go, along the whole chain
    assert gained() == hops_per_worker
    assert torch.equal(unwind(y, depth), (data * 3 - 1) @ torch.ones(3, 1))
    assert torch.equal(unwind(p, depth), data)


def test_get_returns_owning_middle_pointer(bob, alice, charlie):
    """PySyft lost ownership here: the pointer get() returns must still delete its target."""
    p = chain(torch.ones(3), [bob, alice, charlie])
    middle = p.get()           # pointer on alice, -> bob
    assert middle.location == alice
    assert charlie._objects == {}
    assert len(alice._objects) == 1 and len(bob._objects) == 1
    del middle                 # dropping it cascades: alice's pointer, then bob's data
    assert alice._objects == {} and bob._objects == {}


def test_local_tensor_and_scalar_travel_with_the_command(bob, alice):
    p = chain(torch.tensor([1.0, 2.0]), [bob, alice])
    y = torch.add(p, torch.tensor([10.0, 20.0]), alpha=2) * 0.5
    assert torch.equal(y.get().get(), (torch.tensor([1.0, 2.0]) + 2 * torch.tensor([10.0, 20.0])) * 0.5)
    del p


@pytest.mark.parametrize("source,dest", list(itertools.permutations(["bob", "alice", "charlie"], 2)))
def test_move_between_every_pair(workers, source, dest):
    src, dst = workers[source], workers[dest]
    data = torch.randn(5, 7)
    x = data.send(src)
    original_id = x.id_at_location
    x = x.move(dst)
    assert x.location == dst
    assert src._objects == {}
    assert list(dst._objects) == [x.id_at_location] and x.id_at_location != original_id
    assert torch.equal((x + 1).get(), data + 1)
    assert torch.equal(x.get(), data)


def test_moved_payload_never_passes_through_the_client(bob, alice):
    big = torch.randn(1024, 1024)  # 4 MiB
    x = big.send(bob)
    before = sy.stats()
    x.move(alice)
    spent = sy.stats() - before
    assert spent.bytes_sent + spent.bytes_received < 4096   # control messages only
    assert torch.equal(x.get(), big)


def test_local_tensor_move_sends_it(alice):
    x = torch.ones(2).move(alice)
    assert x.location == alice and torch.equal(x.get(), torch.ones(2))


def test_move_of_a_pointer_moves_the_pointer_not_the_data(bob, alice, charlie):
    p = torch.tensor([4, 5]).send(bob).send(alice)
    p.move(charlie)
    assert alice._objects == {}
    (stored_id, stored), = charlie._objects.items()
    assert stored.location.id == "bob" and len(bob._objects) == 1
    assert torch.equal(p.get().get(), torch.tensor([4, 5]))


def test_move_to_current_location_is_a_no_op(bob):
    x = torch.ones(2).send(bob)
    before = x.id_at_location
    assert x.move(bob) is x and x.id_at_location == before
    assert torch.equal(x.get(), torch.ones(2))


def test_commands_before_move_are_applied_before_it(bob, alice):
    x = torch.zeros(3).send(bob)
    y = x + 5          # fire-and-forget on bob
    y.move(alice)      # must see the result
    assert torch.equal(y.get(), torch.full((3,), 5.0))
    del x


def test_a_move_waits_for_no_unrelated_worker(hook, bob, alice):
    """A move observes no data: work queued on another (non-chain) worker is not flushed
    first (the move is one message and waits for nothing until its pointer is used), and an
    error there still surfaces at that worker's next observation. (A fresh
    worker: the session's workers held chain pointers in earlier tests, and a chain holder
    is flushed first.)"""
    with started_workers(hook, "unrelated") as (other,):
        x = torch.ones(3).send(bob)
        y = torch.ones(3).send(other)
        other.ping()
        z = y[torch.tensor([7])]               # out of range: only the worker can tell
        before = sy.stats()
        x.move(alice)
        spent = sy.stats() - before
        assert (spent.messages_sent, spent.round_trips) == (1, 0)
        with pytest.raises(IndexError, match="out of bounds|out of range"):
            z.get()
        assert torch.equal(x.get(), torch.ones(3))
        del y, z
