"""Segments a sender keeps and writes again for a later export (see syftzmq/wire/shm_spares.py,
"Kept segments").

What must hold, tried the way an unlucky user would: bytes still in use anywhere are never
written again — a fetched tensor the user keeps, an object a worker still stores, pages a
worker is handing over to a stopped peer, a segment whose receiver was stopped before it
mapped it, or killed then; every tensor reads back exactly what was sent. And a segment is
written again at all (else none of this is tested): once it is free, the next export of its
size takes it (named by its descriptor, ``fd-...``).
"""

from __future__ import annotations

import fcntl
import os
import signal

import pytest
import torch

from support.hostile import RawPeer
from support.processes import EXIT_DEADLINE, frozen, kill_stopped, wait_for_exit, wait_until
from syftzmq.client.handles import default_session
from syftzmq.errors import ProtocolError
from syftzmq.wire import shm, shm_spares

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(not shm.enabled(), reason="no /dev/shm on this host")]

MiB = 1 << 20
SIZE = 16 * MiB  # reusable (at least shm_spares.MIN), one part (below shm.PARALLEL_MIN)


def _distinct(seed: int) -> torch.Tensor:
    """A tensor of SIZE bytes unlike any other seed's (a reused page shows the wrong one)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(SIZE // 4, generator=generator)


def _free_references() -> list[str]:
    """The kept segments an export could write again now: claimed by their receiver and
    locked by no process (the test asks; it does not take them)."""
    free = []
    for spare in list(shm._spares._kept):
        if not shm_spares._claimed(spare):
            continue  # locking it now could make its receiver refuse it
        try:
            fcntl.flock(spare.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue
        fcntl.flock(spare.fd, fcntl.LOCK_UN)
        free.append(spare.reference)
    return free


def _kept_inodes() -> set[int]:
    """The kept segments, by inode: an export that wrote one again adds none."""
    return {spare.inode for spare in list(shm._spares._kept)}


def _a_free_segment(worker) -> None:
    """Leave a kept segment of SIZE free: sent, fetched back and dropped; the ping carries the
    get's confirmation, after which the worker unmaps its copy."""
    assert torch.equal(_distinct(-1).send(worker).get(), _distinct(-1))
    worker.ping()
    wait_until(lambda: _free_references(), 30, "a kept segment free to be written again")


def test_a_free_segment_is_written_again_and_reads_back_exactly(bob):
    for round_ in range(4):
        _a_free_segment(bob)
        before = _kept_inodes()
        x = _distinct(round_)
        assert torch.equal(x.send(bob).get(), x)
        assert _kept_inodes() <= before, "the free segment was not written again"


def test_what_the_user_keeps_is_never_written_again(bob):
    fetched, stored = [], []
    for round_ in range(4):
        _a_free_segment(bob)  # each round, something the next export may write again
        x = _distinct(10 + round_)
        fetched.append((x, x.send(bob).get()))  # the user keeps the fetched tensor
        _a_free_segment(bob)
        y = _distinct(20 + round_)
        stored.append((y, y.send(bob)))  # the worker keeps the object: the pointer lives
        bob.ping()
    for x, kept in fetched:
        assert torch.equal(kept, x)
    for y, pointer in stored:
        assert torch.equal(pointer.get(), y)


def _lent_while_moving(worker) -> int:
    """How many times ``worker`` lent pages, asked by a peer of its own: this session would
    first wait for the move in flight."""
    raw = RawPeer(worker.address, b"reuse-watcher")
    try:
        return raw.stats()["shm_lent"]
    finally:
        raw.close()


def test_pages_handed_over_to_a_stopped_worker_are_not_written_again(bob, alice):
    _a_free_segment(bob)
    x = _distinct(30)
    pointer = x.send(bob)
    lent = bob.ping()["shm_lent"]
    with frozen(alice):
        pointer.move(alice)  # bob lends its pages to alice, stopped: the hand-over waits
        wait_until(lambda: _lent_while_moving(bob) == lent + 1, 30, "bob lent the pages")
        # what the next sends would write, here (this session waits for the move first):
        # each may take a free segment, never the one in flight
        for seed in (31, 32, 33):
            for reference, _ in shm.export(memoryview(_distinct(seed).numpy()).cast("B")):
                shm.discard(reference)  # never sent
    assert torch.equal(pointer.get(), x)


