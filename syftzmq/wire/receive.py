"""Reading one message off a socket with a bound on what it may cost before it is verified.

``recv_multipart`` builds every frame of a message (a Python object each) before the envelope
can count them: a peer without the key could send millions of tiny frames and make the reader
build them all. :func:`read_message` reads frame by frame instead, counting frames and bytes as
they come; past a limit it stops keeping them and only drains the rest of the message into a
scratch buffer (``recv_into``: no object per frame), then reports the message as dropped. What a
dropped message costs is then one small copy per frame, bounded by what the peer sent.

What this cannot bound: libzmq delivers a multipart message to the application only once its
last frame has arrived, and its queue limits count whole messages. Frames of a message that is
never finished stay inside libzmq, up to ``MAXMSGSIZE`` bytes each, until the connection closes
(then libzmq frees them). Only authenticating the connection (CURVE) keeps strangers from
sending frames at all; see SECURITY.md.
"""

from __future__ import annotations

import zmq

from ..errors import ProtocolError


class DroppedMessage(ProtocolError):
    """A message consumed and dropped for its size. ``first`` is its first frame: on a ROUTER
    the sender's routing identity, so that the sender can be told why."""

    def __init__(self, text: str, first: zmq.Frame) -> None:
        super().__init__(text)
        self.first = first


_SCRATCH = bytearray(4096)  # what drained frames are read into (truncated: only the count matters)


def read_message(sock: zmq.Socket, max_frames: int, max_bytes: int) -> list:
    """The frames of the next message on ``sock`` (``zmq.Again`` if there is none).

    Raises :class:`DroppedMessage` (the message is consumed and dropped, nothing of it kept
    but its first frame) if it has more than ``max_frames`` frames or more than ``max_bytes``
    bytes.
    """
    frame = sock.recv(zmq.NOBLOCK, copy=False)
    frames = [frame]
    total = len(frame)
    while frame.more:
        if len(frames) >= max_frames or total > max_bytes:
            drained = _drain_rest(sock)
            raise DroppedMessage(f"message exceeds the limit of {max_frames} frames or "
                                 f"{max_bytes} bytes ({len(frames) + drained} frames or more): "
                                 f"dropped unread", frames[0])
        frame = sock.recv(copy=False)  # the rest of a message is already here: never blocks
        frames.append(frame)
        total += len(frame)
    if total > max_bytes:
        raise DroppedMessage(f"message of {total} bytes exceeds the limit of {max_bytes}: "
                             f"dropped", frames[0])
    return frames


def _drain_rest(sock: zmq.Socket) -> int:
    """Consume the remaining frames of the current message; returns how many there were."""
    count = 0
    more = True
    while more:
        sock.recv_into(_SCRATCH)
        count += 1
        more = bool(sock.get(zmq.RCVMORE))
    return count
