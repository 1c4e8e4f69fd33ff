"""``kill -9`` a worker at the worst moment: the client raises WorkerUnavailable naming it within
the deadline, never hangs, other workers keep serving, and a failed move leaves the data where
it was. A worker restarted under the same id is a new incarnation."""

from __future__ import annotations

import gc
import os
import signal
import socket
import threading
import time

import pytest
import torch

import syftzmq as sy
from support.hostile import RawPeer
from support.processes import wait_for_exit
from syftzmq.core.ids import new_id
from syftzmq.client.launcher import spawn_worker
from syftzmq.core.messages import GET, STORE, message
from syftzmq.wire.liveness import timing

GRACE = timing(2.0)[1]  # the short deadline's grace: two probe intervals


def keep_busy(pointer, products: int = 40):
    """Queue matrix products on ``pointer``'s worker so it cannot answer for a while; results
    are dropped as they come (the worker deletes them in order), so memory stays small."""
    for _ in range(products):
        pointer @ pointer
    return pointer


def big(worker):
    return torch.randn(1200, 1200).send(worker)


def kill_once_waiting(pid: int) -> threading.Thread:
    """SIGKILL ``pid`` as soon as this client has sent its next blocking request."""
    stats = sy.default_session().stats
    start = stats.round_trips

    def run() -> None:
        deadline = time.monotonic() + 30
        while stats.round_trips == start and time.monotonic() < deadline:
            time.sleep(0.001)  # polling a counter, with a deadline
        os.kill(pid, signal.SIGKILL)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_get_pending_on_a_killed_worker_raises_within_the_default_deadline(victim, bob):
    assert sy.default_session().liveness_timeout == 5.0 and sy.default_session().timeout is None
    busy = keep_busy(big(victim))
    killer = kill_once_waiting(victim.process.pid)
    start = time.monotonic()
    with pytest.raises(sy.WorkerUnavailable) as caught:
        busy.get()
    assert time.monotonic() - start < 5.0 + 1.0
    assert caught.value.worker == "victim" and "'victim'" in str(caught.value)
    killer.join(5)
    assert wait_for_exit(victim.process.pid, 5)
    assert torch.equal((torch.ones(2).send(bob) + 1).get(), torch.full((2,), 2.0))


def test_move_to_a_killed_worker_leaves_the_data_at_the_source(victim, bob, short_timeout):
    """bob sends the data to the destination, which freezes and is killed before it confirms:
    bob's wait times out, bob keeps the data, and the client hears who is gone — at the next
    observation (the move and the use return at once: the destination would hold the use)."""
    assert victim._objects == {}              # nothing pending there: the move is all that waits
    x = torch.arange(5.0).send(bob)
    os.kill(victim.process.pid, signal.SIGSTOP)
    x.move(victim)
    assert x.location == victim                               # named at once
    killer = kill_once_waiting(victim.process.pid)
    start = time.monotonic()
    with pytest.raises(sy.WorkerUnavailable) as caught:
        (x + 1).get()                                         # the observation awaits the move
    # bob's deadline (or the client's own), then the rule's grace for the destination to prove
    # it was only frozen
    assert time.monotonic() - start < short_timeout + GRACE + 1.0
    assert caught.value.worker == "victim" and "'victim'" in str(caught.value)
    killer.join(5)
    assert x.location == bob                                  # the pointer did not follow
    assert torch.equal(x.get(), torch.arange(5.0))            # and the data is still there


def test_move_from_a_killed_worker_raises_and_the_destination_keeps_serving(victim, alice,
                                                                            short_timeout):
    busy = keep_busy(big(victim))
    x = torch.arange(3.0).send(victim)
    x.move(alice)
    killer = kill_once_waiting(victim.process.pid)
    doubled = x * 2                                           # alice would hold it for the move
    with pytest.raises(sy.WorkerUnavailable) as caught:
        doubled.get()                                         # awaits the move: its source dies
    assert caught.value.worker == "victim"
    killer.join(5)
    assert x.location.id == "victim"                          # in doubt, back at the source
    # what waited there ran, and failed: its result is the failure, until its pointer dies
    assert set(alice._objects) == {doubled.id_at_location}
    del doubled, caught  # (the traceback holds the pointer, in a reference cycle)
    gc.collect()
    assert alice._objects == {}
    assert torch.equal((torch.ones(2).send(alice) * 3).get(), torch.full((2,), 3.0))
    del busy, x


