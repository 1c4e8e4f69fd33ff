"""The worker's object store on its own: single ownership, and deletes and forks that arrive
before the fork that makes them valid (messages from different senders are not ordered)."""

from __future__ import annotations

import itertools

import pytest
import torch

from syftzmq.errors import IdCollisionError, ObjectNotFoundError
from syftzmq.worker.store import ObjectStore


def test_put_get_and_the_owner_of_each_object():
    store = ObjectStore()
    store.put(1, "one", "alice#1")
    store.put(2, "two", "alice#1")
    store.put(3, "three", "bob#2")
    assert store.get(2) == "two" and store.owner(2) == "alice#1" and store.owner(3) == "bob#2"
    assert len(store) == 3 and 1 in store and 4 not in store
    assert sorted(store.owned_by("alice#1")) == [1, 2] and store.owned_by("carol#3") == []
    assert store.owners() == {"alice#1", "bob#2"}
    assert dict(store.items()) == {1: "one", 2: "two", 3: "three"}
    assert sorted(store.values()) == ["one", "three", "two"]
    assert store.owner(4) is None


def test_items_is_a_snapshot_that_survives_changes_while_iterating():
    store = ObjectStore()
    for object_id in range(3):
        store.put(object_id, object_id, "a")
    seen = []
    for object_id, _ in store.items():   # the worker deletes while it walks its store
        seen.append(object_id)
        store.take(object_id)
    assert seen == [0, 1, 2] and len(store) == 0


def test_an_existing_id_is_never_overwritten():
    store = ObjectStore()
    store.put(7, "first", "alice#1")
    with pytest.raises(IdCollisionError, match="id 7"):
        store.put(7, "second", "bob#2")
    assert store.get(7) == "first" and store.owner(7) == "alice#1"
    assert store.owners() == {"alice#1"}


def test_get_and_take_of_an_unknown_id_name_it():
    store = ObjectStore()
    with pytest.raises(ObjectNotFoundError, match="id 5"):
        store.get(5)
    with pytest.raises(KeyError):           # ObjectNotFoundError is a KeyError too
        store.take(5)


def test_take_removes_whoever_owns_it():
    store = ObjectStore()
    store.put(1, "x", "alice#1")
    assert store.take(1) == "x"
    assert 1 not in store and store.owners() == set() and store.owner(1) is None
    with pytest.raises(ObjectNotFoundError):
        store.get(1)


def test_the_owners_delete_removes_and_returns_the_object():
    store = ObjectStore()
    store.put(1, "x", "alice#1")
    assert store.delete(1, "alice#1") == ["x"]
    assert 1 not in store and store.owners() == set()
    assert store.delete(1, "alice#1") == []     # idempotent


def test_a_delete_from_a_non_owner_waits_and_removes_nothing():
    store = ObjectStore()
    store.put(1, "x", "alice#1")
    assert store.delete(1, "bob#2") == []
    assert store.get(1) == "x" and store.owner(1) == "alice#1"


def test_a_delete_that_arrived_before_its_fork_applies_when_the_fork_arrives():
    store = ObjectStore()
    store.put(1, "x", "alice#1")
    assert store.delete(1, "bob#2") == []        # bob's delete overtook alice's hand-off
    assert store.fork(1, "alice#1", "bob#2") == ["x"]
    assert 1 not in store and store.owners() == set()


def test_a_fork_in_order_moves_ownership_and_the_old_owner_can_no_longer_delete():
    store = ObjectStore()
    store.put(1, "x", "alice#1")
    assert store.fork(1, "alice#1", "bob#2") == []
    assert store.owner(1) == "bob#2" and store.owned_by("alice#1") == []
    assert store.delete(1, "alice#1") == []      # no longer alice's to delete
    assert store.get(1) == "x"
    assert store.delete(1, "bob#2") == ["x"]


def test_two_forks_out_of_order_end_with_the_last_owner():
    store = ObjectStore()
    store.put(1, "x", "a")
    assert store.fork(1, "b", "c") == []         # b is not the owner yet: waits
    assert store.owner(1) == "a"
    assert store.fork(1, "a", "b") == []
    assert store.owner(1) == "c"
    assert store.delete(1, "b") == []            # b handed it on
    assert store.delete(1, "c") == ["x"]


def test_a_waiting_fork_is_used_once():
    """b -> c waited for b to own the object; when c later hands it back to b, the old
    hand-off must not move it to c again."""
    store = ObjectStore()
    store.put(1, "x", "a")
    store.fork(1, "b", "c")
    store.fork(1, "a", "b")
    assert store.owner(1) == "c"
    assert store.fork(1, "c", "b") == []
    assert store.owner(1) == "b"
    assert store.delete(1, "b") == ["x"]


