"""A peer's reply must name the worker it is meant for (SECURITY.md, "Addressing").

A worker in the middle of a chain waits for its peers' flush acknowledgements, and what an
acknowledgement carries becomes part of its client's answer. A reply that is signed with the
cluster key but addressed to another worker — one meant for another incarnation, or carried
over from elsewhere by someone on the path — must not settle anything: it is dropped and counted
``misaddressed``, the wait goes on, and the reply addressed to this worker settles it.

The peer here is played by the test: a ROUTER that the real worker connects to as it would to a
worker (a stored chain hop names it), with a liveness endpoint that answers the worker's probes,
so the wait is not ended by a liveness verdict while the test looks.
"""

from __future__ import annotations

import pytest
import zmq

import syftzmq as sy
from support.hostile import RawPeer
from support.processes import wait_until
from syftzmq.core.ids import new_id
from syftzmq.core.messages import CMD, DEL, FLUSH, PING, STORE, message
from syftzmq.core.refs import ChainRef, Ref, WorkerRef
from syftzmq.security.keys import read_key
from syftzmq.wire import Signer, dumps, loads, pack, unpack
from syftzmq.wire.liveness import decode as decode_probe, encode as encode_probe

pytestmark = pytest.mark.timeout(60)

ORIGIN = "peer-reply-test#0001"  # the client the raw peer claims to be
DEADLINE_S = 30.0


class PlayedPeer:
    """A stand-in worker: a ROUTER for requests and one for liveness probes, both answered
    from :meth:`serve`, which the test calls while it waits for something."""

    incarnation = "played#0001"

    def __init__(self) -> None:
        context = zmq.Context.instance()
        self.signer = Signer(read_key(sy.default_session().cluster_key_file()))
        self.probe_signer = Signer(self.signer.key)
        self.main = context.socket(zmq.ROUTER)
        self.live = context.socket(zmq.ROUTER)
        for sock in (self.main, self.live):
            sock.setsockopt(zmq.LINGER, 0)
        self.address = f"tcp://127.0.0.1:{self.main.bind_to_random_port('tcp://127.0.0.1')}"
        self.liveness = f"tcp://127.0.0.1:{self.live.bind_to_random_port('tcp://127.0.0.1')}"
        self.ref = WorkerRef("played", self.address, self.incarnation, liveness=self.liveness)
        self.received: list[tuple[bytes, dict]] = []

    def serve(self, timeout_ms: int = 50) -> None:
        """Answer waiting probes and keep waiting requests (one poll, bounded)."""
        poller = zmq.Poller()
        poller.register(self.main, zmq.POLLIN)
        poller.register(self.live, zmq.POLLIN)
        ready = dict(poller.poll(timeout_ms))
        if self.live in ready:
            identity, *frames = self.live.recv_multipart()
            probe = decode_probe(self.probe_signer, frames)
            answer = {"kind": "reply", "req": probe["req"], "value": {
                "incarnation": self.incarnation, "busy_for": None, "handled": 0,
                "awaiting_peers": 0}}
            self.live.send_multipart([identity, *encode_probe(self.probe_signer, answer)])
        if self.main in ready:
            identity, *frames = self.main.recv_multipart()
            self.received.append((identity, loads(*unpack(self.signer, frames))))

    def flush_request(self) -> tuple[bytes, dict]:
        """The worker's ``FLUSH`` (served until it came)."""
        found: list = []

        def arrived() -> bool:
            self.serve()
            found[:] = [(i, m) for i, m in self.received if m.get("kind") == FLUSH]
            return bool(found)

        wait_until(arrived, DEADLINE_S, "the worker's flush of the played peer")
        return found[0]

    def acknowledge(self, request: tuple[bytes, dict], addressed_to: str) -> None:
        identity, flush = request
        ack = {"kind": "reply", "req": flush["req"], "value": True, "error": None,
               "failures": [], "to": addressed_to}
        self.main.send_multipart([identity, *pack(self.signer, *dumps(ack))])

    def close(self) -> None:
        self.main.close()
        self.live.close()


@pytest.fixture
def played():
    peer = PlayedPeer()
    yield peer
    peer.close()


def misaddressed(worker) -> int:
    observer = RawPeer(worker.address, b"peer-reply-observer")
    try:
        return observer.stats()["rejected_by_reason"].get("misaddressed", 0)
    finally:
        observer.close()


def test_a_peer_reply_addressed_elsewhere_settles_nothing(bob, played):
    raw = RawPeer(bob.address, b"peer-reply-client")
    hop, result = new_id(), new_id()
    try:
        raw.send(message(STORE, origin=ORIGIN, id=hop, obj=ChainRef(played.ref, new_id(), new_id())))
        raw.send(message(CMD, origin=ORIGIN, op=("func", "torch.neg"), args=(Ref(hop),),
                         kwargs={}, results=[result]))
        observed = new_id()
        raw.send(message(FLUSH, req=observed, origin=ORIGIN, timeout=DEADLINE_S))
        request = played.flush_request()     # bob forwarded the command and waits for its ack
        assert any(m.get("kind") == CMD or any(inner.get("kind") == CMD
                                                for inner in m.get("before", []))
                   for _, m in played.received)

        before = misaddressed(bob)
        played.acknowledge(request, addressed_to="another#0001")
        wait_until(lambda: (played.serve(), misaddressed(bob) > before)[1], DEADLINE_S,
                   "the misaddressed acknowledgement to be counted")
        # Still waiting: a ping on the same connection is answered, the flush is not (bob
        # answers in order, so an answer to the flush sent earlier would come first).
        ping = new_id()
        raw.send(message(PING, req=ping))
        first = raw.reply()
        assert first is not None and first["req"] == ping, first

        played.acknowledge(request, addressed_to=bob.ref.incarnation)
        replies: list = []
        wait_until(lambda: (played.serve(), replies.append(raw.reply(timeout_ms=50)),
                            replies[-1] is not None)[2], DEADLINE_S, "the flush's answer")
        answer = replies[-1]
        assert answer["req"] == observed and answer["value"] is True and not answer["error"]
        assert misaddressed(bob) == before + 1
    finally:
        raw.send(message(DEL, origin=ORIGIN, ids=[hop, result]))
        wait_until(lambda: (played.serve(), raw.stats()["objects"] == 0)[1], DEADLINE_S,
                   "the stored hops to be deleted")
        raw.close()
