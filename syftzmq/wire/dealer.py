"""The one way any syftzmq process opens a connection to a worker: a DEALER socket with its own
routing identity, bounded linger, an explicit queue limit, and CURVE when the cluster uses it.

Client connections, the client's heartbeat sockets and a worker's peer sockets all come from
:func:`open_dealer`; they differ only in the queue limit and the send timeout.
"""

from __future__ import annotations

from typing import Any, Callable

import zmq

from ..core.refs import routing_identity

SCHEMES = ("tcp://", "ipc://", "inproc://")
LINGER_MS = 1000  # unsent messages wait this long at close, then are dropped (never a hang)


def check_address(address: Any) -> str:
    """``address`` if it is a ZeroMQ endpoint syftzmq can connect to; otherwise a ``ValueError``
    that names it and shows the expected form (ZeroMQ itself only says "Invalid argument")."""
    if not isinstance(address, str) or not address.startswith(SCHEMES) or \
            len(address) <= len(address.partition("://")[0]) + 3:
        raise ValueError(f"{address!r} is not a worker address: expected an endpoint such as "
                         f"'tcp://10.0.0.5:5555' or 'ipc:///tmp/bob.sock'")
    return address


def open_dealer(context: zmq.Context, incarnation: str, address: str, *, send_hwm: int,
                curve: Any = None, send_timeout: float | None = None,
                linger_ms: int = LINGER_MS,
                before_connect: Callable[[zmq.Socket], None] | None = None) -> zmq.Socket:
    """A DEALER from process ``incarnation`` connected to ``address``.

    ``send_hwm`` messages queue before a send blocks (0: never block, the queue grows);
    ``send_timeout`` (seconds) turns a send blocked that long into ``zmq.Again``; ``curve`` (a
    :class:`~syftzmq.security.curve.CurveClient`) encrypts and authenticates the connection;
    ``before_connect(sock)`` runs just before it connects (a socket monitor must exist by
    then to see the connection's first events).
    """
    check_address(address)
    sock = context.socket(zmq.DEALER)
    try:
        sock.setsockopt(zmq.IDENTITY, routing_identity(incarnation))
        sock.setsockopt(zmq.LINGER, linger_ms)
        sock.setsockopt(zmq.SNDHWM, send_hwm)
        if send_timeout is not None:
            sock.setsockopt(zmq.SNDTIMEO, int(send_timeout * 1000))
        if curve is not None:
            curve.client(sock)
        if before_connect is not None:
            before_connect(sock)
        try:
            sock.connect(address)
        except zmq.ZMQError as exc:
            raise ValueError(f"{address!r} is not an address ZeroMQ can connect to ({exc}): "
                             f"expected an endpoint such as 'tcp://10.0.0.5:5555' (host and "
                             f"port) or 'ipc:///tmp/bob.sock'") from None
    except BaseException:
        sock.close(linger=0)
        raise
    return sock
