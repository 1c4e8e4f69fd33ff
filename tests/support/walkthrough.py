"""The user's walkthrough (tutorial part 3) as a function of two workers, asserting both stores
at every point the tutorial prints them. Used by the walkthrough tests, and after the fuzz test
and in safe mode to prove the same workers still serve the user."""

from __future__ import annotations

import torch

import syftzmq as sy


def only(objects: dict):
    assert len(objects) == 1, objects
    return next(iter(objects.items()))


def assert_pointer_at(value, worker, target_id):
    assert isinstance(value, sy.PointerTensor), value
    assert value.location.id == worker.id
    assert value.id_at_location == target_id


def run_walkthrough(bob, alice):
    # 3.1 pointer to pointer
    x = torch.tensor([1, 2, 3, 4])
    x_ptr = x.send(bob)
    assert isinstance(x_ptr, sy.PointerTensor)
    assert repr(x_ptr) == f"[PointerTensor | me:{x_ptr.id} -> {bob.id}:{x_ptr.id_at_location}]"
    assert x_ptr.shape == torch.Size([4]) and x_ptr.dtype == torch.int64

    pointer_to_x_ptr = x_ptr.send(alice)
    assert pointer_to_x_ptr.location == alice

    data_id, data = only(bob._objects)
    assert data_id == x_ptr.id_at_location
    assert torch.equal(data, torch.tensor([1, 2, 3, 4]))
    stored_id, stored = only(alice._objects)
    assert stored_id == pointer_to_x_ptr.id_at_location
    assert_pointer_at(stored, bob, data_id)
    assert repr(stored) == f"[PointerTensor | {alice.id}:{stored.id} -> {bob.id}:{data_id}]"

    x_ptr = pointer_to_x_ptr.get()
    assert_pointer_at(x_ptr, bob, data_id)
    assert alice._objects == {}
    assert list(bob._objects) == [data_id]

    x = x_ptr.get()
    assert torch.equal(x, torch.tensor([1, 2, 3, 4]))
    assert bob._objects == {}
    assert alice._objects == {}

    # arithmetic through the chain
    p2p2x = torch.tensor([1, 2, 3, 4, 5]).send(bob).send(alice)
    y = p2p2x + p2p2x
    assert y.location == alice and y.shape == torch.Size([5])

    bob_objects = bob._objects
    alice_objects = alice._objects
    assert len(bob_objects) == 2 and len(alice_objects) == 2
    results_on_bob = [t for t in bob_objects.values() if torch.equal(t, torch.tensor([2, 4, 6, 8, 10]))]
    assert len(results_on_bob) == 1
    y_middle = alice_objects[y.id_at_location]
    assert isinstance(y_middle, sy.PointerTensor) and y_middle.location.id == bob.id
    assert torch.equal(bob_objects[y_middle.id_at_location], torch.tensor([2, 4, 6, 8, 10]))
    x_middle = alice_objects[p2p2x.id_at_location]
    assert torch.equal(bob_objects[x_middle.id_at_location], torch.tensor([1, 2, 3, 4, 5]))

    assert torch.equal(y.get().get(), torch.tensor([2, 4, 6, 8, 10]))
    assert list(bob._objects) == [x_middle.id_at_location]
    assert list(alice._objects) == [p2p2x.id_at_location]

    assert torch.equal(p2p2x.get().get(), torch.tensor([1, 2, 3, 4, 5]))
    assert bob._objects == {}
    assert alice._objects == {}

    # 3.2 move
    x = torch.tensor([1, 2, 3, 4, 5]).send(bob)
    assert list(bob._objects) == [x.id_at_location] and alice._objects == {}
    x = x.move(alice)
    assert bob._objects == {}
    moved_id, moved = only(alice._objects)
    assert moved_id == x.id_at_location and torch.equal(moved, torch.tensor([1, 2, 3, 4, 5]))
    assert x.location == alice
    assert repr(x) == f"[PointerTensor | me:{x.id} -> {alice.id}:{x.id_at_location}]"
    del x
