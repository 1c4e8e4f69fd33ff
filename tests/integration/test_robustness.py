"""A worker never dies because of a message: bad input is dropped or answered, never fatal."""

from __future__ import annotations

import os
import pickle
import random
from contextlib import contextmanager

import pytest
import torch
import zmq

import syftzmq as sy
from syftzmq.security.keys import read_key
from syftzmq.core.messages import PING, message
from syftzmq.core.refs import Ref
from syftzmq.wire import PROTOCOL, Signer, dumps, pack, unpack
from syftzmq.wire.notice import decode_notice


@contextmanager
def raw_dealer(worker):
    """A raw DEALER to ``worker``, speaking with the cluster key, and a helper to await a
    reply."""
    context = zmq.Context.instance()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(worker.address)
    signer = Signer(read_key(sy.default_session().cluster_key_file()))
    notices: list[dict] = []

    def reply(timeout_ms: int = 3000) -> dict | None:
        """The next reply; rejection notices on the way are collected in ``reply.notices``."""
        while sock.poll(timeout_ms):
            frames = sock.recv_multipart()
            notice = decode_notice(frames)
            if notice is not None:
                notices.append(notice)
                continue
            header, buffers = unpack(Signer(signer.key), frames)
            return pickle.loads(header, buffers=buffers)
        return None

    reply.notices = notices
    try:
        yield sock, signer, reply
    finally:
        sock.close()


@pytest.fixture
def raw(bob):
    with raw_dealer(bob) as dealer:
        yield dealer


def test_garbage_is_dropped_and_the_worker_keeps_serving(bob, raw):
    sock, signer, _ = raw
    rng = random.Random(7)
    for i in range(300):
        kind = i % 5
        if kind == 0:
            frames = [os.urandom(rng.randint(0, 64)) for _ in range(rng.randint(1, 6))]
        elif kind == 1:
            frames = [b"not-syftzmq/9", b"", b"header"]
        elif kind == 2:
            frames = [PROTOCOL, os.urandom(32), os.urandom(100)]       # bad signature
        elif kind == 3:
            frames = [PROTOCOL, b""] + [b"x"] * rng.randint(0, 3)       # unsigned / truncated
        else:
            (whole,) = pack(signer, *dumps(message(PING, req=i)))      # one compact frame
            frames = [whole[:len(whole) // 2]]                            # truncated valid message
        sock.send_multipart(frames)
    assert bob.ping()["ref"].id == "bob"
    assert torch.equal((torch.ones(2).send(bob) + 1).get(), torch.full((2,), 2.0))


def test_authenticated_junk_gets_an_error_reply_naming_the_problem(bob, raw):
    sock, signer, reply = raw
    sock.send_multipart(pack(signer, b"\x80\x05not a pickle", []))
    answer = reply()
    assert answer is not None and "cannot deserialize" in answer["error"].message

    sock.send_multipart(pack(signer, *dumps(message("launch_missiles", req=99))))
    answer = reply()
    assert answer["req"] == 99 and "unknown message kind 'launch_missiles'" in answer["error"].message

    sock.send_multipart(pack(signer, *dumps(message("get", req=100, id=3))))
    answer = reply()
    assert answer["req"] == 100 and "message 'get' lacks field 'refs'" in answer["error"].message

    sock.send_multipart(pack(signer, *dumps(message("get", req=101, refs=[Ref(424242)]))))
    answer = reply()
    assert answer["req"] == 101 and "no object with id 424242" in answer["error"].message
    assert bob.ping()["ref"].id == "bob"


def test_a_get_names_whole_objects_by_plain_id_and_junk_ids_get_an_error_reply(bob, raw):
    """A ``GET`` names a whole object by its id (taken) or as a ``Ref`` (the older form, still
    read); anything else is answered with an error and takes nothing."""
    sock, signer, reply = raw
    origin = "me#robust-get"
    for object_id, value in ((71, 1.0), (72, 2.0)):
        sock.send_multipart(pack(signer, *dumps(message(
            "store", req=object_id, origin=origin, id=object_id, obj=torch.full((2,), value)))))
        assert reply()["value"] is True
    for req, junk in enumerate(["71", 71.0, True, None, [71], (71,)], start=200):
        sock.send_multipart(pack(signer, *dumps(message("get", req=req, origin=origin,
                                                        refs=[junk]))))
        answer = reply()
        assert answer["req"] == req and answer["error"] is not None, junk
    sock.send_multipart(pack(signer, *dumps(message("get", req=300, origin=origin,
                                                    refs=[71, Ref(72)]))))
    answer = reply()
    assert answer["req"] == 300 and answer["error"] is None
    assert [t.tolist() for t in answer["value"]] == [[1.0, 1.0], [2.0, 2.0]]
    sock.send_multipart(pack(signer, *dumps(message("flush", req=301, origin=origin,
                                                    confirm=[71, 72]))))  # received: let go
    assert reply()["req"] == 301
    assert bob.ping()["ref"].id == "bob"


def test_tensor_whose_bytes_do_not_match_its_shape_is_rejected(bob, raw):
    sock, signer, reply = raw
    header, buffers = dumps(message("store", req=5, id=1, obj=torch.zeros(4096)))
    sock.send_multipart(pack(signer, header, [buffers[0][:100]]))  # 100 bytes for 16 KiB
    answer = reply()
    assert "needs 16384 bytes, got 100" in answer["error"].message
    assert bob._objects == {}


def test_unsigned_and_replayed_messages_are_dropped_with_only_a_notice(victim):
    """On a worker of its own: notices are rate-limited per worker, and a test before this one
    (the garbage above) may have spent the session worker's allowance."""
    with raw_dealer(victim) as (sock, signer, reply):
        frames = pack(signer, *dumps(message(PING, req=1)))
        sock.send_multipart(frames)
        assert reply()["value"]["ref"].id == "victim"
        sock.send_multipart(frames)                          # replay
        sock.send_multipart(pack(Signer(None), *dumps(message(PING, req=2))))  # unsigned
        sock.send_multipart(pack(Signer(b"wrong key"), *dumps(message(PING, req=3))))
        sock.send_multipart(pack(signer, *dumps(message(PING, req=4))))
        # one connection keeps order: had any of the three been answered, it would come first
        assert reply()["req"] == 4
        assert [n["reason"] for n in reply.notices] == ["replayed", "unsigned", "bad_signature"]
