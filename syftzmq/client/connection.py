"""One client DEALER socket to one worker, with its own key."""

from __future__ import annotations

import logging
from typing import Any, Callable

import zmq

from ..errors import MessageTooLarge, ProtocolError
from ..security.netpolicy import is_loopback
from ..wire.dealer import open_dealer
from ..wire import Signer, dumps, loads, pack, shm, unpack
from ..wire.envelope import MAX_MESSAGE_BYTES
from ..wire.notice import decode_notice
from ..wire.sockets import NOBLOCK, recv_frames, send_frames
from .diagnose import HandshakeWatch, rejection_error

log = logging.getLogger("syftzmq.client")

SEND_HWM = 1000  # messages queued per worker before send blocks (backpressure)
# Replies are not limited in size. The worker's limit guards it against unauthenticated input
# it must buffer; a reply comes from the worker this socket connected to, its frames are
# already in memory when they are read (ZeroMQ delivers whole messages), and shared-memory
# segments are only mapped after the signed manifest naming them was verified. A limit here
# only turned a large answer (``_objects`` of a worker holding gigabytes) into silence.
REPLY_LIMIT = 1 << 62
RCVTIMEO_SLACK_MS = 50  # how much shorter than asked a receive's bound may be (see receive)
_RCVTIMEO = int(zmq.RCVTIMEO)


class Connection:
    """Sends requests to one worker and receives its replies (one owner thread)."""

    def __init__(self, context: zmq.Context, incarnation: str, address: str, key: bytes | None,
                 send_timeout: float, curve: Any = None, peer_shm: str | None = None,
                 worker: str = "?", watch_handshake: bool = False) -> None:
        """``watch_handshake``: attach a :class:`HandshakeWatch` (:attr:`handshake`) before
        connecting, so that a failed connection can say why (the handshake's connection)."""
        self.address = address
        self.worker = worker  # for errors: the worker's id, once known
        self.signer = Signer(key)
        self.handshake: HandshakeWatch | None = None

        def watch(sock: zmq.Socket) -> None:
            self.handshake = HandshakeWatch(sock, address, worker, curve)
        # A full queue (a worker slower than us, or gone) blocks the sender: that is the
        # backpressure. The send timeout turns "gone" into an error instead of a hang.
        self.socket = open_dealer(context, incarnation, address, send_hwm=SEND_HWM, curve=curve,
                                  send_timeout=send_timeout,
                                  before_connect=watch if watch_handshake else None)
        self.shared_memory = False
        self.learn_peer(peer_shm)
        # what the worker accepts in one message (it says so in its PING answer); a larger
        # request is refused here, with the sizes, instead of vanishing at the worker
        self.max_request_bytes = MAX_MESSAGE_BYTES
        self._receive_bound = -1  # the socket's RCVTIMEO in ms (-1: libzmq's default, none)

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
        size = len(header) + sum(b.nbytes if isinstance(b, memoryview) else len(b)
                                 for b in buffers) if buffers else len(header)
        if size > self.max_request_bytes:
            raise MessageTooLarge(
                f"a {msg.get('kind', 'message')!r} request to the worker at {self.address}", size,
                self.max_request_bytes, "nothing was sent; send the data in parts (torch.chunk "
                "or split), or start the worker with a larger --max-message-bytes")
        frames = pack(self.signer, header, buffers, self.shared_memory, self.address)
        while True:
            try:
                send_frames(self.socket, frames, flags)
                break
            except zmq.Again:
                if flags & zmq.NOBLOCK or still_waiting is None or not still_waiting():
                    raise
        if len(frames) == 1:  # a compact message: always bytes
            return len(frames[0])
        return sum(len(f) if isinstance(f, bytes) else f.nbytes for f in frames)

    def receive(self, stats: Any = None, wait_ms: int = 0) -> dict | None:
        """One reply, or ``None`` if none came (within ``wait_ms``) or the reply is invalid.

        Waiting inside the receive (``RCVTIMEO``) instead of polling first saves a system call
        and a Python round of the poll per round trip.
        """
        try:
            if wait_ms > 0:
                # Setting an option costs pyzmq an enum lookup and a call into libzmq: the
                # bound set last serves while it is at most ``wait_ms`` and not much less (a
                # receive that returns early is asked again, with what remains).
                if not wait_ms - RCVTIMEO_SLACK_MS <= self._receive_bound <= wait_ms:
                    self.socket.setsockopt(_RCVTIMEO, wait_ms)
                    self._receive_bound = wait_ms
                frames = recv_frames(self.socket)
            else:
                frames = recv_frames(self.socket, NOBLOCK)
        except zmq.Again:
            return None
        if stats is not None:
            stats.bytes_received += sum(map(len, frames))
        try:
            msg = loads(*unpack(self.signer, frames, REPLY_LIMIT))
        except ProtocolError as exc:
            notice = decode_notice(frames)  # unsigned, so it never passes the envelope
            if notice is not None:  # the worker dropped something of ours at its envelope
                raise rejection_error(self.worker, self.address, notice) from None
            log.warning("dropped an invalid reply from %s: %s", self.address, exc)
            return None
        return msg if isinstance(msg, dict) else None

    def end_handshake_watch(self) -> None:
        if self.handshake is not None:
            self.handshake.close()
            self.handshake = None

    def close(self) -> None:
        self.end_handshake_watch()
        self.socket.close(linger=1000)
        if self.shared_memory:
            shm.discard_tagged(self.address)  # what the worker never took
