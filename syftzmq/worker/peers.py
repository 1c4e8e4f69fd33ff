"""A worker's outgoing connections: one DEALER per peer worker, opened on first use.

A DEALER connected to several endpoints would round-robin between them, so each peer gets its
own socket, with this worker's incarnation id as routing identity. The peers' replies arrive on
these sockets; their requests arrive on the worker's ROUTER.

Fire-and-forget messages to a peer (forwarded commands, cascading deletes, hand-offs) are
queued and leave together when the loop has handled what it read (:meth:`Peers.send_queued`),
or earlier riding on a request to the same peer (``before``): a chain hop's forwarded command
and the flush that follows it are then one message, not two.
"""

from __future__ import annotations

import logging

import zmq

from typing import Any

from ..security.netpolicy import is_loopback
from ..core.messages import ADDRESSED_TO, BATCH, BEFORE, message
from ..core.refs import WorkerRef
from ..wire.dealer import open_dealer
from ..wire import Signer, dumps, pack, shm

log = logging.getLogger("syftzmq.worker")


class Peers:
    def __init__(self, context: zmq.Context, own_node: str, signer: Signer, poller: zmq.Poller,
                 curve: Any = None) -> None:
        self._context = context
        self._curve = curve
        self._own_node = own_node
        self._signer = signer
        self._poller = poller
        self._sockets: dict[str, zmq.Socket] = {}
        self.refs: dict[str, WorkerRef] = {}
        self._queued: dict[str, tuple[WorkerRef, list[dict]]] = {}

    def socket(self, peer: WorkerRef) -> zmq.Socket:
        sock = self._sockets.get(peer.incarnation)
        if sock is None:
            if not peer.address:
                raise ValueError(f"worker {peer.id!r} has no address to connect to")
            # the loop must never block on a slow peer: no queue limit
            sock = open_dealer(self._context, self._own_node, peer.address, send_hwm=0,
                               curve=self._curve)
            self._sockets[peer.incarnation] = sock
            self.refs[peer.incarnation] = peer
            self._poller.register(sock, zmq.POLLIN)
            log.info("connected to peer %s at %s", peer.id, peer.address)
        return sock

    def queue(self, peer: WorkerRef, msg: dict) -> None:
        """Send ``msg`` with the next message to ``peer`` or at :meth:`send_queued`."""
        self.socket(peer)  # a peer without an address fails the caller now
        self._queued.setdefault(peer.incarnation, (peer, []))[1].append(msg)

    def send_queued(self) -> None:
        """Everything queued leaves now, one message per peer."""
        while self._queued:
            incarnation, (peer, _) = next(iter(self._queued.items()))
            self.send(peer, message(BATCH, origin=self._own_node))

    def send(self, peer: WorkerRef, msg: dict) -> None:
        """Send ``msg`` now, carrying (first) whatever is queued for ``peer``."""
        queued = self._queued.pop(peer.incarnation, None)
        if queued is not None:
            msg[BEFORE] = queued[1]
        msg[ADDRESSED_TO] = peer.incarnation
        header, buffers = dumps(msg)
        same_host = bool(peer.address) and is_loopback(peer.address) and shm.shared_with(peer.shm)
        self.socket(peer).send_multipart(pack(self._signer, header, buffers, same_host,
                                                    peer.incarnation), copy=False)

    def sockets(self) -> list[zmq.Socket]:
        return list(self._sockets.values())

    def close(self) -> None:
        for sock in self._sockets.values():
            self._poller.unregister(sock)
            sock.close(linger=1000)
        self._sockets.clear()
