"""Deletes and ownership hand-offs wait for a message to ride on, and every observation that
could see them still does (syftzmq/client/releases.py, syftzmq/worker/peers.py).

The hold is made a minute here (``SYFTZMQ_LINGER_MS`` for the workers, the queue's ``hold`` for
the client), so nothing leaves on its own during a test: what these tests see is what rides.
"""

from __future__ import annotations

import pytest
import torch

import syftzmq as sy
from syftzmq.client.launcher import spawn_worker
from syftzmq.security.keys import write_key_file

MINUTE_MS = "60000"


@pytest.fixture
def held_client_deletes():
    """The client holds deletes for workers it is not messaging for a minute."""
    releases = sy.default_session()._releases
    before = releases.hold
    releases.hold = 60.0
    yield
    releases.hold = before


@pytest.fixture
def holding_pair(hook, tmp_path, monkeypatch):
    """Two workers of their own (data ``low``, chain holder ``high``) whose held hand-offs
    never leave on their own during the test."""
    key_file = str(tmp_path / "pair.key")
    write_key_file(key_file)
    monkeypatch.setenv("SYFTZMQ_LINGER_MS", MINUTE_MS)  # read by the workers at start
    processes = [spawn_worker(name, key_file=key_file, log_level="ERROR")
                 for name in ("low", "high")]
    session = sy.default_session()
    workers = [sy.Worker(hook, id=p.id, address=p.endpoint, key_file=key_file) for p in processes]
    try:
        yield workers
    finally:
        for worker, process in zip(workers, processes):
            session.forget(worker.ref)
            process.stop()


def _received(worker) -> int:
    """Messages ``worker`` has read so far, counting the ping that asks, less the lease
    renewals that came alone (they come on a timer: the first from a chain holder right after
    it stores a pointer, then every third of a lease, at any moment of a test)."""
    stats = worker.ping()
    return stats["messages"] - stats["lone_renewals"]


def test_a_chain_hop_hands_on_pointers_without_a_message_of_its_own(holding_pair,
                                                                     held_client_deletes):
    """Each ``(chain + 1).get()`` returns the next hop's pointer; the middle worker's hand-off
    (FORK) to the data's worker rides on the next flush, and the client's delete of that
    pointer waits for a message to the data's worker: one message per step reaches it."""
    low, high = holding_pair
    chain = torch.ones(4).send(low).send(high)
    steps = 5
    before = _received(low)
    for step in range(steps):
        middle = (chain + step).get()               # a pointer to a result on low
        assert middle.location.id == "low"
        del middle                                  # its delete is held
    assert _received(low) - before == steps + 1     # the flushes, and the second ping
    # a store listing of low sees every delete: the held hand-offs reach it first
    assert low.object_count() == 1
    assert torch.equal(chain.get().get(), torch.ones(4))


def test_a_pointer_handed_on_by_a_held_fork_is_usable_at_once(holding_pair):
    """The client uses the handed-on pointer at the data's worker before the hand-off left the
    middle worker: the value is right, and the late hand-off changes nothing."""
    low, high = holding_pair
    chain = torch.tensor([1.0, 2.0]).send(low).send(high)
    middle = (chain * 3).get()
    assert torch.equal((middle + 1).get(), torch.tensor([4.0, 7.0]))
    assert torch.equal(middle.get(), torch.tensor([3.0, 6.0]))
    assert low.object_count() == 1
    del chain


def test_held_deletes_leave_for_a_store_listing_elsewhere(bob, alice, held_client_deletes):
    """A delete the client holds for alice (it messages only bob) cascades down alice's chain
    to bob: bob's store listing sees it, so the held delete must leave for that listing."""
    start = bob.object_count()
    x = torch.ones(3).send(bob)
    on_alice = x.send(alice)                        # alice holds the chain to bob's tensor
    assert bob.object_count() == start + 1

    def messages_for_one_step() -> int:
        sent = sy.stats().snapshot()
        assert torch.equal((torch.ones(2).send(bob) + 1).get(), torch.full((2,), 2.0))
        return (sy.stats() - sent).messages_sent

    plain = messages_for_one_step()
    del on_alice                                    # held: the client messages only bob
    assert messages_for_one_step() == plain         # nothing left for alice on its own
    assert bob.object_count() == start             # alice's cascade reached bob first
    assert alice.object_count() == 0


def test_a_store_listing_waits_for_a_hand_off_held_past_other_answers(holding_pair):
    """The client learns of a hand-off from the answer that brings the handed-on pointer, and
    counts it in flight until a complete flush of the holder: an answer that flushes nothing
    in between (a ping) does not make a later store listing miss it."""
    low, high = holding_pair
    chain = torch.ones(4).send(low).send(high)
    middle = (chain + 1).get()                      # FORK held at high, nothing to ride on
    high.ping()                                     # an answer: the FORK is still held
    del middle                                      # low defers the delete until the FORK
    assert low.object_count() == 1                  # the listing flushed high completely
    del chain
