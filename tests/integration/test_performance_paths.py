"""Behaviour of the fast paths (their speed is measured by scripts/bench.py,
never asserted here): piggy-backed deletes, count-only observations, worker thread counts."""

from __future__ import annotations

import gc

import pytest
import torch

import syftzmq as sy
from syftzmq.client.launcher import local_worker_threads, spawn_worker
from syftzmq.settings import Settings

THREADS_ENV = "SYFTZMQ_WORKER_THREADS"

from support.processes import wait_until


def test_deletes_ride_on_the_next_command_and_still_free_objects(bob):
    x = torch.zeros(4).send(bob)
    before = sy.stats()
    for _ in range(200):
        x = x + 1  # each step kills the previous temporary
    spent = sy.stats() - before
    # commands leave in batches (the outbox), and deletes never cost a message of their own
    assert spent.messages_sent <= 100, spent
    assert bob.object_count() == 1    # 199 temporaries freed on the worker
    assert torch.equal(x.get(), torch.full((4,), 200.0))
    assert bob.object_count() == 0


def test_queued_commands_leave_together_with_the_observation(bob):
    x = torch.ones(4).send(bob)
    bob.ping()
    before = sy.stats()
    y = (x + x) * 3
    assert torch.equal(y.get(), torch.full((4,), 6.0))
    spent = sy.stats() - before
    assert (spent.messages_sent, spent.round_trips) == (1, 1), spent  # the get carried both ops
    del x


def test_a_queued_command_runs_without_any_later_call(bob):
    """The outbox's sweeper sends what waits, so remote work starts while the client idles."""
    x = torch.zeros(4).send(bob)
    bob.ping()
    before = sy.stats()
    x.add_(5)
    # nothing but the sweeper thread can send it now
    wait_until(lambda: (sy.stats() - before).messages_sent == 1, 10, "the queued command left")
    assert torch.equal(x.get(), torch.full((4,), 5.0))


def test_a_local_tensor_argument_is_captured_at_the_call(bob):
    """A queued command must not see later in-place changes of a local argument."""
    x = torch.zeros(3).send(bob)
    bob.ping()
    local = torch.ones(3)
    y = x + local
    local.add_(100)
    assert torch.equal(y.get(), torch.ones(3))
    del x


def test_a_delete_rides_on_a_command_that_needs_another_object(bob):
    a = torch.ones(3).send(bob)
    b = (a * 2) + 0  # the temporary a * 2 dies here: its delete rides on the next command
    c = b + a
    assert bob.object_count() == 3
    assert torch.equal(c.get(), torch.full((3,), 3.0))
    del a, b
    gc.collect()
    assert bob.object_count() == 0


def test_deletes_for_other_workers_still_go_out(bob, alice):
    x = torch.ones(2).send(bob)
    y = torch.ones(2).send(alice)
    del x
    gc.collect()
    z = y + 1  # bob's delete cannot ride on alice's command: it travels on its own
    assert bob.object_count() == 0
    assert alice.object_count() == 2
    del y, z


def test_object_count_matches_the_snapshot(bob):
    kept = [torch.full((1000,), float(i)).send(bob) for i in range(5)]
    assert bob.object_count() == len(bob._objects) == 5
    assert "#objects:5" in repr(bob)
    del kept


def test_local_workers_default_to_one_thread(bob):
    assert bob.ping()["threads"] == 1
    assert local_worker_threads() == 1
    assert Settings.from_environ({THREADS_ENV: "2"}).spawned_worker_threads == 2


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_flag_is_applied(hook, threads):
    worker = sy.VirtualWorker(hook, id=f"threads{threads}", threads=threads)
    try:
        assert worker.ping()["threads"] == threads
    finally:
        worker.shutdown()


def test_a_bad_thread_count_refuses_to_start():
    with pytest.raises(sy.WorkerUnavailable):
        spawn_worker("nothreads", threads=0, timeout=20)


def test_a_delete_elsewhere_costs_no_round_trip_but_listings_see_its_cascade(bob, alice):
    y = torch.ones(2).send(alice)
    doomed = torch.ones(2).send(bob).send(alice)  # alice holds a pointer to bob's data
    ok = torch.ones(2).send(bob)
    doomed_bob_count = bob.object_count()
    assert doomed_bob_count == 2
    del doomed  # a DEL to alice, which cascades to bob
    gc.collect()
    before = sy.stats()
    assert torch.equal((ok + 1).get(), torch.full((2,), 2.0))
    assert (sy.stats() - before).round_trips == 1  # no flush of alice for a delete
    assert bob.object_count() == 1  # a listing waits for alice's cascade to reach bob
    assert alice.object_count() == 1
    del y, ok


def test_deletes_carried_by_an_observation_that_raises_first_are_not_lost(bob, alice):
    broken = torch.linalg.cholesky(torch.tensor([[1.0, 2.0], [2.0, 1.0]]).send(bob))
    x = torch.ones(2).send(alice)
    temporary = x + 1
    del temporary  # its delete will ride on the next message to alice
    gc.collect()
    with pytest.raises(sy.RemoteError, match="positive-definite"):
        x.get()  # flushing bob first raises bob's failure: the GET never leaves
    assert alice.object_count() == 1  # the temporary's delete was not lost
    del x, broken
