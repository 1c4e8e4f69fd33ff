"""A raw, authenticated DEALER to a worker, for tests that speak the wire directly."""

from __future__ import annotations

import pickle

import zmq

import syftzmq as sy
from syftzmq.security.keys import read_key
from syftzmq.core.messages import PING, message
from syftzmq.wire import Signer, dumps, pack, unpack
from syftzmq.wire.notice import decode_notice


# How long a raw peer waits for an answer it is owed: a hang deadline, not a speed claim. A
# worker with a backlog of thousands of fuzzed messages on a loaded machine (the suite runs in
# parallel) can take several seconds to reach the last one.
ANSWER_DEADLINE_MS = 30_000


class RawPeer:
    """Sends hand-made frames to a worker and reads its replies (unpickled without checks:
    the worker is ours). Its routing identity is its own, so it renews nobody's lease."""

    def __init__(self, address: str, identity: bytes = b"raw-test-peer", curve=None) -> None:
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.IDENTITY, identity)
        if curve is not None:
            curve.client(self.sock)
        self.sock.connect(address)
        self.signer = Signer(read_key(sy.default_session().cluster_key_file()))
        self.notices: list[dict] = []  # rejection notices the worker sent (kept, not replies)

    def send_frames(self, frames: list) -> None:
        self.sock.send_multipart(frames)

    def send(self, msg: dict) -> None:
        self.sock.send_multipart(pack(self.signer, *dumps(msg)))

    def reply(self, timeout_ms: int = ANSWER_DEADLINE_MS) -> dict | None:
        """The next reply (rejection notices met on the way are kept in :attr:`notices`)."""
        while self.sock.poll(timeout_ms):
            frames = self.sock.recv_multipart()
            notice = decode_notice(frames)
            if notice is not None:
                self.notices.append(notice)
                continue
            header, buffers = unpack(self.signer, frames)
            return pickle.loads(header, buffers=buffers)
        return None

    def ask(self, msg: dict, timeout_ms: int = ANSWER_DEADLINE_MS) -> dict:
        """Send ``msg`` (which must carry a ``req``) and return the reply to it, skipping others."""
        self.send(msg)
        while True:
            answer = self.reply(timeout_ms)
            assert answer is not None, f"no reply to {msg['kind']}"
            if answer.get("req") == msg["req"]:
                return answer

    def stats(self) -> dict:
        return self.ask(message(PING, req=0x5157A75))["value"]

    def close(self) -> None:
        self.sock.close()
