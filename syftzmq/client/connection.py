"""One client DEALER socket to one worker, with its own key."""

from __future__ import annotations

import logging
from typing import Any, Callable

import zmq

from ..errors import ProtocolError
from ..security.netpolicy import is_loopback
from ..wire.dealer import open_dealer
from ..wire import Signer, dumps, loads, pack, shm, unpack

log = logging.getLogger("syftzmq.client")

SEND_HWM = 1000  # messages queued per worker before send blocks (backpressure)


class Connection:
    """Sends requests to one worker and receives its replies (one owner thread)."""

    def __init__(self, context: zmq.Context, incarnation: str, address: str, key: bytes | None,
                 send_timeout: float, curve: Any = None, peer_shm: str | None = None) -> None:
        self.address = address
        self.signer = Signer(key)
        # A full queue (a worker slower than us, or gone) blocks the sender: that is the
        # backpressure. The send timeout turns "gone" into an error instead of a hang.
        self.socket = open_dealer(context, incarnation, address, send_hwm=SEND_HWM, curve=curve,
                                  send_timeout=send_timeout)
        self.shared_memory = False
        self.learn_peer(peer_shm)

    def set_send_timeout(self, seconds: float) -> None:
        """How long a send may block on a full queue before it raises ``zmq.Again``."""
        self.socket.setsockopt(zmq.SNDTIMEO, int(seconds * 1000))

    def learn_peer(self, peer_shm: str | None) -> None:
        """A loopback worker that sees our ``/dev/shm`` (:func:`shm.namespace`): bulk bytes go
        through shared memory both ways. Unknown (``None``): frames, which always work."""
        self.shared_memory = is_loopback(self.address) and shm.shared_with(peer_shm)

    def send(self, msg: dict, flags: int = 0, still_waiting: Callable[[], bool] | None = None) -> int:
        """Send ``msg``; returns the number of bytes put on the wire.

        Blocks while the queue is full (backpressure), up to the send timeout; then, if
        ``still_waiting()`` says so (the worker is alive, see :mod:`syftzmq.client.liveness`),
        the same frames wait again; else it raises ``zmq.Again`` (at once with
        ``flags=zmq.NOBLOCK``).
        """
        if self.shared_memory and msg.get("req"):
            msg["shm"] = True  # the reply may use shared memory too
        header, buffers = dumps(msg)
        frames = pack(self.signer, header, buffers, self.shared_memory, self.address)
        while True:
            try:
                self.socket.send_multipart(frames, flags, copy=False)
                break
            except zmq.Again:
                if flags & zmq.NOBLOCK or still_waiting is None or not still_waiting():
                    raise
        return sum(len(f) if isinstance(f, bytes) else f.nbytes for f in frames)

    def receive(self, stats: Any = None, wait_ms: int = 0) -> dict | None:
        """One reply, or ``None`` if none came (within ``wait_ms``) or the reply is invalid.

        Waiting inside the receive (``RCVTIMEO``) instead of polling first saves a system call
        and a Python round of the poll per round trip.
        """
        try:
            if wait_ms > 0:
                self.socket.setsockopt(zmq.RCVTIMEO, wait_ms)
                frames = self.socket.recv_multipart(copy=False)
            else:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None
        if stats is not None:
            stats.bytes_received += sum(len(f) for f in frames)
        try:
            header, buffers = unpack(self.signer, frames)
            msg = loads(header, buffers)
        except ProtocolError as exc:
            log.warning("dropped an invalid reply from %s: %s", self.address, exc)
            return None
        return msg if isinstance(msg, dict) else None

    def close(self) -> None:
        self.socket.close(linger=1000)
        if self.shared_memory:
            shm.discard_tagged(self.address)  # what the worker never took
