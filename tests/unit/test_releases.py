"""The release queue (syftzmq/client/releases.py), without workers: batching, the carrier,
re-queueing what could not leave."""

from __future__ import annotations

import pytest
import zmq

from syftzmq.client.releases import ReleaseQueue
from syftzmq.core.messages import RELEASES
from syftzmq.core.refs import WorkerRef
from syftzmq.errors import WorkerUnavailable

BOB = WorkerRef("bob", "tcp://127.0.0.1:1", "bob#1")
ALICE = WorkerRef("alice", "tcp://127.0.0.1:2", "alice#1")
CAROL = WorkerRef("carol", "tcp://127.0.0.1:3", "carol#1")


def _queue(*entries) -> ReleaseQueue:
    queue = ReleaseQueue()
    for location, object_id in entries:
        queue.add(location, object_id)
    return queue


def test_take_groups_by_worker_in_order_of_death():
    queue = _queue((BOB, 1), (ALICE, 2), (BOB, 3))
    batches = queue.take()
    assert {inc: ids for inc, (_, ids) in batches.items()} == {"bob#1": [1, 3], "alice#1": [2]}
    assert batches["bob#1"][0] is BOB
    assert not queue and queue.take() == {}


def test_the_carriers_worker_gets_its_deletes_on_the_carrier_and_the_others_a_del():
    queue = _queue((BOB, 1), (ALICE, 2), (BOB, 3))
    sent = []
    carrier_msg = {"kind": "get"}
    queue.send(queue.take(), lambda loc, ids: sent.append((loc.incarnation, ids)),
               carrier=(BOB, carrier_msg))
    assert carrier_msg[RELEASES] == [1, 3]
    assert sent == [("alice#1", [2])]
    assert not queue


@pytest.mark.parametrize("failure", [zmq.Again(), WorkerUnavailable("alice", None, "full")])
def test_deletes_that_cannot_leave_now_are_queued_again(failure):
    queue = _queue((ALICE, 2), (CAROL, 4), (ALICE, 5))
    sent = []

    def send(location, ids):
        if location.incarnation == "alice#1":
            raise failure
        sent.append((location.incarnation, ids))

    queue.send(queue.take(), send)
    assert sent == [("carol#1", [4])]                # one full worker fails nobody else
    assert {inc: ids for inc, (_, ids) in queue.take().items()} == {"alice#1": [2, 5]}


def test_an_unexpected_error_is_not_swallowed():
    queue = _queue((ALICE, 2))

    def send(location, ids):
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        queue.send(queue.take(), send)


def test_skipped_workers_lose_their_deletes():
    queue = _queue((BOB, 1), (ALICE, 2))
    sent = []
    queue.send(queue.take(), lambda loc, ids: sent.append(loc.incarnation),
               skip=lambda incarnation: incarnation == "bob#1")
    assert sent == ["alice#1"] and not queue


def test_requeue_and_discard():
    queue = _queue((BOB, 1), (ALICE, 2))
    queue.requeue(BOB, [7, 8])
    queue.discard("alice#1")
    assert len(queue) == 3
    assert {inc: ids for inc, (_, ids) in queue.take().items()} == {"bob#1": [1, 7, 8]}