def test_a_segment_its_stopped_receiver_has_not_mapped_is_not_written_again(bob, alice):
    _a_free_segment(bob)
    x = _distinct(40)
    with frozen(bob):
        pointer = x.send(bob)  # written into the free segment; bob has not opened it
        assert shm._spares.kept()[-1].startswith("fd-")
        later = [(y, y.send(alice)) for y in (_distinct(41), _distinct(42))]
        alice.ping()
    assert torch.equal(pointer.get(), x)
    for y, stored in later:
        assert torch.equal(stored.get(), y)


def test_a_segment_not_claimed_yet_is_never_locked(bob, alice, monkeypatch):
    """Its receiver takes ``LOCK_SH|LOCK_NB`` when it opens it and refuses a segment locked
    exclusively (a stale reference): an exporter that locked an unclaimed segment even for a
    moment, to see whether it is free, made a queue of large sends lose one now and then."""
    _a_free_segment(bob)
    exclusive = []
    real_flock = fcntl.flock

    def recording_flock(fd, operation):
        if operation & fcntl.LOCK_EX:
            exclusive.append(os.fstat(fd).st_ino)
        return real_flock(fd, operation)

    x = _distinct(45)
    with frozen(bob):
        pointer = x.send(bob)  # written into the free segment; bob has not opened it
        in_flight = {spare.inode for spare in shm._spares._kept
                     if not shm_spares._claimed(spare)}
        assert in_flight, "the send should have left a kept segment its receiver has not claimed"
        monkeypatch.setattr(shm_spares.fcntl, "flock", recording_flock)
        for seed in (46, 47, 48):  # what the next sends would write, here
            for reference, _ in shm.export(memoryview(_distinct(seed).numpy()).cast("B")):
                shm.discard(reference)  # never sent
        monkeypatch.undo()
    assert not in_flight & set(exclusive), "an unclaimed segment was locked exclusively"
    assert torch.equal(pointer.get(), x)


def test_a_segment_a_receiver_killed_before_mapping_is_dropped_not_written_again(victim, bob):
    x = _distinct(50)
    victim.ping()
    os.kill(victim.process.pid, signal.SIGSTOP)
    x.send(victim)  # written for a receiver that will never open it
    unclaimed = shm._spares._kept[-1]
    kill_stopped(victim)
    assert wait_for_exit(victim.process.pid, EXIT_DEADLINE)
    default_session().forget(victim.ref)  # closing the connection discards what it never took
    assert unclaimed not in shm._spares._kept, "a segment nobody will claim stayed kept"
    later = [(y, y.send(bob)) for y in (_distinct(51), _distinct(52), _distinct(53))]
    bob.ping()
    for y, stored in later:
        assert torch.equal(stored.get(), y)


def test_a_segment_a_killed_receiver_had_mapped_is_written_again(victim, bob):
    x = _distinct(60)
    x.send(victim)
    victim.ping()  # victim mapped it (and holds its lock)
    mapped = shm._spares.kept()[-1]
    assert mapped not in _free_references()
    kill_stopped(victim)  # its mappings, and so its lock, end with it
    wait_until(lambda: mapped in _free_references(), 30, "the killed receiver's segment free")
    before = _kept_inodes()
    y = _distinct(61)
    assert torch.equal(y.send(bob).get(), y)
    assert _kept_inodes() <= before, "the free segment was not written again"


def test_a_segment_being_written_again_is_refused_to_a_stale_reference(bob):
    _a_free_segment(bob)
    spare = shm._spares.take(SIZE, recycle=True)  # locked exclusively, as an export does
    assert spare is not None and spare.recycled
    try:
        reference = f"fd-{os.getpid()}-{spare.fd}-{spare.inode}"
        with pytest.raises(ProtocolError, match="written again"):
            shm.take([(reference, spare.exported)])
    finally:
        shm._spares.drop_taken(spare)


def test_a_mapping_holds_its_lock_until_it_is_dropped():
    shm.keep_exports()  # (as any client session does)
    x = _distinct(70)
    references = shm.export(memoryview(x.numpy()).cast("B"))
    buffer = shm.take(references)  # this process as the receiver: claims and maps it
    assert torch.equal(torch.frombuffer(buffer, dtype=torch.float32), x)
    assert references[0][0] not in _free_references(), "mapped here, yet free"
    del buffer
    wait_until(lambda: references[0][0] in _free_references(), 30,
               "the segment free once its only mapping is gone")

