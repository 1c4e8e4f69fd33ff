"""Moves that do not block: ``ptr.move(w)`` sends one message and returns, and the reply is
awaited before anything that depends on it (see :mod:`syftzmq.client.moves`). Two moves from
different sources to one aggregator overlap; a failure surfaces at the moved pointer's next use
(or the next observation), once; a destination that was only frozen still gets the data."""

from __future__ import annotations

import os
import signal

import pytest
import torch

import syftzmq as sy
from support.processes import wait_for_exit, wait_until
from syftzmq.security.keys import read_key
from syftzmq.wire.liveness import Probe


def test_two_overlapping_moves_then_an_average_equal_to_local(bob, alice, charlie):
    torch.manual_seed(0)
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    on_bob, on_alice = a.send(bob) * 2 + 1, b.send(alice) * 2 + 1   # computed where they are
    assert len(bob._objects) == 1 and len(alice._objects) == 1      # temporaries' deletes left
    before = sy.stats()
    on_bob.move(charlie)
    on_alice.move(charlie)
    moved = sy.stats() - before
    assert (moved.messages_sent, moved.round_trips) == (2, 0)       # both in flight at once
    assert on_bob.location == charlie and on_alice.location == charlie
    average = ((on_bob + on_alice) / 2).get()
    assert torch.allclose(average, (a * 2 + 1 + b * 2 + 1) / 2)
    assert (sy.stats() - before).round_trips == 2                   # one wait for both, one get
    assert bob._objects == {} and alice._objects == {}
    assert set(charlie._objects) == {on_bob.id_at_location, on_alice.id_at_location}
    del on_bob, on_alice


def _moved_to_a_killed_worker(data: torch.Tensor, source, victim):
    """A pointer to ``data`` on ``source``, moved to ``victim`` after it was killed (the move
    returns at once; nothing has waited for it yet)."""
    x = data.send(source)
    os.kill(victim.process.pid, signal.SIGKILL)
    assert wait_for_exit(victim.process.pid, 5)
    x.move(victim)
    return x


def test_a_move_to_a_killed_destination_raises_at_the_next_observation(victim, bob,
                                                                       short_timeout):
    data = torch.arange(6.0)
    x = _moved_to_a_killed_worker(data, bob, victim)
    assert x.location == victim                      # nothing waited: the pointer names victim
    doubled = x * 2                                  # nor here: victim would hold it for the move
    with pytest.raises(sy.WorkerUnavailable) as caught:
        doubled.get()
    assert caught.value.worker == "victim"
    assert x.location == bob                         # back where the data is
    assert torch.equal((x * 2).get(), data * 2)      # raised once; the pointer works
    assert list(bob._objects) == [x.id_at_location]
    assert torch.equal(x.get(), data)


def test_a_failed_move_nobody_uses_surfaces_at_the_next_observation_once(victim, bob,
                                                                          short_timeout):
    data = torch.ones(3)
    x = _moved_to_a_killed_worker(data, bob, victim)
    with pytest.raises(sy.WorkerUnavailable, match="victim"):
        bob.ping()                                   # an observation of anything
    assert bob.ping()["ref"].id == "bob"             # once: the next one is answered
    assert torch.equal(x.get(), data)                # the data stayed where it was


def test_a_pointer_dropped_while_its_move_is_in_flight_leaves_nothing_anywhere(bob, alice):
    x = torch.ones(5).send(bob)
    bob.ping()
    x.move(alice)
    del x                                            # its deletes wait for the move's reply
    assert bob._objects == {} and alice._objects == {}


def test_a_move_to_a_destination_frozen_longer_than_the_liveness_deadline_completes_after_it_thaws(
        victim, bob, short_timeout):
    """The source waits for the frozen destination for the liveness deadline and gives up,
    keeping the data; once the destination is thawed, the pointer's next use finds it alive
    and moves the data again: slowness is not death."""
    data = torch.arange(8.0) * 3
    x = data.send(bob)
    assert victim._objects == {}
    watcher = Probe(sy.default_session().context, "watcher#1", bob.ref.incarnation,
                    bob.ref.liveness, read_key(sy.default_session().cluster_key_file()))

    def bob_awaits_peers() -> int:
        watcher.begin(first_in=0)
        watcher.send()
        wait_until(lambda: (watcher.read(), watcher.answered)[1], 10, "bob's liveness answer")
        return watcher.last_answer["awaiting_peers"]

    os.kill(victim.process.pid, signal.SIGSTOP)
    try:
        x.move(victim)
        wait_until(lambda: bob_awaits_peers() > 0, 10, "bob waiting for the frozen victim")
        wait_until(lambda: bob_awaits_peers() == 0, 20, "bob giving up on the frozen victim")
    finally:
        os.kill(victim.process.pid, signal.SIGCONT)
        watcher.close()
    assert torch.equal((x + 1).get(), data + 1)      # awaits the move: done after all
    assert x.location == victim
    assert bob._objects == {}
    assert list(victim._objects) == [x.id_at_location]   # no copy of the first attempt left
    assert torch.equal(x.get(), data)
