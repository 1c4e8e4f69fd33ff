"""State the client session keeps about workers shrinks when its reason goes away: the chain
holders, the gradients it cannot infer, the incarnations it stopped talking to, and the workers
that missed a deadline."""

from __future__ import annotations

import gc
import os
import signal
import socket

import pytest
import torch

import syftzmq as sy
from support.processes import wait_until
from syftzmq.client.connections import GoneIncarnations
from syftzmq.core.refs import WorkerRef


def _holders() -> set[str]:
    return sy.default_session()._chains.incarnations()


def _released_and_observed(worker) -> None:
    """Let dead pointers' deletes leave: they ride on the next observation."""
    gc.collect()
    worker.object_count()


def test_a_chain_holder_stops_being_one_when_no_chain_of_ours_is_stored_there(bob, alice):
    chain = torch.ones(2).send(alice).send(bob)
    assert _holders() == {bob.ref.incarnation}
    plain = torch.ones(2).send(bob)
    y = chain + 1                                # bob forwards it and stores a pointer
    z = plain * 2                                # plain data: no pointer stored
    session = sy.default_session()
    assert session._chains.is_chain(bob.ref.incarnation, y.id_at_location)
    assert not session._chains.is_chain(bob.ref.incarnation, z.id_at_location)
    del chain
    _released_and_observed(bob)
    assert _holders() == {bob.ref.incarnation}   # y is still a pointer stored on bob
    middle = y.get()                             # y's record left bob: nothing of ours there
    assert bob.ref.incarnation not in _holders()
    assert torch.equal(middle.get(), torch.full((2,), 2.0))
    assert torch.equal(z.get(), torch.full((2,), 2.0))
    assert _holders() == set()
    del plain
    _released_and_observed(bob)


def test_a_handed_on_chain_moves_the_holder_along(bob, alice, charlie):
    first = torch.arange(3.0).send(alice).send(bob)
    second = first.send(charlie)                   # bob's record now belongs to charlie's
    assert _holders() == {charlie.ref.incarnation}
    on_bob = second.get()                        # may itself be a pointer: bob holds again
    assert _holders() == {bob.ref.incarnation}
    on_alice = on_bob.get()
    assert torch.equal(on_alice.get(), torch.arange(3.0))
    assert _holders() == set()
    del first


def test_a_moved_chain_moves_its_holder(bob, alice, charlie):
    chain = torch.ones(2).send(alice).send(bob)
    chain.move(charlie)
    assert _holders() == {charlie.ref.incarnation}
    assert torch.equal(chain.get().get(), torch.ones(2))
    assert _holders() == set()


def test_uncertain_gradients_are_scoped_to_the_pointers_they_concern(bob, alice):
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True).send(bob)
    elsewhere = torch.ones(2, requires_grad=True).send(alice)
    y = x[x > 0]                         # a data-dependent shape: its mirror comes from bob
    y.sum().backward()                   # ... and cuts the local graph there
    assert x._grad_unknown and y._grad_unknown and not elsewhere._grad_unknown
    assert torch.equal(x.grad.get(), torch.tensor([1.0, 0.0, 1.0]))   # asked, and right
    assert y.grad is None                # not a leaf on bob, though its mirror is one

    fresh = torch.ones(3, requires_grad=True).send(bob)    # after the doubt: inferred again
    (fresh * 2).sum().backward()
    assert not fresh._grad_unknown
    before = sy.stats()
    grad = fresh.grad
    assert (sy.stats() - before).round_trips == 0
    assert torch.equal(grad.get(), torch.full((3,), 2.0))
    assert not hasattr(sy.default_session(), "grads_uncertain")  # nothing session-wide to reset
    del x, y, elsewhere


def test_forgotten_incarnations_are_remembered_only_while_a_pointer_names_one(victim):
    session = sy.default_session()
    gone = session._connections.gone
    x = torch.ones(2).send(victim)
    victim.shutdown()                            # forgotten: x's delete must not reopen it
    assert victim.ref.incarnation in gone
    for n in range(3 * GoneIncarnations.LIMIT):  # many workers come and go
        session.forget(WorkerRef("ghost", None, f"ghost#{n}"))
    assert len(gone) <= 2 * GoneIncarnations.LIMIT
    assert victim.ref.incarnation in gone        # x still names it
    queued = len(session._releases)
    del x
    gc.collect()
    assert len(session._releases) == queued      # its delete was dropped, not queued
    for n in range(3 * GoneIncarnations.LIMIT):
        session.forget(WorkerRef("ghost", None, f"ghost2#{n}"))
    assert victim.ref.incarnation not in gone    # nothing names it any more
    assert victim.ref.incarnation not in session._connections


def test_a_worker_that_missed_a_deadline_is_cleared_when_it_answers_or_is_forgotten(victim):
    session = sy.default_session()
    unresponsive = session._pending.unresponsive
    incarnation = victim.ref.incarnation
    pid = victim.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(sy.WorkerTimeout, match="victim"):
            victim.ping(timeout=0.3)
        assert incarnation in unresponsive
    finally:
        os.kill(pid, signal.SIGCONT)
    victim.ping()
    assert incarnation not in unresponsive
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(sy.WorkerTimeout, match="victim"):
            victim.ping(timeout=0.3)
        assert incarnation in unresponsive
        session.forget(victim.ref)
        assert incarnation not in unresponsive
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_failed_handshake_leaves_nothing_behind(hook):
    session = sy.default_session()
    with socket.socket() as s:                   # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    connections = set(session._connections)
    with pytest.raises(sy.WorkerUnavailable):
        sy.Worker(hook, id="nobody", address=address, timeout=0.3)
    assert set(session._connections) == connections
    assert not any(i.startswith("probe:") for i in session._pending.unresponsive
                   | session._pending.dirty)