HOPS = [("fork", "a", "b"), ("fork", "b", "c"), ("fork", "c", "d"), ("delete", "d")]


@pytest.mark.parametrize("order", list(itertools.permutations(range(len(HOPS)))))
def test_a_chain_of_hand_offs_and_the_last_owners_delete_in_any_order(order):
    """a -> b -> c -> d, then d deletes: whatever order the four messages arrive in, the
    object is removed exactly once, by the message that completes the chain."""
    store = ObjectStore()
    store.put(1, "x", "a")
    removed = []
    for position, index in enumerate(order):
        kind, *who = HOPS[index]
        result = store.fork(1, *who) if kind == "fork" else store.delete(1, *who)
        if result:
            removed.append(position)
            assert result == ["x"]
    assert removed == [len(HOPS) - 1]            # only the last message could complete it
    assert 1 not in store and store.owners() == set()


def test_several_waiting_deletes_only_the_new_owners_applies():
    store = ObjectStore()
    store.put(1, "x", "a")
    assert store.delete(1, "b") == [] and store.delete(1, "c") == []
    assert store.fork(1, "a", "c") == ["x"]


def test_a_fork_racing_the_owners_delete_is_a_no_op():
    """The owner deleted the object; a hand-off of it that arrives later resurrects nothing."""
    store = ObjectStore()
    store.put(1, "x", "a")
    assert store.delete(1, "a") == ["x"]
    assert store.fork(1, "a", "b") == []
    assert 1 not in store and store.owners() == set()
    assert store.fork(99, "a", "b") == []        # never stored: no error either


def test_waiting_deletes_and_forks_are_forgotten_with_the_object():
    """A deferred delete must not hit a later object stored under the same id (ids are not
    reused in practice, but the store must not rely on it)."""
    store = ObjectStore()
    store.put(1, "old", "a")
    store.delete(1, "b")                         # waits for a fork a -> b
    store.fork(1, "c", "d")                      # waits for c to own it
    assert store.take(1) == "old"
    store.put(1, "new", "e")
    assert store.fork(1, "e", "b") == []         # b's old delete is gone with the old object
    assert store.get(1) == "new" and store.owner(1) == "b"
    store.put(2, "two", "c")
    assert store.owner(2) == "c"


def test_a_waiting_delete_is_forgotten_when_the_owner_deletes():
    store = ObjectStore()
    store.put(1, "old", "a")
    store.delete(1, "b")
    assert store.delete(1, "a") == ["old"]
    store.put(1, "new", "a")
    assert store.fork(1, "a", "b") == []
    assert store.get(1) == "new"


def _summed(store: ObjectStore) -> int:
    """What the running total must equal: the bytes of every tensor in the store now."""
    return sum(v.nelement() * v.element_size() for v in store.values()
               if isinstance(v, torch.Tensor) and not v.is_meta)


def test_the_stored_bytes_follow_every_way_in_and_out():
    """The PING's ``bytes_stored`` is a running total: it must match a full sum after puts,
    takes, owner deletes, deferred deletes applied by a late fork, and refused puts."""
    store = ObjectStore()
    store.put(1, torch.ones(1000), "a#1")                        # 4000 bytes
    store.put(2, torch.ones(10, dtype=torch.float64), "a#1")     # 80
    store.put(3, "not a tensor", "a#1")
    store.put(4, torch.empty(5, device="meta"), "a#1")           # no memory: counts nothing
    store.put(5, torch.ones(3, dtype=torch.int8), "b#2")          # 3
    assert store.tensor_bytes == 4083 == _summed(store)
    with pytest.raises(IdCollisionError):
        store.put(1, torch.ones(7), "a#1")                       # refused: no change
    assert store.tensor_bytes == 4083
    store.take(2)
    assert store.tensor_bytes == 4003
    assert store.delete(5, "a#1") == [] and store.tensor_bytes == 4003   # not the owner: waits
    store.fork(5, "b#2", "a#1")                                  # the fork applies that delete
    assert 5 not in store and store.tensor_bytes == 4000
    store.delete(1, "a#1")
    store.delete(1, "a#1")                                       # idempotent, not subtracted twice
    assert store.tensor_bytes == 0 == _summed(store)
    store.put(1, torch.ones(2), "a#1")                           # an id used again counts anew
    assert store.tensor_bytes == 8 == _summed(store)
