"""A raw ZMTP 3.0 peer over a plain TCP socket, for tests that send what libzmq never would.

libzmq's own sockets only put a multipart message on the wire once its last frame is written,
so "frames flagged more, never finished" can only come from a peer that speaks the protocol
itself. This one does the NULL-mechanism handshake as a DEALER and then writes whatever frames
it is given, byte for byte.
"""

from __future__ import annotations

import socket
import struct

MORE, LONG, COMMAND = 0x01, 0x02, 0x04


def frame(body: bytes, more: bool = False) -> bytes:
    """One ZMTP frame on the wire."""
    flags = MORE if more else 0
    if len(body) > 255:
        return struct.pack("!BQ", flags | LONG, len(body)) + body
    return struct.pack("!BB", flags, len(body)) + body


def long_frame_header(size: int, more: bool = True) -> bytes:
    """The header of a long frame of ``size`` bytes (its body is written separately)."""
    return struct.pack("!BQ", (MORE if more else 0) | LONG, size)


class RawZmtpPeer:
    """A TCP connection to ``tcp://host:port`` that has greeted and handshaken as a DEALER."""

    def __init__(self, address: str, identity: bytes = b"") -> None:
        host, _, port = address[len("tcp://"):].rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + bytes((3, 0)) + b"NULL".ljust(20, b"\x00")
        self.sock.sendall(greeting + b"\x00" + b"\x00" * 31)
        self._read_exactly(64)  # the worker's greeting
        properties = self._property(b"Socket-Type", b"DEALER") + self._property(b"Identity", identity)
        ready = b"\x05READY" + properties
        self.sock.sendall(struct.pack("!BB", COMMAND, len(ready)) + ready)

    @staticmethod
    def _property(name: bytes, value: bytes) -> bytes:
        return bytes((len(name),)) + name + struct.pack("!I", len(value)) + value

    def _read_exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the worker closed the connection during the greeting")
            data += chunk
        return data

    def send_raw(self, data: bytes | memoryview) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()