def test_chain_ending_at_a_killed_worker_names_it(victim, alice, short_timeout):
    """alice forwards into the dead worker: alice's flush times out and says who is gone."""
    p2p = torch.ones(3).send(victim).send(alice)
    data = big(victim).send(alice)
    assert len(victim._objects) == 2  # settles everything: the client has nothing pending there
    busy = keep_busy(data)            # sent to alice, forwarded by alice to the victim
    y = p2p * 2
    killer = kill_once_waiting(victim.process.pid)
    start = time.monotonic()
    with pytest.raises(sy.WorkerUnavailable) as caught:
        y.get()
    assert time.monotonic() - start < short_timeout + 1.0
    assert caught.value.worker == "victim" and "noticed by 'alice'" in str(caught.value)
    killer.join(5)
    del p2p, y, busy, data, caught   # the traceback holds y
    gc.collect()                     # ... in a reference cycle
    assert alice._objects == {}                  # alice keeps serving, and frees her side
    assert torch.equal((torch.ones(1).send(alice) + 1).get(), torch.full((1,), 2.0))


def test_chain_through_a_killed_worker_and_its_orphans_are_freed(hook, victim, short_timeout):
    """The middle of a chain dies: the client is told, and the data it owned on the next hop
    is freed once its lease runs out."""
    tail = sy.VirtualWorker(hook, id="tail", lease_seconds=1.0)
    try:
        p2p = torch.ones(3).send(tail).send(victim)
        y = p2p * 2
        assert len(tail._objects) == 2
        os.kill(victim.process.pid, signal.SIGKILL)
        assert wait_for_exit(victim.process.pid, 5)
        with pytest.raises(sy.WorkerUnavailable) as caught:
            y.get()
        assert caught.value.worker == "victim"
        deadline = time.monotonic() + 20
        while tail._objects and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tail._objects == {}, "objects owned by the dead middle worker were not freed"
        assert tail.ping()["expired_objects"] == 2
    finally:
        tail.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_restarted_worker_is_a_new_incarnation(hook):
    key_file = sy.default_session().cluster_key_file()
    address = f"tcp://127.0.0.1:{_free_port()}"
    first = spawn_worker("phoenix", bind=address, key_file=key_file, log_level="ERROR")
    second = None
    try:
        old = sy.Worker(hook, id="phoenix", address=address, key_file=key_file)
        x = torch.arange(3.0).send(old)
        os.kill(first.pid, signal.SIGKILL)
        assert wait_for_exit(first.pid, 5)
        y = x * 2                       # queued for the dead incarnation
        second = spawn_worker("phoenix", bind=address, key_file=key_file, log_level="ERROR")
        new = sy.Worker(hook, id="phoenix", address=address, key_file=key_file)
        assert new.ref.incarnation != old.ref.incarnation
        with pytest.raises(sy.StaleIncarnationError, match="restarted"):
            x.get()
        with pytest.raises(sy.StaleIncarnationError, match="restarted"):
            x + 1
        del x, y
        assert new._objects == {}                         # nothing meant for the old one landed
        z = torch.ones(2).send(new)
        assert torch.equal(z.get(), torch.ones(2))

        # A client that missed the restart: the worker itself refuses what names the old one.
        raw = RawPeer(address, b"unaware-client")
        try:
            raw.send(message(STORE, id=new_id(), obj=torch.ones(1), to=old.ref.incarnation))
            answer = raw.ask(message(GET, req=new_id(), id=1, to=old.ref.incarnation))
            assert answer["error"].type == "syftzmq.errors.StaleIncarnationError"
            assert "restarted" in answer["error"].message
            assert raw.stats()["stale"] >= 2
        finally:
            raw.close()
        assert new._objects == {}
        sy.default_session().forget(old.ref)
        sy.default_session().forget(new.ref)
    finally:
        first.stop()
        if second is not None:
            second.stop()
