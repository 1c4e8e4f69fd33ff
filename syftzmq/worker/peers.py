"""A worker's outgoing connections: one DEALER per peer worker, opened on first use.

A DEALER connected to several endpoints would round-robin between them, so each peer gets its
own socket, with this worker's incarnation id as routing identity. The peers' replies arrive on
these sockets; their requests arrive on the worker's ROUTER.

Fire-and-forget messages to a peer (forwarded commands, cascading deletes, hand-offs) are
queued and leave together when the loop has handled what it read (:meth:`Peers.send_queued`),
or earlier riding on a request to the same peer (``before``): a chain hop's forwarded command
and the flush that follows it are then one message, not two. A queue of nothing but deletes
and ownership hand-offs (``DEL``, ``FORK``), which change no answer but a store listing, is
held up to :data:`HOLD_SECONDS` (or :data:`MAX_HELD` messages) for a message to ride on: a
middle hop answering ``(chain + 1).get()`` hands the next hop's pointer to the client with a
``FORK``, which then rides on the next flush instead of costing the peer a wake-up of its own.
A store listing still sees it: its complete flush reaches every peer with a hand-off queued
(:mod:`~syftzmq.worker.downstream`), carrying the queue.

Sockets are bounded: at most :data:`MAX_PEERS` are open, and opening one more closes the least
recently used (references received in messages name the peers, so a batch could otherwise
name a thousand fake ones and exhaust libzmq's socket limit). A peer that never answered is
closed at once (linger 0: what was queued for a peer that never showed up is dropped); one
that did keeps the usual linger, so what was queued for it still leaves. A closed peer is
reopened, with a new routing identity, when it is next used; replies it owed on the old socket
are lost, and whoever awaited them times out.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

import zmq

from ..core.messages import ADDRESSED_TO, BATCH, BEFORE, DEL, FORK, message
from ..core.refs import WorkerRef
from ..security.netpolicy import is_loopback
from ..settings import SETTINGS
from ..wire import Signer, dumps, pack, shm
from ..wire.dealer import LINGER_MS, open_dealer
from ..wire.envelope import discard_unsent
from ..wire.sockets import send_frames

log = logging.getLogger("syftzmq.worker")


MAX_PEERS = 256
# a queue of hand-offs waits this long for a message to ride on: the client outbox's linger
# (SYFTZMQ_LINGER_MS), the same trade of latency for messages
HOLD_SECONDS = SETTINGS.linger_seconds
MAX_HELD = SETTINGS.batch  # ... or until it holds this many (SYFTZMQ_BATCH)
_HANDOFFS = (DEL, FORK)


class Peers:
    def __init__(self, context: zmq.Context, own_node: str, signer: Signer, poller: zmq.Poller,
                 curve: Any = None, max_peers: int = MAX_PEERS) -> None:
        self._context = context
        self._curve = curve
        self._own_node = own_node
        self._signer = signer
        self._poller = poller
        self._max_peers = max_peers
        self._sockets: OrderedDict[str, zmq.Socket] = OrderedDict()  # least recently used first
        self._answered: set[str] = set()  # peers that replied on their current socket
        self.refs: dict[str, WorkerRef] = {}
        # whether bulk bytes to a peer may go through shared memory, decided when its socket
        # opens (its address and filesystem do not change for an incarnation)
        self._same_host: dict[str, bool] = {}
        self._queued: dict[str, tuple[WorkerRef, list[dict]]] = {}
        self._held_since: dict[str, float] = {}  # queues of hand-offs only, since when
        self.evicted = 0

    def socket(self, peer: WorkerRef) -> zmq.Socket:
        sock = self._sockets.get(peer.incarnation)
        if sock is not None:
            self._sockets.move_to_end(peer.incarnation)
            return sock
        if not peer.address:
            raise ValueError(f"worker {peer.id!r} has no address to connect to")
        while len(self._sockets) >= self._max_peers:
            self._evict(next(iter(self._sockets)))
        # the loop must never block on a slow peer: no queue limit
        sock = open_dealer(self._context, self._own_node, peer.address, send_hwm=0,
                           curve=self._curve)
        self._sockets[peer.incarnation] = sock
        self.refs[peer.incarnation] = peer
        self._same_host[peer.incarnation] = is_loopback(peer.address) and \
            shm.shared_with(peer.shm)
        self._poller.register(sock, zmq.POLLIN)
        log.info("connected to peer %s at %s", peer.id, peer.address)
        return sock

    def _evict(self, incarnation: str) -> None:
        """Close the socket of ``incarnation`` (after sending what is queued for it)."""
        queued = self._queued.get(incarnation)
        if queued is not None:
            try:
                self.send(queued[0], message(BATCH, origin=self._own_node))
            except Exception:  # it is being closed: what it would have carried is lost
                log.exception("could not send what was queued for peer %s", incarnation)
                self._queued.pop(incarnation, None)
                self._held_since.pop(incarnation, None)
        sock = self._sockets.pop(incarnation)
        self.refs.pop(incarnation, None)
        self._same_host.pop(incarnation, None)
        self._close(incarnation, sock)
        self._answered.discard(incarnation)
        self.evicted += 1

    def _close(self, incarnation: str, sock: zmq.Socket) -> None:
        """Close a peer's socket: what is queued for a peer that answered still leaves (within
        the linger); for one that never did it is dropped at once, so shutting down never
        waits on a peer that is not there."""
        self._poller.unregister(sock)
        sock.close(linger=LINGER_MS if incarnation in self._answered else 0)

    def heard_from(self, sock: zmq.Socket) -> None:
        """A reply arrived on ``sock``: its peer is real (it keeps its linger when evicted)."""
        for incarnation, candidate in self._sockets.items():
            if candidate is sock:
                self._answered.add(incarnation)
                return

    def queue(self, peer: WorkerRef, msg: dict) -> None:
        """Send ``msg`` with the next message to ``peer`` or at :meth:`send_queued`."""
        self.socket(peer)  # a peer without an address fails the caller now
        incarnation = peer.incarnation
        queued = self._queued.get(incarnation)
        if queued is None:
            queued = self._queued[incarnation] = (peer, [])
            if msg["kind"] in _HANDOFFS:
                self._held_since[incarnation] = time.monotonic()
        elif msg["kind"] not in _HANDOFFS:
            self._held_since.pop(incarnation, None)  # it has to leave this turn
        queued[1].append(msg)

    def send_queued(self, everything: bool = False) -> None:
        """What is queued leaves now, one message per peer — except a queue of hand-offs only
        that has waited less than :data:`HOLD_SECONDS` (unless ``everything``). A peer that
        cannot be sent to loses what was queued for it (and the others still get theirs)."""
        if not self._queued:
            return
        now = time.monotonic()
        for incarnation, (peer, msgs) in list(self._queued.items()):
            since = self._held_since.get(incarnation)
            if since is not None and not everything and now - since < HOLD_SECONDS \
                    and len(msgs) < MAX_HELD:
                continue
            self._send_batch(incarnation, peer)

    def _send_batch(self, incarnation: str, peer: WorkerRef) -> None:
        """What is queued for ``peer`` leaves as one message; if it cannot, it is lost (and
        logged), and the other peers' queues are not affected."""
        try:
            self.send(peer, message(BATCH, origin=self._own_node))
        except Exception:
            self._queued.pop(incarnation, None)
            self._held_since.pop(incarnation, None)
            log.exception("could not send queued messages to peer %s", peer.id)

    def next_due(self) -> float | None:
        """When the oldest held queue of hand-offs is due to leave (the loop wakes up for it)."""
        if not self._held_since:
            return None
        return min(self._held_since.values()) + HOLD_SECONDS

    def send(self, peer: WorkerRef, msg: dict) -> None:
        """Send ``msg`` now, carrying (first) whatever is queued for ``peer``."""
        sock = self.socket(peer)  # first: opening it may evict (and send) another peer's queue
        queued = self._queued.pop(peer.incarnation, None)
        if queued is not None:
            msg[BEFORE] = queued[1]
            self._held_since.pop(peer.incarnation, None)
        msg[ADDRESSED_TO] = peer.incarnation
        header, buffers = dumps(msg)
        frames = pack(self._signer, header, buffers, self._same_host[peer.incarnation],
                      peer.incarnation)
        try:
            send_frames(sock, frames)
        except BaseException:
            discard_unsent(frames)
            raise

    def __bool__(self) -> bool:
        """Whether any peer socket is open or anything is queued for one."""
        return bool(self._sockets or self._queued)

    def sockets(self) -> list[zmq.Socket]:
        return list(self._sockets.values())

    def close(self) -> None:
        for incarnation, sock in self._sockets.items():
            self._close(incarnation, sock)
        self._sockets.clear()
