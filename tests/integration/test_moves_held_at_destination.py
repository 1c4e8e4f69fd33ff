"""A message to a move's destination does not wait here for the move: it names the move, and
the destination holds it until the move's objects came from the source (see
:mod:`syftzmq.worker.move_arrivals`). Observations still reflect the completed move, and a
move that fails still raises at the next observation, without anything waiting for it."""

from __future__ import annotations

import os
import signal

import pytest
import torch

import syftzmq as sy
from support.processes import frozen, wait_for_exit, wait_until
from syftzmq.security.keys import read_key
from syftzmq.wire.liveness import Probe


def _handled(worker) -> int:
    """How many messages ``worker``'s loop handled, asked of its liveness socket (which
    answers whatever the loop is doing, and is no observation: it settles nothing)."""
    session = sy.default_session()
    watcher = Probe(session.context, "watcher#held", worker.ref.incarnation,
                    worker.ref.liveness, read_key(session.cluster_key_file()))
    try:
        watcher.begin(first_in=0)
        watcher.send()
        wait_until(lambda: (watcher.read(), watcher.answered)[1], 10, "a liveness answer")
        return watcher.last_answer["handled"]
    finally:
        watcher.close()


def test_an_op_right_after_a_move_is_held_at_the_destination_and_right(victim, charlie):
    data = torch.arange(6.0)
    x = data.send(victim)
    victim.ping()
    before_waited = charlie.ping()["moves_waited"]
    with frozen(victim):                              # the source cannot send the objects yet
        x.move(charlie)
        handled = _handled(charlie)
        start = sy.stats()
        y = x * 3 + 1                                 # two commands for charlie
        z = y.sum()
        assert (sy.stats() - start).round_trips == 0  # nothing waited for the move here
        wait_until(lambda: _handled(charlie) > handled, 10, "charlie reading the commands")
    assert torch.equal(y.get(), data * 3 + 1)         # the move is done, and the ops after it
    assert torch.equal(z.get(), (data * 3 + 1).sum())
    assert charlie.ping()["moves_waited"] > before_waited   # they were held, not run early
    assert x.location == charlie and victim._objects == {}
    assert torch.equal(x.get(), data)


def test_a_get_at_the_destination_reflects_the_move_and_the_ops_before_it(bob, alice, charlie):
    a, b = torch.randn(5, 5), torch.randn(5, 5)
    on_bob, on_alice = a.send(bob), b.send(alice)
    on_bob.move(charlie)
    on_alice.move(charlie)
    total = on_bob @ on_alice + on_bob
    assert torch.allclose(total.get(), a @ b + a)     # one observation, sent before the replies
    assert bob._objects == {} and alice._objects == {}
    assert set(charlie._objects) == {on_bob.id_at_location, on_alice.id_at_location}
    on_bob.move(alice)                                # moved on again, from where it arrived
    on_alice.move(alice)
    assert torch.allclose((on_bob + on_alice).get(), a + b)
    assert on_bob.location == alice and charlie._objects == {}


def test_a_move_from_a_killed_source_raises_at_the_next_observation_and_nothing_hangs(
        victim, charlie, short_timeout):
    x = torch.ones(4).send(victim)
    victim.ping()
    os.kill(victim.process.pid, signal.SIGKILL)
    assert wait_for_exit(victim.process.pid, 5)
    x.move(charlie)
    doubled = x * 2                                   # charlie holds it for the move
    with pytest.raises(sy.WorkerUnavailable) as caught:
        doubled.get()
    assert caught.value.worker == "victim"
    # charlie was told the move is abandoned: what waited ran (and failed), nothing waits
    kept = torch.arange(3.0).send(charlie)
    assert torch.equal((kept + 1).get(), torch.arange(3.0) + 1)
    assert charlie.ping()["ref"].id == "charlie"
    del doubled, caught


def test_a_failed_move_unblocks_the_destination_for_later_messages(bob, charlie):
    """The source refuses the move (its object is gone): the destination, holding the op that
    named it, is told, and serves what comes next."""
    x = torch.ones(3).send(bob)
    bob.ping()
    bob.clear_objects()                               # the target is gone behind the pointer
    x.move(charlie)
    y = x + 1
    with pytest.raises(sy.SyftZmqError):
        y.get()
    assert torch.equal((torch.ones(2).send(charlie) * 5).get(), torch.full((2,), 5.0))
    del x, y
