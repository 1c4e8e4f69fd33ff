"""The client's outbox (syftzmq/client/outbox.py) between several chain holders."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import torch

import syftzmq as sy
from support.processes import wait_for_exit


def test_interleaved_commands_to_two_chain_holders(bob, alice, charlie):
    """Two workers that both hold pointers (chains to charlie) with commands queued for each:
    sending to one releases the other's queue first, which must not bounce back forever."""
    on_charlie = [torch.ones(3).send(charlie), torch.ones(3).send(charlie)]
    chains = [on_charlie[0].send(bob), on_charlie[1].send(alice)]
    results = list(chains)
    for step in range(1, 5):
        results = [r + step for r in results]  # queued for bob, then for alice, alternately
    for result in results:
        middle = result.get()                   # a pointer on charlie: the ops reached the data
        assert torch.equal(middle.get(), torch.full((3,), 11.0))
    del on_charlie, chains, results


def test_commands_from_two_threads_all_arrive_in_each_threads_order(bob):
    """The outbox is shared by every thread of the client: nothing is lost or reordered
    within a thread (each thread adds to its own tensor, in place)."""
    counters = [torch.zeros(1).send(bob) for _ in range(2)]
    bob.ping()

    def bump(counter, steps):
        for step in range(steps):
            counter.mul_(2).add_(step % 3)   # order matters: a reordering changes the value

    threads = [threading.Thread(target=bump, args=(c, 300)) for c in counters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    expected = torch.zeros(1, dtype=torch.float32)
    for step in range(300):
        expected = expected * 2 + step % 3
    for counter in counters:
        assert torch.equal(counter.get(), expected)


def test_queued_commands_to_a_killed_worker_fail_the_next_observation(victim, short_timeout):
    """Commands still in the outbox when their worker dies: the next observation raises
    WorkerUnavailable naming it within the deadline; nothing hangs."""
    x = torch.ones(3).send(victim)
    victim.ping()
    os.kill(victim.process.pid, signal.SIGKILL)
    assert wait_for_exit(victim.process.pid, 10)
    y = x + 1                                  # queued: nothing can tell it is lost yet
    start = time.monotonic()
    with pytest.raises(sy.WorkerUnavailable, match="victim"):
        y.get()
    assert time.monotonic() - start < short_timeout + 2


def test_a_command_with_large_results_leaves_before_the_call_returns(bob):
    """A command that gives the worker real work (here a result of ``BUSY_ELEMENTS``
    elements) does not wait in the outbox: the worker starts on it while the client goes on.
    Small commands queued before it leave with it, in order."""
    from syftzmq.client.outbox import BUSY_ELEMENTS
    session = bob.session
    x = torch.arange(BUSY_ELEMENTS, dtype=torch.float32).send(bob)
    small = torch.zeros(2).send(bob)
    bob.ping()
    sent = session.stats.messages_sent
    small.add_(3)               # small: may wait for the linger
    y = x * 2                   # large: it leaves now, carrying ``add_`` before it
    assert session.stats.messages_sent > sent
    assert bob.ref.incarnation not in session._sender.outbox  # nothing waits after it
    y = y + small.sum()
    expected = torch.arange(BUSY_ELEMENTS, dtype=torch.float32) * 2 + 6
    assert torch.equal(y.get(), expected)
    assert torch.equal(small.get(), torch.full((2,), 3.0))
