"""A worker hands a tensor it received through shared memory on without copying it
(see syftzmq/wire/shm_map.py and syftzmq/worker/handover.py).

What a user can tell: moves and gets return exactly the data; nothing another object on the
source shares is ever handed over (a write on one side never shows on the other); a process
killed mid-hand-over leaves no segment and loses nothing a copy would not have lost. Whether
pages were lent or copied is read from each worker's ``shm_lent`` counter (its PING answer).
"""

from __future__ import annotations

import gc
import os
import signal

import pytest
import torch

import syftzmq as sy
from support.hostile import RawPeer
from support.processes import EXIT_DEADLINE, kill_stopped, wait_for_exit, wait_until
from syftzmq.client.handles import default_session
from syftzmq.wire import shm

pytestmark = pytest.mark.skipif(not shm.enabled(), reason="no /dev/shm on this host")

MiB = 1 << 20


def _lent(worker) -> int:
    return worker.ping()["shm_lent"]


def _lent_while_moving(worker) -> int:
    """How many times ``worker`` lent pages, asked by a peer of its own: this session's ping
    would first wait for the move in flight."""
    raw = RawPeer(worker.address, b"lent-watcher")
    try:
        return raw.stats()["shm_lent"]
    finally:
        raw.close()


def _leftovers(*workers) -> list[str]:
    return shm.segments_of([os.getpid()] + [w.process.pid for w in workers])


def _wait_for_no_new_leftovers(before: set[str], *workers) -> None:
    """No segment of this test is left, once the sweeps after a kill have run (this client's
    segments from earlier tests, for workers gone since, expire on their own clock)."""
    wait_until(lambda: not set(_leftovers(*workers)) - before, 10,
               f"segments left behind: {sorted(set(_leftovers(*workers)) - before)}")


def test_a_received_tensor_is_moved_and_fetched_by_its_pages(bob, alice):
    x = torch.randn(4, MiB)  # 16 MiB, two-dimensional: rebuilt without a base view
    p = x.send(bob)
    lent_bob, lent_alice = _lent(bob), _lent(alice)
    p.move(alice)
    assert _lent(bob) == lent_bob + 1, "bob should have lent the pages, not copied them"
    assert bob.object_count() == 0
    y = p.get()
    assert _lent(alice) == lent_alice + 1
    assert torch.equal(x, y)
    y.add_(1)  # the client's tensor is its own now
    assert torch.equal(y, x + 1)
    assert _leftovers(bob, alice) == []


def test_a_view_stored_on_the_source_makes_the_move_copy(bob, alice):
    x = torch.arange(float(4 * MiB))
    p = x.send(bob)
    view = p[: MiB]  # on bob: a view of p's storage, under another id
    lent = _lent(bob)
    p.move(alice)
    assert _lent(bob) == lent, "storage shared with another object must not be lent"
    p.add_(1)  # on alice
    assert torch.equal(view.get(), x[: MiB]), "the source's view saw the destination's write"
    assert torch.equal(p.get(), x + 1)


def test_a_view_stored_on_the_worker_makes_the_get_copy(bob):
    x = torch.arange(float(4 * MiB))
    p = x.send(bob)
    view = p[: MiB]
    lent = _lent(bob)
    y = p.get()
    assert _lent(bob) == lent
    y.mul_(0)
    assert torch.equal(view.get(), x[: MiB]), "the worker's view saw the client's write"


def test_a_tensor_computed_on_the_worker_is_copied(bob, alice):
    x = torch.randn(2 * MiB)
    computed = x.send(bob) + 0  # bob's own memory, not a received segment
    lent = _lent(bob)
    computed.move(alice)
    assert _lent(bob) == lent
    assert torch.equal(computed.get(), x)


def test_killing_the_lender_mid_move_leaves_nothing_behind(hook):
    source = sy.VirtualWorker(hook, id="lender")
    dest = sy.VirtualWorker(hook, id="lent_to")
    session = default_session()
    before = set(_leftovers(source, dest))
    p = torch.randn(4 * MiB).send(source)
    lent = _lent(source)
    os.kill(dest.process.pid, signal.SIGSTOP)
    p.move(dest)                                   # returns at once; its reply is awaited later
    try:
        wait_until(lambda: _lent_while_moving(source) == lent + 1, 10, "the source lent the pages")
        os.kill(source.process.pid, signal.SIGKILL)
        # kill returns while the lender is still exiting, and until its files are closed its
        # descriptors can still be opened (the pages are intact: a destination that got there
        # first holds a correct copy, which the pointer, in doubt, deletes when it dies)
        assert wait_for_exit(source.process.pid, EXIT_DEADLINE)
    finally:
        os.kill(dest.process.pid, signal.SIGCONT)
    with pytest.raises(sy.WorkerUnavailable):      # the move's failure, at the next observation
        (p + 0).get()
    gc.collect()  # the sum's pointer dies (the traceback held it in a cycle): its failure goes
    assert dest.object_count() == 0, "the destination cannot map a dead lender's pages"
    source.process.stop()
    session.forget(source.ref)
    _wait_for_no_new_leftovers(before, source, dest)
    dest.shutdown()


def test_killing_the_destination_mid_move_keeps_the_data_on_the_source(hook):
    source = sy.VirtualWorker(hook, id="keeper")
    dest = sy.VirtualWorker(hook, id="doomed")
    session = default_session()
    before = set(_leftovers(source, dest))
    x = torch.randn(4 * MiB)
    p = x.send(source)
    lent = _lent(source)
    os.kill(dest.process.pid, signal.SIGSTOP)
    p.move(dest)                                   # returns at once; its reply is awaited later
    try:
        wait_until(lambda: _lent_while_moving(source) == lent + 1, 10, "the source lent the pages")
    finally:
        kill_stopped(dest)
    with pytest.raises(sy.WorkerUnavailable):      # the move's failure, at the next observation
        (p + 0).get()
    dest.process.stop()
    session.forget(dest.ref)
    assert torch.equal(p.get(), x), "a failed move keeps the data where it was"
    _wait_for_no_new_leftovers(before, source, dest)
    source.shutdown()
