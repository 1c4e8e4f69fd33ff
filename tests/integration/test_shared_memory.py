"""Bulk bytes through /dev/shm between processes on one host (see syftzmq/wire/shm.py).

Behaviour only: the bytes arrive exactly, travel outside the ZMQ frames, and no segment is left
in /dev/shm — also when a process is killed mid-transfer. Frames remain the path when shared
memory is disabled or the peer is not on this host.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
import zmq

import syftzmq as sy
from support.workers import started_workers
from support.processes import kill_stopped, wait_until
from syftzmq.client.connection import Connection
from syftzmq.client.handles import default_session
from syftzmq.errors import ProtocolError
from syftzmq.wire import Signer, pack, shm, unpack
from syftzmq.wire.envelope import PROTOCOL_SHM

pytestmark = pytest.mark.skipif(not shm.enabled(), reason="no /dev/shm on this host")

MiB = 1 << 20


def _leftovers(*workers) -> list[str]:
    pids = [os.getpid()] + [w.process.pid for w in workers if w.process is not None]
    return shm.segments_of(pids)


def test_send_get_and_move_round_trip_exactly_outside_the_frames(bob, alice):
    x = torch.randn(2 * MiB)  # 8 MiB, above the threshold
    before = sy.stats()
    p = x.send(bob)
    assert bob.object_count() == 1
    sent = (sy.stats() - before).bytes_sent
    assert sent < MiB, f"{sent} bytes went through ZMQ: the payload should not"
    p.move(alice)
    assert alice.object_count() == 1 and bob.object_count() == 0
    before = sy.stats()
    y = p.get()
    assert (sy.stats() - before).bytes_received < MiB
    assert torch.equal(x, y)
    assert _leftovers(bob, alice) == []


def test_mixed_sizes_in_one_message_keep_their_order(bob):
    small, big = torch.arange(10.0), torch.arange(float(MiB))
    ptrs = [t.send(bob) for t in (small, big, small + 1)]
    values = default_session().get_many(ptrs)
    assert torch.equal(values[0], small) and torch.equal(values[1], big)
    assert torch.equal(values[2], small + 1)
    assert _leftovers(bob) == []


def test_envelope_reads_and_unlinks_the_segment():
    signer = Signer(b"k" * 32)
    data = bytearray(os.urandom(shm.THRESHOLD + 5))
    frames = pack(signer, b"header", [memoryview(data), b"tail"], shared_memory=True)
    assert len(shm.segments_of([os.getpid()])) == 1
    header, buffers = unpack(signer, frames)
    assert header == b"header" and bytes(buffers[0]) == bytes(data) and bytes(buffers[1]) == b"tail"
    assert shm.segments_of([os.getpid()]) == []


def test_a_large_buffer_travels_as_several_segments_mapped_back_to_back(monkeypatch):
    monkeypatch.setattr(shm, "PARALLEL_MIN", shm.THRESHOLD)
    monkeypatch.setattr(shm, "WRITERS", 3)
    signer = Signer(b"k" * 32)
    data = bytearray(os.urandom(3 * shm.THRESHOLD + 123))  # the last part is not whole pages
    frames = pack(signer, b"header", [memoryview(data)], shared_memory=True)
    assert len(shm.segments_of([os.getpid()])) == 3
    _, buffers = unpack(signer, frames)
    assert shm.segments_of([os.getpid()]) == []
    received = torch.frombuffer(buffers[0], dtype=torch.uint8)
    assert bytes(buffers[0]) == bytes(data)
    received[:4] = 7  # writable, like any received tensor
    assert bytes(buffers[0][:4]) == bytes([7] * 4)


def test_parts_that_are_not_whole_pages_are_rejected_and_removed():
    signer = Signer(None)  # unsigned: this test writes its own manifest
    first, second = (shm.export(memoryview(bytearray(shm.THRESHOLD + 1)))[0] for _ in range(2))
    manifest = json.dumps([[list(first), list(second)]]).encode()
    with pytest.raises(ProtocolError, match="whole pages"):
        unpack(signer, [PROTOCOL_SHM, b"", b"h", manifest])
    assert shm.segments_of([os.getpid()]) == []
    (name, _), = shm.export(memoryview(bytearray(shm.THRESHOLD)))
    with pytest.raises(ProtocolError, match="sizes"):
        unpack(signer, [PROTOCOL_SHM, b"", b"h", json.dumps([[[name, "1"]]]).encode()])
    assert shm.segments_of([os.getpid()]) == []


def test_a_large_tensor_round_trips_between_processes(bob, alice):
    x = torch.randn((shm.PARALLEL_MIN + 5 * MiB) // 4)  # several segments each way
    p = x.send(bob).move(alice)
    assert torch.equal(p.get(), x)
    assert _leftovers(bob, alice) == []


def test_a_tampered_manifest_is_rejected_before_any_segment_is_read():
    signer = Signer(b"k" * 32)
    frames = pack(signer, b"h", [memoryview(bytearray(shm.THRESHOLD))], shared_memory=True)
    frames[3] = frames[3].replace(b"syftzmq-", b"syftzmq-1")
    with pytest.raises(ProtocolError, match="signature"):
        unpack(signer, frames)
    shm.unlink_own()  # the sender's own clean-up (at exit, or after MAX_AGE)
    assert shm.segments_of([os.getpid()]) == []


def test_a_segment_others_could_write_is_rejected():
    signer = Signer(b"k" * 32)
    frames = pack(signer, b"h", [memoryview(bytearray(shm.THRESHOLD))], shared_memory=True)
    (name,) = shm.segments_of([os.getpid()])
    os.chmod(os.path.join(shm.DIRECTORY, name), 0o666)
    with pytest.raises(ProtocolError, match="not a private file"):
        unpack(signer, frames)
    assert shm.segments_of([os.getpid()]) == []  # unlinked all the same


def test_frames_are_the_path_to_another_host():
    context = zmq.Context()
    try:
        here = shm.namespace()
        remote = Connection(context, "me#x", "tcp://192.0.2.7:5555", None, 1.0, peer_shm=here)
        local = Connection(context, "me#x", "tcp://127.0.0.1:5555", None, 1.0, peer_shm=here)
        unknown = Connection(context, "me#x", "tcp://127.0.0.1:5556", None, 1.0)
        assert remote.shared_memory is False and local.shared_memory is True
        assert unknown.shared_memory is False  # a peer of unknown /dev/shm gets frames
        for connection in (remote, local, unknown):
            connection.close()
    finally:
        context.term()


def test_disabled_shared_memory_falls_back_to_frames(hook, monkeypatch):
    monkeypatch.setenv("SYFTZMQ_SHM", "0")  # inherited by the worker process
    worker = sy.VirtualWorker(hook, id="noshm")
    try:
        x = torch.randn(MiB)
        before = sy.stats()
        p = x.send(worker)
        worker.object_count()
        assert (sy.stats() - before).bytes_sent >= 4 * MiB
        assert torch.equal(p.get(), x)
    finally:
        worker.shutdown()


def test_no_segment_outlives_a_sender_killed_mid_transfer(hook):
    """The sender writes its segment, then dies before the (stopped) receiver reads it."""
    sender = sy.VirtualWorker(hook, id="shm_sender")
    receiver = sy.VirtualWorker(hook, id="shm_receiver")
    session = default_session()
    p = torch.randn(4 * MiB).send(sender) + 0  # computed there: a move writes a segment
    sender.object_count()
    os.kill(receiver.process.pid, signal.SIGSTOP)
    p.move(receiver)  # returns at once; the failure surfaces at the next observation
    try:
        wait_until(lambda: shm.segments_of([sender.process.pid]), 10, "the sender wrote a segment")
        os.kill(sender.process.pid, signal.SIGKILL)
    finally:
        kill_stopped(receiver)
    with pytest.raises(sy.WorkerUnavailable):  # the move cannot complete: both ends are killed
        (p + 0).get()
    for worker in (sender, receiver):
        worker.process.stop()  # reaps the process and sweeps what it left
        session.forget(worker.ref)
    assert _leftovers(sender, receiver) == []
    del p


def test_no_segment_outlives_a_receiver_killed_before_reading(hook):
    receiver = sy.VirtualWorker(hook, id="shm_dead_receiver")
    os.kill(receiver.process.pid, signal.SIGSTOP)
    try:
        # fire-and-forget: written, never read (4 MiB: a named segment; a client writes
        # larger ones into kept segments when it can, which have no name: test_shm_reuse)
        torch.randn(MiB).send(receiver)
        assert shm.segments_of([os.getpid()]), "the client should have written a segment"
    finally:
        kill_stopped(receiver)
    receiver.process.stop()
    default_session().forget(receiver.ref)  # closing the connection discards what it never took
    assert _leftovers(receiver) == []


def test_a_worker_with_its_own_shm_directory_gets_frames_not_segments(hook, bob, tmp_path):
    """Loopback is not enough: containers with host networking share 127.0.0.1 but not
    /dev/shm. A worker that sees another shared-memory directory gets bulk bytes as frames,
    from the client and from other workers, both ways — and nothing waits for a segment."""
    island_dir = tmp_path / "island-shm"
    island_dir.mkdir()
    with started_workers(hook, "island", worker_args=["--shm-dir", str(island_dir)]) as (island,):
        connections = default_session()._connections
        assert connections[bob.ref.incarnation].shared_memory            # the control: same /dev/shm
        assert not connections[island.ref.incarnation].shared_memory
        rejected_by_bob = bob.ping()["rejected"]                   # earlier tests sent junk
        big = torch.randn(MiB)                                     # 4 MiB: over the threshold
        pointer = big.send(island)
        pointer.move(bob)                                          # island -> bob
        pointer.move(island)                                       # bob -> island
        assert torch.equal(pointer.get(), big)
        assert island.ping()["rejected"] == 0 and bob.ping()["rejected"] == rejected_by_bob
        assert list(island_dir.iterdir()) == []
        assert shm.segments_of([os.getpid(), bob.process.pid, island.process.pid]) == []


def test_a_large_get_is_confirmed_at_once_and_a_small_one_with_the_next_message(bob):
    """The worker holds what a get took until the client confirms it has it. A get of more
    than CONFIRM_AT_ONCE_BYTES is confirmed by a message of its own, so the worker frees
    its copy now rather than when the client next talks to it; a small one rides along later."""
    from support.hostile import RawPeer
    from syftzmq.client.session import CONFIRM_AT_ONCE_BYTES
    watcher = RawPeer(bob.address, b"confirm-watcher|1")  # its pings carry nobody's confirmations
    try:
        large = torch.ones(CONFIRM_AT_ONCE_BYTES // 4 + 1).send(bob)
        assert float(large.get()[-1]) == 1.0
        wait_until(lambda: watcher.stats()["held_for_confirmation"] == 0, 30,
                   "the large get confirmed without another message from the client")
        small = torch.ones(4).send(bob)
        assert torch.equal(small.get(), torch.ones(4))
        assert watcher.stats()["held_for_confirmation"] == 1   # waits for the next message
        bob.ping()                                              # ... which carries it
        assert watcher.stats()["held_for_confirmation"] == 0
    finally:
        watcher.close()
