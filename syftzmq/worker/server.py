"""The worker process's event loop and lifecycle: sockets, signals, the poll loop, shutdown.

The loop runs on one thread. One ROUTER receives requests; one DEALER per peer
(:mod:`syftzmq.worker.peers`) carries what this worker forwards and brings back the peers'
replies. Each turn of the loop reads what arrived (a bounded batch per socket, so no sender
starves the others), sends what the handlers queued for peers, runs the timeouts of replies
awaited from peers, the liveness probes of peers something waits for, and the lease tick.
Nothing in the loop waits on another process. Apart from the loop, a thread of its own answers
liveness probes (:mod:`syftzmq.worker.liveness`), so a worker busy for minutes in one message
is known to be alive.

This module owns receiving and routing: a message is read frame by frame within a budget of
frames and bytes (:mod:`syftzmq.wire.receive`), checked at the envelope (protocol, size,
signature, replay — failures are dropped unanswered and counted), decoded, and judged by its
destination (:mod:`~syftzmq.worker.addressing`); the rest is the job of
:mod:`~syftzmq.worker.handlers` (each kind of request), :mod:`~syftzmq.worker.downstream`
(flush before answer), :mod:`~syftzmq.worker.failures` (what waits for the next observation)
and :mod:`~syftzmq.worker.leases` (owners that stop renewing lose their objects).

A worker never dies because of a message: every handler failure becomes an error reply, or a
stored failure that the client sees at its next observation; authentic but malformed messages
are answered with an error; and every step of a turn (reading, sending, timeouts, ticks) is
guarded on its own, so that what escapes one is logged and counted and the loop goes on.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any, Callable

import torch
import zmq
from zmq import zmq_poll

from ..core.ids import new_token
from ..core.messages import ADDRESSED_TO, PING, check_routing_fields, reply
from ..core.refs import WorkerRef, sender_incarnation
from ..errors import ProtocolError, StaleIncarnationError
from ..security.netpolicy import is_loopback
from ..settings import SETTINGS
from ..wire import Signer, dumps, loads, pack, shm, shm_map, unpack
from ..wire.envelope import MAX_FRAMES, MAX_MESSAGE_BYTES, discard_unsent
from ..wire.receive import DroppedMessage, read_message
from ..wire.safe import SafeUnpickler
from ..wire.sockets import NOBLOCK, send_frames
from .addressing import ELSEWHERE, STALE, WRONG_ID, Addressing
from .advertise import advertised_address
from .arrival_order import ArrivalOrder
from .downstream import Downstream, Waiters
from .failures import FailureRecord
from .handlers import Handlers
from .leases import Leases, LeaseTicks
from .notices import Notices
from .liveness import LivenessEndpoint, LoopState, PeerLiveness, liveness_address, liveness_bind
from .peers import Peers
from .rejects import Rejections, reason_of
from .requesters import SharedMemoryRequesters
from .store import ObjectStore
from .vitals import Vitals

log = logging.getLogger("syftzmq.worker")

_POLLIN = int(zmq.POLLIN)  # a plain int: enum arithmetic costs calls
READ_BATCH = 256  # messages read from one socket before looking at the others
MAX_SENDERS_REMEMBERED = 4096  # routing identity -> incarnation, forgotten all at once when full
REPLY_HWM = 100_000  # replies queued per requester before one is dropped (and counted)
# Requests buffered per sender while the loop computes. Beyond it ZMQ stops reading the
# connection, TCP pushes back, and the sender's own queue (SNDHWM) fills: it blocks, up to its
# send timeout. That is the backpressure; nothing is dropped on the way in.
REQUEST_HWM = 1000
# A connection that stops answering libzmq's own heartbeats for this long is closed: without
# ROUTER_HANDOVER, a client whose network path died silently can only reconnect (same
# routing identity) once the worker has let go of the old connection.
HEARTBEAT_IVL_MS, HEARTBEAT_TIMEOUT_MS = 10_000, 30_000


class WorkerServer:
    """A worker: binds a ROUTER at ``bind`` and serves until stopped."""

    def __init__(self, worker_id: str, bind: str = "tcp://127.0.0.1:*", *, key: bytes | None = None,
                 advertise: str | None = None, parent_fd: int | None = None, safe: bool = False,
                 lease_seconds: float = SETTINGS.lease_seconds,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, curve: Any = None,
                 liveness_bind_to: str | None = None, liveness_advertise: str | None = None,
                 liveness_timeout: float = SETTINGS.liveness_timeout) -> None:
        if key is None and not is_loopback(bind):
            raise PermissionError(f"refusing to bind {bind} without a key: anyone who can reach "
                                  f"it could run code here. Give --key-file (or bind loopback)")
        self.context = zmq.Context()
        self.curve = curve
        self.router = self._bind_router(bind, max_message_bytes)
        self.endpoint = self.router.getsockopt(zmq.LAST_ENDPOINT).decode()
        incarnation = f"{worker_id}#{new_token()}"
        self.loop_state = LoopState()
        self.liveness = LivenessEndpoint(self.context, liveness_bind_to or liveness_bind(
            bind, self.endpoint), incarnation, key, self.loop_state, curve)
        address = advertised_address(self.endpoint, advertise)  # never a wildcard
        self.ref = WorkerRef(worker_id, address, incarnation, shm=shm.namespace(),
                             liveness=liveness_advertise or liveness_address(
                                 address, self.liveness.endpoint))
        self.signer = Signer(key)
        self.safe = safe
        self.max_message_bytes = max_message_bytes
        self.poller = zmq.Poller()
        self.poller.register(self.router, zmq.POLLIN)
        self.parent_fd = parent_fd
        if parent_fd is not None:
            self.poller.register(parent_fd, zmq.POLLIN)
        self.vitals = Vitals()
        self.counters = {"messages": 0, "commands": 0, "errors": 0, "replies_dropped": 0,
                         "stale": 0, "expired_objects": 0, "lone_renewals": 0}
        self.rejections = Rejections()
        self.notices = Notices(self.router)  # tell a sender why its message was dropped
        self.requesters = SharedMemoryRequesters()  # requesters on this host (see wire.shm)
        if SETTINGS.shm_lend:
            shm_map.keep_for_lending()  # received pages can be handed on (worker.handover)
        self.addressing = Addressing(self.ref, self.endpoint)
        self._stop_reason: str | None = None
        self._wakeup_r: int | None = None
        self._assemble(lease_seconds, liveness_timeout)
        self.liveness.start()  # answers from the moment the ready line is out

    def _bind_router(self, bind: str, max_message_bytes: int) -> zmq.Socket:
        router = self.context.socket(zmq.ROUTER)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # an unroutable reply raises, not vanishes
        # no ROUTER_HANDOVER: a second connection claiming a connected identity is refused, so
        # knowing a client's routing identity (it travels in clear) does not take its replies
        router.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        router.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        router.setsockopt(zmq.LINGER, 1000)
        router.setsockopt(zmq.SNDHWM, REPLY_HWM)
        router.setsockopt(zmq.RCVHWM, REQUEST_HWM)
        router.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)  # per frame, before buffering
        if self.curve is not None:
            self.curve.serve(self.context, router)
        router.bind(bind)
        return router

    def _assemble(self, lease_seconds: float, liveness_timeout: float) -> None:
        """The parts the loop drives: store, failure record, peers, downstream, handlers, leases."""
        self.store = ObjectStore()
        self._senders: dict[bytes, str] = {}  # see _sender_of
        self.leases = Leases(lease_seconds)
        self.failures = FailureRecord(self.ref.id)
        self.waiters = Waiters()
        self.peers = Peers(self.context, self.ref.incarnation, self.signer, self.poller, self.curve)
        self.peer_liveness = PeerLiveness(self.context, self.ref.incarnation, self.signer.key,
                                          self.poller, self.curve, liveness_timeout)
        self.downstream = Downstream(self.ref, self.peers, self.waiters, self.failures)
        self.handlers = Handlers(self.ref, self.store, self.leases, self.failures, self.downstream,
                                 self.waiters, self._send_reply, self.stats, self._stop,
                                 self.safe, self.counters)
        self.handlers.max_message_bytes = self.max_message_bytes
        self.lease_ticks = LeaseTicks(self.leases, self.store, self.failures, self.downstream,
                                      self.counters, unconfirmed=self.handlers.unconfirmed)
        self.arrival_order = ArrivalOrder(self.ref.incarnation, self.handlers.handle,
                                          self.leases.last_heard, lease_seconds, self.counters)

    # ------------------------------------------------------------------ lifecycle
    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM stop the loop cleanly; the wakeup fd interrupts a waiting poll."""
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        os.set_blocking(read_fd, False)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        self._wakeup_r = read_fd
        self.poller.register(read_fd, zmq.POLLIN)

        def stop(signum: int, _frame: Any) -> None:
            self._stop(signal.Signals(signum).name)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)

    def _stop(self, reason: str) -> None:
        """End the loop once the current turn is done."""
        self._stop_reason = reason

    def serve_forever(self) -> str:
        log.info("worker %s serving at %s (incarnation %s)", self.ref.id, self.endpoint, self.ref.incarnation)
        try:
            while self._stop_reason is None:
                self._turn(dict(self.poller.poll(self._poll_timeout_ms())))
        finally:
            self.close()
        log.info("worker %s stopped: %s", self.ref.id, self._stop_reason)
        return self._stop_reason or "stopped"

    def _turn(self, events: dict) -> None:
        """One turn of the loop: read, send what was queued, time out, tick. Each step is
        guarded alone: whatever escapes one is logged and counted, and the others still run."""
        if self.router in events:
            self._guarded("reading requests", self._drain, self.router, self._on_request)
        if self.peers:  # (a worker that forwards nothing has no peer sockets, nothing queued)
            for sock in self.peers.sockets():
                if sock in events:
                    self.peers.heard_from(sock)
                    self._guarded("reading peer replies", self._drain, sock, self._on_peer_reply)
            self._send_queued()
        if len(events) > 1 or self.router not in events:
            self._other_events(events)
        # (with nothing awaited from peers, neither has anything to do)
        awaiting = self.waiters or self.peer_liveness or self.loop_state.awaiting_peers
        if awaiting:
            self.counters["errors"] += self.waiters.expire()
        if self.arrival_order:
            self._guarded("forwarded messages waiting for their client's",
                          self.arrival_order.expire)
        if awaiting:
            self._guarded("the peers' liveness", self._check_peers)
        now = time.monotonic()
        if now >= self.lease_ticks.next_tick:  # (each step says when it is due next)
            self._guarded("the lease tick", self.lease_ticks.tick, now)
        if self.rejections.owes_summary:  # a flood stopped with lines suppressed: say how many
            self._guarded("the rejection log", self.rejections.flush)
        if now >= self.requesters.next_pass:
            self._guarded("shared-memory housekeeping", self.requesters.housekeeping, now,
                          self._still_connected)

    def _other_events(self, events: dict) -> None:
        """The loop's own descriptors: the parent's pipe (closed: stop) and the signal pipe."""
        if self.parent_fd is not None and self.parent_fd in events:
            if not os.read(self.parent_fd, 64):
                self._stop("parent process exited")
        if self._wakeup_r is not None and self._wakeup_r in events:
            try:
                os.read(self._wakeup_r, 64)
            except BlockingIOError:
                pass

    def _guarded(self, what: str, step: Callable, *args: Any) -> None:
        try:
            step(*args)
        except Exception:  # never let anything kill the loop
            self.counters["errors"] += 1
            log.exception("unexpected error in %s", what)

    def _check_peers(self) -> None:
        """What waits for a peer found dead (no liveness answers) fails, naming the peer."""
        self.loop_state.awaiting_peers = len(self.waiters)
        for peer, timeout in self.peer_liveness.check(self.waiters.awaited_peers().values()):
            self.waiters.peer_dead(peer.incarnation, self.peer_liveness.detail(peer, timeout))

    def _send_queued(self) -> None:
        self._guarded("sending queued messages to peers", self.peers.send_queued)

    def close(self) -> None:
        self._guarded("sending queued messages to peers", self.peers.send_queued, True)
        self.liveness.stop()
        self.peer_liveness.close()
        self.peers.close()
        self.router.close(linger=1000)
        if self.curve is not None:
            self.curve.stop()
        self.context.term()
        self._remove_socket_file()

    def _remove_socket_file(self) -> None:
        """libzmq leaves an ``ipc://`` socket file behind on close; this worker bound it, so
        it removes it (abstract ``ipc://@name`` sockets have no file)."""
        if self.endpoint.startswith("ipc://") and not self.endpoint.startswith("ipc://@"):
            try:
                os.unlink(self.endpoint[len("ipc://"):])
            except FileNotFoundError:
                pass

    def _poll_timeout_ms(self) -> int:
        soonest = min(self.lease_ticks.next_tick, self.requesters.next_pass)
        if self.waiters or self.peer_liveness or self.arrival_order or self.peers:
            for awaited in (self.waiters.soonest(), self.peer_liveness.next_due(),
                            self.arrival_order.next_due(), self.peers.next_due()):
                if awaited is not None:
                    soonest = min(soonest, awaited)
        return max(0, min(1000, int((soonest - time.monotonic()) * 1000) + 1))

    def stats(self) -> dict:
        """Who this worker is and what it has seen: the PING answer."""
        return {"ref": self.ref, "objects": len(self.store), "safe": self.safe,
                "threads": torch.get_num_threads(),
                "lease_seconds": self.leases.lease_seconds, "lease_sweeps": self.leases.sweeps,
                "max_message_bytes": self.max_message_bytes,
                "held_for_confirmation": len(self.handlers.unconfirmed),
                "rejected": self.rejections.total, "rejected_by_reason": dict(self.rejections.by_reason),
                "peers_open": len(self.peers.sockets()), "peers_evicted": self.peers.evicted,
                **self.counters, **self.vitals.snapshot()}

    # ------------------------------------------------------------------ receiving
    def _drain(self, sock: zmq.Socket, handle: Callable[[list], None]) -> None:
        """Handle up to :data:`READ_BATCH` messages waiting on ``sock``."""
        routed = sock is self.router  # a ROUTER adds the sender's identity as frame 0
        readable = [(sock, _POLLIN)]
        for turn in range(READ_BATCH):
            # the poll said the socket is readable; after a message, a poll that does not wait
            # is cheaper than the exception an empty read raises, and than ``sock.get(EVENTS)``
            # (pyzmq turns the option and the answer into enum members: Python calls)
            if turn and not zmq_poll(readable, 0):
                return
            try:
                frames = read_message(sock, MAX_FRAMES + routed, self.max_message_bytes)
            except zmq.Again:
                return
            except DroppedMessage as exc:  # consumed and dropped before anything was kept
                self.counters["messages"] += 1
                reason = reason_of(str(exc))
                sender = exc.first.bytes if routed else b"(peer)"
                self.rejections.record(reason, sender, str(exc))
                if routed:  # the sender is told, as at the envelope (rate-limited, unsigned)
                    self.notices.rejected(sender, reason, str(exc))
                continue
            self.counters["messages"] += 1
            self.loop_state.current_started = time.monotonic()  # read by the liveness thread
            try:
                handle(frames)
            except Exception:  # never let a message kill the loop
                self.counters["errors"] += 1
                log.exception("unexpected error while handling a message")
            finally:
                self.loop_state.current_started = None
                self.loop_state.handled += 1

    def _decode_verified(self, header: bytes, buffers: list) -> dict:
        msg = loads(header, buffers, SafeUnpickler if self.safe else None)
        if not isinstance(msg, dict) or not isinstance(msg.get("kind"), str):
            raise ProtocolError("message is not a syftzmq message dict")
        check_routing_fields(msg)
        return msg

    def _on_request(self, frames: list) -> None:
        identity = frames[0].bytes
        try:
            header, buffers = unpack(self.signer, frames[1:], self.max_message_bytes)
        except ProtocolError as exc:  # not authenticated: nobody is owed an answer, only a notice
            self.rejections.record(reason_of(str(exc)), identity, str(exc))
            self.notices.rejected(identity, reason_of(str(exc)), str(exc))
            return
        sender = self._sender_of(identity)
        if header[:1] == b"{":  # a liveness probe (JSON) at the main socket: a probe socket that
            # reconnected to a port this worker now holds. Not the sender's mistake to report.
            self.rejections.record("misaddressed", identity, "a liveness probe reached the "
                                   "main socket")
            return
        self.leases.touch(sender)
        try:
            msg = self._decode_verified(header, buffers)
        except ProtocolError as exc:  # authentic but malformed: tell the sender
            self.rejections.record(reason_of(str(exc)), identity, str(exc))
            failure = self.failures.failure(exc)
            self._send_reply(identity, reply(0, error=failure))
            self.failures.record(sender, failure)  # raised at the sender's next observation
            self.arrival_order.lost(sender)  # what waits for this message must not wait
            return
        if log.isEnabledFor(logging.DEBUG):  # (the arguments cost calls even when it is off)
            log.debug("%s from %s (req %s)", msg["kind"], sender, msg.get("req"))
        addressed = msg.get(ADDRESSED_TO)
        if addressed is not None and addressed != self.ref.incarnation \
                and self._addressed_elsewhere(identity, msg):  # (for us: nothing to judge)
            return
        self.requesters.note(identity, msg)
        self.arrival_order.admit(sender, identity, msg)

    def _addressed_elsewhere(self, identity: bytes, msg: dict) -> bool:
        """Whether ``msg`` is not for this worker (see :mod:`~syftzmq.worker.addressing`):
        meant for another worker, it is dropped unanswered; for an earlier incarnation of
        this one, an observation is answered with the error and commands are dropped."""
        addressed = msg.get(ADDRESSED_TO)
        verdict = self.addressing.judge(addressed)
        if verdict == ELSEWHERE:
            self.rejections.record("misaddressed", identity, f"message for {addressed!r:.80} "
                                   f"reached {self.ref.incarnation!r}")
            return True
        if verdict == WRONG_ID:
            if msg.get("kind") == PING:  # a client's handshake at the wrong worker: it learns
                return False             # who answers here and names the mix-up itself
            wanted = addressed[1:].partition("@")[0]
            self.handlers.fail(identity, msg, ValueError(
                f"the worker at {self.endpoint} is {self.ref.id!r}, not {wanted!r:.80}"))
            return True
        if verdict != STALE:
            return False
        self.counters["stale"] += 1
        if msg.get("req"):
            self.handlers.fail(identity, msg, StaleIncarnationError(
                f"message meant for {addressed!r} reached {self.ref.incarnation!r}: worker "
                f"{self.ref.id!r} was restarted, and the objects of its earlier incarnation "
                f"are gone"))
        return True

    def _on_peer_reply(self, frames: list) -> None:
        try:
            header, buffers = unpack(self.signer, frames, self.max_message_bytes)
            msg = self._decode_verified(header, buffers)
        except ProtocolError as exc:
            self.rejections.record(reason_of(str(exc)), b"(peer)", str(exc))
            return
        if msg.get(ADDRESSED_TO, self.ref.incarnation) != self.ref.incarnation:
            self.rejections.record("misaddressed", b"(peer)", "a reply meant for another worker")
            return
        self.waiters.answered(msg)

    def _sender_of(self, identity: bytes) -> str:
        """The process behind a routing identity (:func:`sender_incarnation`), remembered:
        every request and every reply asks it of the same few identities."""
        sender = self._senders.get(identity)
        if sender is None:
            if len(self._senders) >= MAX_SENDERS_REMEMBERED:
                self._senders.clear()
            sender = self._senders[identity] = sender_incarnation(identity)
        return sender

    # ------------------------------------------------------------------ sending
    def _send_reply(self, identity: bytes, msg: dict) -> bool:
        """Send ``msg`` to the requester ``identity``, addressed to it; whether it left. A reply
        that cannot leave takes its shared-memory segments with it."""
        msg[ADDRESSED_TO] = self._sender_of(identity)
        header, buffers = dumps(msg)
        frames = pack(self.signer, header, buffers, bool(buffers) and identity in self.requesters,
                      identity)
        try:
            send_frames(self.router, [identity, *frames], NOBLOCK)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: requester gone; EAGAIN: it never reads
            discard_unsent(frames)
            self.counters["replies_dropped"] += 1
            log.info("could not reply to %r: %s", identity[:64], exc)
            return exc.errno == zmq.EAGAIN  # a full queue: the requester is still there
        return True

    def _still_connected(self, identity: bytes) -> bool:
        """Whether the requester ``identity`` is connected: it is sent an empty reply, which
        clients ignore and a ROUTER refuses for an identity it no longer knows."""
        return self._send_reply(identity, reply(0))
