"""The worker's object store on its own: single ownership, and deletes and forks that arrive
before the fork that makes them valid (messages from different senders are not ordered)."""

from __future__ import annotations

import itertools

import pytest

from syftzmq.core.refs import ChainRef, WorkerRef
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


def test_the_owner_index_follows_puts_forks_deferred_hand_offs_and_removals():
    """``owners``/``owned_by`` (the lease tick, clear_objects) and ``owning_hops`` (renewals)
    are indexes kept as objects come and go: after every change they must say what a walk
    over the store would."""
    store = ObjectStore()
    peer = WorkerRef("p", "tcp://127.0.0.1:1", "p#1")

    def walked() -> tuple[dict, list]:
        by_owner: dict = {}
        for object_id, _ in store.items():
            by_owner.setdefault(store.owner(object_id), []).append(object_id)
        hops = [obj for _, obj in store.items() if isinstance(obj, ChainRef) and obj.owning]
        return by_owner, hops

    def agrees() -> bool:
        by_owner, hops = walked()
        return (store.owners() == set(by_owner)
                and all(sorted(store.owned_by(o)) == ids for o, ids in by_owner.items())
                and store.owning_hops() == hops)

    store.put(1, "x", "a#1")
    store.put(2, ChainRef(peer, 10, 11), "a#1")                  # owning: renewed
    store.put(3, ChainRef(peer, 12, 13, owning=False), "b#2")    # a view: not renewed
    store.put(4, "y", "b#2")
    assert agrees() and store.owned_by("a#1") == [1, 2] and len(store.owning_hops()) == 1
    store.fork(1, "a#1", "b#2")                                  # in order
    assert agrees() and sorted(store.owned_by("b#2")) == [1, 3, 4]
    store.fork(4, "c#3", "d#4")                                  # waits for c#3 to own it
    store.delete(4, "d#4")                                       # waits too
    store.fork(4, "b#2", "c#3")                                  # applies both: 4 is gone
    assert 4 not in store and agrees()
    store.take(2)
    assert agrees() and store.owning_hops() == [] and store.owners() == {"b#2"}
    for object_id in (1, 3):
        store.delete(object_id, "b#2")
    assert agrees() and store.owners() == set() and store.owned_by("b#2") == []
