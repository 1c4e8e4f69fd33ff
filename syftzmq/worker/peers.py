"""A worker's outgoing connections: one DEALER per peer worker, opened on first use.

A DEALER connected to several endpoints would round-robin between them, so each peer gets its
own socket, with this worker's incarnation id as routing identity. The peers' replies arrive on
these sockets; their requests arrive on the worker's ROUTER.
"""

from __future__ import annotations

import logging

import zmq

from typing import Any

from ..netpolicy import is_loopback
from ..protocol import ADDRESSED_TO, WorkerRef, routing_identity
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

    def socket(self, peer: WorkerRef) -> zmq.Socket:
        sock = self._sockets.get(peer.node)
        if sock is None:
            if not peer.address:
                raise ValueError(f"worker {peer.id!r} has no address to connect to")
            sock = self._context.socket(zmq.DEALER)
            sock.setsockopt(zmq.IDENTITY, routing_identity(self._own_node))
            sock.setsockopt(zmq.LINGER, 1000)
            sock.setsockopt(zmq.SNDHWM, 0)  # the loop must never block on a slow peer
            if self._curve is not None:
                self._curve.client(sock)
            sock.connect(peer.address)
            self._sockets[peer.node] = sock
            self.refs[peer.node] = peer
            self._poller.register(sock, zmq.POLLIN)
            log.info("connected to peer %s at %s", peer.id, peer.address)
        return sock

    def send(self, peer: WorkerRef, msg: dict) -> None:
        msg[ADDRESSED_TO] = peer.node
        header, buffers = dumps(msg)
        same_host = bool(peer.address) and is_loopback(peer.address) and shm.enabled()
        self.socket(peer).send_multipart(pack(self._signer, header, buffers, same_host,
                                                    peer.node), copy=False)

    def sockets(self) -> list[zmq.Socket]:
        return list(self._sockets.values())

    def close(self) -> None:
        for sock in self._sockets.values():
            self._poller.unregister(sock)
            sock.close(linger=1000)
        self._sockets.clear()
