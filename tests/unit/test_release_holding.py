"""The client's release queue holds deletes for workers it is not messaging
(syftzmq/client/releases.py): which deletes are due, and that none is lost."""

from __future__ import annotations

from syftzmq.client.releases import ReleaseQueue
from syftzmq.core.refs import WorkerRef

BOB = WorkerRef("bob", "tcp://127.0.0.1:1", "bob#1")
ALICE = WorkerRef("alice", "tcp://127.0.0.1:2", "alice#1")


def _ids(batches: dict) -> dict[str, list[int]]:
    return {incarnation: ids for incarnation, (_, ids) in batches.items()}


def test_the_carriers_deletes_are_due_and_the_others_are_held():
    queue = ReleaseQueue(hold=60, max_held=64)
    queue.add(BOB, 1)
    queue.add(ALICE, 2)
    assert _ids(queue.take(carrier="bob#1", everything=False)) == {"bob#1": [1]}
    assert queue and len(queue) == 1               # alice's is held, not lost
    queue.add(ALICE, 3)
    assert _ids(queue.take(carrier="alice#1", everything=False)) == {"alice#1": [2, 3]}
    assert not queue and len(queue) == 0


def test_held_deletes_leave_once_they_waited_the_hold():
    queue = ReleaseQueue(hold=0.0, max_held=64)
    queue.add(ALICE, 2)
    assert _ids(queue.take(carrier="bob#1", everything=False)) == {"alice#1": [2]}


def test_held_deletes_leave_once_a_worker_has_a_batch_of_them():
    queue = ReleaseQueue(hold=60, max_held=3)
    for object_id in (1, 2):
        queue.add(ALICE, object_id)
    assert queue.take(carrier=None, everything=False) == {}
    queue.add(ALICE, 3)
    assert _ids(queue.take(carrier=None, everything=False)) == {"alice#1": [1, 2, 3]}


def test_everything_takes_what_is_held_too_in_order():
    queue = ReleaseQueue(hold=60)
    queue.add(ALICE, 1)
    queue.take(carrier="bob#1", everything=False)
    queue.add(ALICE, 2)
    queue.add(BOB, 3)
    assert _ids(queue.take()) == {"alice#1": [1, 2], "bob#1": [3]}
    assert not queue


def test_a_gone_workers_held_deletes_are_dropped_and_the_others_kept():
    queue = ReleaseQueue(hold=60)
    queue.add(ALICE, 1)
    queue.add(BOB, 2)
    queue.take(carrier=None, everything=False)
    queue.add(ALICE, 3)
    queue.discard("alice#1")
    assert _ids(queue.take()) == {"bob#1": [2]}


def test_requeued_deletes_are_held_again_not_lost():
    queue = ReleaseQueue(hold=60)
    queue.requeue(ALICE, [4, 5])
    assert queue.take(carrier="bob#1", everything=False) == {}
    assert _ids(queue.take()) == {"alice#1": [4, 5]}
