"""Remote objects live exactly as long as the pointers that own them."""

from __future__ import annotations

import gc

import pytest
import torch

import syftzmq as sy


def test_dropping_a_pointer_deletes_its_target(bob):
    x = torch.ones(3).send(bob)
    assert list(bob._objects) == [x.id_at_location]
    del x
    assert bob._objects == {}


def test_dropping_a_pointer_to_pointer_cascades_to_the_data(bob, alice):
    p2p = torch.ones(3).send(bob).send(alice)
    assert len(bob._objects) == 1 and len(alice._objects) == 1
    del p2p
    assert alice._objects == {} and bob._objects == {}


def test_temporaries_are_freed_and_results_kept(bob, alice):
    x = torch.arange(4.0).send(bob).send(alice)
    y = ((x + 1) * 2 - 3).sum()          # three temporaries die on the way
    assert len(bob._objects) == 2 and len(alice._objects) == 2  # x and y on each hop
    assert y.get().get().item() == ((torch.arange(4.0) + 1) * 2 - 3).sum().item()
    del x


def test_pointer_handed_on_keeps_target_until_the_new_owner_lets_go(bob, alice):
    x_ptr = torch.tensor([7, 8]).send(bob)
    on_alice = x_ptr.send(alice)
    del x_ptr                       # no longer the owner: dropping it deletes nothing
    assert len(bob._objects) == 1
    middle = on_alice.get()         # ownership comes back through alice
    assert alice._objects == {} and len(bob._objects) == 1
    del middle
    assert bob._objects == {}


def test_pointer_to_moved_object_deletes_at_new_location(bob, alice):
    x = torch.ones(2).send(bob)
    x.move(alice)
    assert bob._objects == {} and len(alice._objects) == 1
    y = x * 2
    assert len(alice._objects) == 2
    del x, y
    assert alice._objects == {}


def test_delete_racing_a_hand_off_is_deferred_not_lost(bob, alice):
    """Many pointers handed on and dropped at once: the ownership protocol keeps every target
    alive exactly until its last owner lets go (no early delete, no leak)."""
    pointers = [torch.full((2,), float(i)).send(bob) for i in range(50)]
    handed = [p.send(alice) for p in pointers]
    results = [h + 1 for h in handed]   # forwarded through alice to bob
    del pointers, handed
    gc.collect()
    fetched = [r.get().get() for r in results]
    assert [t.tolist() for t in fetched] == [[i + 1.0] * 2 for i in range(50)]
    assert alice._objects == {} and bob._objects == {}


def test_handed_on_pointer_cannot_get_or_move(bob, alice):
    x_ptr = torch.ones(2).send(bob)
    keep = x_ptr.send(alice)
    with pytest.raises(sy.ObjectGoneError, match="does not own"):
        x_ptr.get()
    with pytest.raises(sy.ObjectGoneError, match="does not own"):
        x_ptr.move(alice)
    assert torch.equal(keep.get().get(), torch.ones(2))


def test_snapshot_pointers_do_not_own(bob, alice):
    p2p = torch.ones(2).send(bob).send(alice)
    snapshot = alice._objects
    del snapshot                    # dropping a snapshot deletes nothing
    assert len(alice._objects) == 1 and len(bob._objects) == 1
    del p2p
