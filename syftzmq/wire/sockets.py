"""Putting one message's frames on a socket and taking them off, at the least cost per call.

pyzmq's ``send_multipart``/``recv_multipart`` check every frame's type, combine flags as enum
members and ask for ``RCVMORE`` through the option sugar: a few Python calls per frame, which
for a small message cost more than the send itself. These do the same with plain ints and the
frames' own ``more`` flag. Small frames are copied by ZeroMQ either way (pyzmq copies below its
``copy_threshold`` even with ``copy=False``); large ones are sent without copying.
"""

from __future__ import annotations

from typing import Sequence

import zmq

SNDMORE = int(zmq.SNDMORE)
NOBLOCK = int(zmq.NOBLOCK)
# pyzmq's compiled send, under ``zmq.Socket.send``'s Python layer (which only handles the draft
# sockets' routing ids and groups, unused here): one Python frame less per frame sent.
_send = zmq.backend.Socket.send


# Below this many bytes pyzmq copies a frame even when asked not to (its ``copy_threshold``),
# after building a memoryview to find out: a small ``bytes`` frame is sent as a copy directly.
COPY_BELOW = zmq.COPY_THRESHOLD


def send_frames(sock: zmq.Socket, frames: Sequence, flags: int = 0) -> None:
    """``sock.send_multipart(frames, flags, copy=False)``; raises what it raises."""
    more = flags | SNDMORE
    for frame in frames[:-1]:
        _send(sock, frame, more, copy=type(frame) is bytes and len(frame) < COPY_BELOW)
    frame = frames[-1]
    _send(sock, frame, flags, copy=type(frame) is bytes and len(frame) < COPY_BELOW)


def recv_frames(sock: zmq.Socket, flags: int = 0) -> list:
    """``sock.recv_multipart(flags, copy=False)``: the frames of the next message."""
    frame = sock.recv(flags, copy=False)
    frames = [frame]
    while frame.more:
        frame = sock.recv(flags, copy=False)
        frames.append(frame)
    return frames
