"""The worker process's event loop: one ROUTER for requests, one DEALER per peer, no blocking.

Everything happens on one thread. Commands are applied in arrival order per sender. An
observation (``GET``, ``OBJECTS``, ``INFO``, ``MOVE``, ``FLUSH``) first flushes every peer this
worker has forwarded to since its last flush, *asynchronously*: the loop keeps serving while the
peers' acknowledgements are outstanding, then performs the observation and replies. Because ZMQ
keeps order per connection, a peer's flush acknowledgement means every command forwarded to it
before has been applied (and, recursively, everything it forwarded in turn).

A worker never dies because of a message: every handler failure becomes an error reply, or a
stored failure that the client sees at its next observation. Messages that fail the envelope
checks (frames, protocol, size, signature, replay) are dropped unanswered and counted; messages
that are authentic but malformed are answered with an error. Messages addressed to another
incarnation of this worker are refused. Owners that stop renewing their lease lose their objects.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import zmq

from ..core.allowlist import check_reference_attribute
from ..core.failures import Failure
from ..core.ids import new_id, new_token
from ..core.messages import (ADDRESSED_TO, BATCH, BATCHABLE, BEFORE, CMD, DEL, FLUSH, FORK, GET,
                             INFO, MOVE, OBJECTS, PING, RELEASES, RENEW, SHUTDOWN, STORE,
                             check_fields, message, needs_complete_flush, reply)
from ..core.meta import TensorMeta, describe
from ..core.ops import op_from_wire
from ..core.refs import ChainRef, Ref, WorkerRef, sender_incarnation
from ..errors import ProtocolError, StaleIncarnationError, WorkerUnavailable
from ..security.netpolicy import is_loopback
from ..settings import SETTINGS
from ..wire import Signer, dumps, loads, pack, shm, unpack
from ..wire.envelope import MAX_MESSAGE_BYTES
from ..wire.safe import SafeUnpickler
from .execute import DependencyFailed, resolve_ref, run_command
from .leases import Leases, PeerRenewals
from .peers import Peers
from .rejects import Rejections, reason_of
from .store import ObjectStore
from .vitals import Vitals

log = logging.getLogger("syftzmq.worker")

MAX_FAILURES_KEPT = 100
MAX_ORIGINS_WITH_FAILURES = 1024
DEFAULT_PEER_TIMEOUT = 4.0
READ_BATCH = 256  # messages read from one socket before looking at the others
REPLY_HWM = 100_000  # replies queued per requester before one is dropped (and counted)
# Requests buffered per sender while the loop computes. Beyond it ZMQ stops reading the
# connection, TCP pushes back, and the sender's own queue (SNDHWM) fills: it blocks, up to its
# send timeout. That is the backpressure; nothing is dropped on the way in.
REQUEST_HWM = 1000


@dataclass
class _Waiter:
    """A reply this worker expects from a peer, with what to do on reply or on timeout."""

    deadline: float
    on_reply: Callable[[dict], None]
    on_timeout: Callable[[], None]


@dataclass
class _Join:
    """Runs ``then`` once ``pending`` acknowledgements have arrived (or timed out)."""

    pending: int
    then: Callable[[], None]
    done: bool = field(default=False)

    def arrive(self) -> None:
        self.pending -= 1
        if self.pending <= 0 and not self.done:
            self.done = True
            self.then()


class WorkerServer:
    """A worker: binds a ROUTER at ``bind`` and serves until stopped."""

    def __init__(self, worker_id: str, bind: str = "tcp://127.0.0.1:*", *, key: bytes | None = None,
                 advertise: str | None = None, parent_fd: int | None = None, safe: bool = False,
                 lease_seconds: float = SETTINGS.lease_seconds,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, curve: Any = None) -> None:
        if key is None and not is_loopback(bind):
            raise PermissionError(f"refusing to bind {bind} without a key: anyone who can reach "
                                  f"it could run code here. Give --key-file (or bind loopback)")
        self.context = zmq.Context()
        self.curve = curve
        self.router = self.context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # an unroutable reply raises, not vanishes
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.router.setsockopt(zmq.LINGER, 1000)
        self.router.setsockopt(zmq.SNDHWM, REPLY_HWM)
        self.router.setsockopt(zmq.RCVHWM, REQUEST_HWM)
        self.router.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)  # per frame, before buffering
        if curve is not None:
            curve.serve(self.context, self.router)
        self.router.bind(bind)
        self.endpoint = self.router.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.ref = WorkerRef(worker_id, advertise or self.endpoint, f"{worker_id}#{new_token()}",
                             shm=shm.namespace())
        self.signer = Signer(key)
        self.safe = safe
        self.max_message_bytes = max_message_bytes
        self.store = ObjectStore()
        self.leases = Leases(lease_seconds)
        self.poller = zmq.Poller()
        self.poller.register(self.router, zmq.POLLIN)
        self.peers = Peers(self.context, self.ref.incarnation, self.signer, self.poller, curve)
        self.renewals = PeerRenewals()
        self.rejections = Rejections()
        self._next_tick = time.monotonic()
        self.waiting: dict[int, _Waiter] = {}
        self.failures: dict[str, list[Failure]] = {}
        self.dirty: set[str] = set()
        self.dirty_handoffs: set[str] = set()  # peers sent only DEL/FORK (needs_complete_flush)
        self.unresponsive: set[str] = set()  # peers that missed a flush deadline
        self.parent_fd = parent_fd
        if parent_fd is not None:
            self.poller.register(parent_fd, zmq.POLLIN)
        self.counters = {"messages": 0, "commands": 0, "errors": 0, "replies_dropped": 0,
                         "stale": 0, "expired_objects": 0}
        self._stop_reason: str | None = None
        self.shm_identities: set[bytes] = set()  # requesters on this host (see wire.shm)
        self._handler_table = self._handlers()
        self._wakeup_r: int | None = None
        self.vitals = Vitals()

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
            self._stop_reason = signal.Signals(signum).name

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)

    def serve_forever(self) -> str:
        log.info("worker %s serving at %s (incarnation %s)", self.ref.id, self.endpoint, self.ref.incarnation)
        try:
            while self._stop_reason is None:
                events = dict(self.poller.poll(self._poll_timeout_ms()))
                if self.router in events:
                    self._drain(self.router, self._on_request)
                for sock in self.peers.sockets():
                    if sock in events:
                        self._drain(sock, self._on_peer_reply)
                self._send_queued()
                if self.parent_fd is not None and self.parent_fd in events:
                    if not os.read(self.parent_fd, 64):
                        self._stop_reason = "parent process exited"
                if self._wakeup_r is not None and self._wakeup_r in events:
                    try:
                        os.read(self._wakeup_r, 64)
                    except BlockingIOError:
                        pass
                self._expire_waiters()
                self._tick()
        finally:
            self.close()
        log.info("worker %s stopped: %s", self.ref.id, self._stop_reason)
        return self._stop_reason or "stopped"

    def _send_queued(self) -> None:
        try:
            self.peers.send_queued()
        except Exception:  # a peer socket gone: what it would have carried is lost with it
            self.counters["errors"] += 1
            log.exception("could not send queued messages to a peer")

    def close(self) -> None:
        self._send_queued()
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
        soonest = self._next_tick
        if self.waiting:
            soonest = min(soonest, min(w.deadline for w in self.waiting.values()))
        return max(0, min(1000, int((soonest - time.monotonic()) * 1000) + 1))

    def _expire_waiters(self) -> None:
        now = time.monotonic()
        for req in [r for r, w in self.waiting.items() if w.deadline <= now]:
            self.waiting.pop(req).on_timeout()

    # ------------------------------------------------------------------ receiving
    def _drain(self, sock: zmq.Socket, handle: Callable[[list], None]) -> None:
        for _ in range(READ_BATCH):
            if not sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                return  # asking is cheaper than the exception an empty read raises
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.counters["messages"] += 1
            try:
                handle(frames)
            except Exception:  # never let a message kill the loop
                self.counters["errors"] += 1
                log.exception("unexpected error while handling a message")

    def _decode_verified(self, header: bytes, buffers: list) -> dict:
        msg = loads(header, buffers, SafeUnpickler if self.safe else None)
        if not isinstance(msg, dict) or not isinstance(msg.get("kind"), str):
            raise ProtocolError("message is not a syftzmq message dict")
        return msg

    def _on_request(self, frames: list) -> None:
        identity = frames[0].bytes
        try:
            header, buffers = unpack(self.signer, frames[1:], self.max_message_bytes)
        except ProtocolError as exc:  # not authenticated: nobody is owed an answer
            self.rejections.record(reason_of(str(exc)), identity, str(exc))
            return
        sender = sender_incarnation(identity)
        self.leases.touch(sender)
        try:
            msg = self._decode_verified(header, buffers)
        except ProtocolError as exc:  # authentic but malformed: tell the sender
            self.rejections.record(reason_of(str(exc)), identity, str(exc))
            failure = Failure.from_exception(exc, self.ref.id)
            self._send_reply(identity, reply(0, error=failure))
            self._record_failure(sender, failure)  # raised at the sender's next observation
            return
        if identity not in self.shm_identities and msg.get("shm") is True and shm.enabled():
            # the sender shares this host
            self.shm_identities.add(identity)
        log.debug("%s from %s (req %s)", msg["kind"], sender, msg.get("req"))
        addressed = msg.get(ADDRESSED_TO)
        if addressed is not None and addressed != self.ref.incarnation:
            self.counters["stale"] += 1
            if msg.get("req"):  # an observation is answered; commands for the dead are dropped
                self._fail(identity, msg, StaleIncarnationError(
                    f"message meant for {addressed!r} reached {self.ref.incarnation!r}: worker "
                    f"{self.ref.id!r} was restarted, and the objects of its earlier incarnation "
                    f"are gone"))
            return
        try:
            self._apply_queued(sender, identity, msg)
            check_fields(msg)
            self._apply_piggybacked_releases(sender, msg)
            self._handler_table[msg["kind"]](sender, identity, msg)
        except Exception as exc:
            self._fail(identity, msg, exc)

    def _apply_queued(self, sender: str, identity: bytes, msg: dict) -> None:
        """The fire-and-forget messages the sender queued before ``msg`` (``before``), in order.

        Each is handled exactly as if it had come alone: its own failure is recorded for the
        next observation and does not stop the ones after it.
        """
        queued = msg.get(BEFORE)
        if queued is None:
            return
        if not isinstance(queued, list):
            raise ProtocolError(f"field {BEFORE!r} must be a list of messages")
        for inner in queued:
            if not isinstance(inner, dict) or inner.get("kind") not in BATCHABLE:
                kind = inner.get("kind") if isinstance(inner, dict) else type(inner).__name__
                self._fail(identity, {"origin": msg.get("origin", "")}, ProtocolError(
                    f"a queued message must be one of {sorted(BATCHABLE)}; got {kind!r:.40}"))
                continue
            try:
                check_fields(inner)
                self._apply_piggybacked_releases(sender, inner)
                self._handler_table[inner["kind"]](sender, identity, inner)
            except Exception as exc:
                self._fail(identity, inner, exc)

    def _on_peer_reply(self, frames: list) -> None:
        try:
            header, buffers = unpack(self.signer, frames, self.max_message_bytes)
            msg = self._decode_verified(header, buffers)
        except ProtocolError as exc:
            self.rejections.record(reason_of(str(exc)), b"(peer)", str(exc))
            return
        waiter = self.waiting.pop(msg.get("req", 0), None)
        if waiter is not None:
            waiter.on_reply(msg)

    def _handlers(self) -> dict[str, Callable[[str, bytes, dict], None]]:
        return {STORE: self._on_store, CMD: self._on_command, DEL: self._on_delete,
                FORK: self._on_fork, GET: self._on_get, OBJECTS: self._on_objects,
                INFO: self._on_info, MOVE: self._on_move, FLUSH: self._on_flush,
                PING: self._on_ping, SHUTDOWN: self._on_shutdown, RENEW: self._on_renew,
                BATCH: lambda sender, identity, msg: None}  # its content came in ``before``

    # ------------------------------------------------------------------ sending
    def _send_reply(self, identity: bytes, msg: dict) -> None:
        header, buffers = dumps(msg)
        frames = pack(self.signer, header, buffers, identity in self.shm_identities)
        try:
            self.router.send_multipart([identity, *frames],
                                       zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: requester gone; EAGAIN: it never reads
            self.counters["replies_dropped"] += 1
            log.info("could not reply to %r: %s", identity[:64], exc)

    def _send_peer(self, peer: WorkerRef, msg: dict) -> None:
        self.peers.queue(peer, msg)
        if msg["kind"] not in (DEL, FORK):
            self.dirty.add(peer.incarnation)
        elif not (msg["kind"] == DEL and peer.incarnation in self.unresponsive):
            # deletes to a dead peer must not stall every observation
            self.dirty_handoffs.add(peer.incarnation)

    def _fail(self, identity: bytes, msg: dict, exc: BaseException) -> None:
        """Report a failed request: as a reply if one is awaited, else at the next observation."""
        failure = Failure.from_exception(exc, self.ref.id)
        if msg.get("req"):
            self._send_reply(identity, reply(msg["req"], error=failure))
        else:
            self._record_failure(msg.get("origin", ""), failure)
        log.info("request %s failed: %s", msg.get("kind"), failure.message)

    def _record_failure(self, origin: str, failure: Failure) -> None:
        if origin not in self.failures and len(self.failures) >= MAX_ORIGINS_WITH_FAILURES:
            self.failures.pop(next(iter(self.failures)))  # the oldest origin's reports go
        kept = self.failures.setdefault(origin, [])
        if len(kept) < MAX_FAILURES_KEPT:
            kept.append(failure)

    # ------------------------------------------------------------------ fire-and-forget requests
    def _on_store(self, sender: str, identity: bytes, msg: dict) -> None:
        _object_ids([msg["id"]])
        owner = msg.get("owner") or sender
        self.store.put(msg["id"], msg["obj"], owner)
        self.leases.adopt(owner)
        if msg.get("req"):
            self._send_reply(identity, reply(msg["req"], value=True))

    def _on_command(self, sender: str, identity: bytes, msg: dict) -> None:
        self.counters["commands"] += 1
        _object_ids(msg.get("results"))  # malformed: no failure is stored under junk ids
        try:
            wire_op = msg.get("op")
            forward = run_command(self.store, {**msg, "op": op_from_wire(wire_op, self.safe)},
                                  sender, self.ref)
        except Exception as exc:
            failure = exc.failure if isinstance(exc, DependencyFailed) else \
                Failure.from_exception(exc, self.ref.id)
            for result_id in msg.get("results", []):
                if result_id not in self.store:
                    self.store.put(result_id, failure, sender)
            self._record_failure(msg.get("origin", ""), failure)
            return
        if forward is not None:
            forward.message["op"] = wire_op  # the next hop resolves the name itself
            self._send_peer(forward.to, forward.message)

    def _on_delete(self, sender: str, identity: bytes, msg: dict) -> None:
        for object_id in msg["ids"]:
            self._cascade(self.store.delete(object_id, sender))

    def _apply_piggybacked_releases(self, sender: str, msg: dict) -> None:
        """Deletes that rode along on another message (``RELEASES``), applied *before* it.

        The client queued them when pointers died, i.e. before it issued this message, so
        the message cannot use those objects: deleting first is the order they happened in.
        """
        ids = msg.get(RELEASES)
        if ids:
            for object_id in _object_ids(ids):
                self._cascade(self.store.delete(object_id, sender))

    def _on_fork(self, sender: str, identity: bytes, msg: dict) -> None:
        self.leases.adopt(msg["new_owner"])
        self._cascade(self.store.fork(msg["id"], msg["old_owner"], msg["new_owner"]))

    def _cascade(self, removed: list[Any]) -> None:
        """A removed owning pointer deletes its target, one hop further down the chain."""
        for obj in removed:
            if isinstance(obj, ChainRef) and obj.owning:
                self._send_peer(obj.location, message(DEL, ids=[obj.id_at_location]))

    def _hand_over(self, record: ChainRef, new_owner: str) -> None:
        """Tell a chain hop's target holder that the hop now belongs to ``new_owner``."""
        if record.owning:
            self._send_peer(record.location, message(
                FORK, id=record.id_at_location, old_owner=self.ref.incarnation, new_owner=new_owner))

    # ------------------------------------------------------------------ observations
    def _observe(self, identity: bytes, msg: dict, action: Callable[[], Any]) -> None:
        """Flush downstream, then perform ``action`` and reply — unless earlier commands failed."""
        def finish() -> None:
            failures = self.failures.pop(msg.get("origin", ""), [])
            if failures:
                self._send_reply(identity, reply(msg["req"], error=failures[0], failures=failures[1:]))
                return
            try:
                value = action()
            except Exception as exc:
                self._send_reply(identity, reply(msg["req"], error=Failure.from_exception(exc, self.ref.id)))
                return
            if value is not _DEFERRED:
                self._send_reply(identity, reply(msg["req"], value=value))

        self._flush_downstream(msg, finish)

    def _flush_downstream(self, msg: dict, then: Callable[[], None]) -> None:
        complete = needs_complete_flush(msg)
        targets, self.dirty = self.dirty, set()
        if complete:
            targets |= self.dirty_handoffs
            self.dirty_handoffs = set()
        else:
            self.dirty_handoffs -= targets
        if not targets:
            then()
            return
        flush = {"complete": True} if complete else {}
        origin = msg.get("origin", "")
        timeout = float(msg.get("timeout") or DEFAULT_PEER_TIMEOUT) * 0.8
        join = _Join(len(targets), then)
        for incarnation in targets:
            peer = self.peers.refs[incarnation]
            req = new_id()
            self.peers.send(peer, message(FLUSH, req=req, origin=origin, timeout=timeout, **flush))
            self.waiting[req] = _Waiter(time.monotonic() + timeout,
                                        self._flush_acknowledged(origin, join, incarnation),
                                        self._flush_timed_out(origin, peer, join))

    def _flush_acknowledged(self, origin: str, join: _Join, incarnation: str) -> Callable[[dict], None]:
        def on_reply(ack: dict) -> None:
            self.unresponsive.discard(incarnation)
            for failure in ([ack["error"]] if ack.get("error") else []) + list(ack.get("failures", [])):
                self._record_failure(origin, failure)
            join.arrive()
        return on_reply

    def _flush_timed_out(self, origin: str, peer: WorkerRef, join: _Join) -> Callable[[], None]:
        def on_timeout() -> None:
            exc = WorkerUnavailable(peer.id, peer.address, f"no answer from {peer.id!r} to "
                                    f"{self.ref.id!r} while flushing a chain")
            self._record_failure(origin, Failure.from_exception(exc, self.ref.id))
            self.unresponsive.add(peer.incarnation)
            join.arrive()
        return on_timeout

    def _on_flush(self, sender: str, identity: bytes, msg: dict) -> None:
        self._observe(identity, msg, lambda: True)

    def _on_get(self, sender: str, identity: bytes, msg: dict) -> None:
        """Return objects (and remove them) or attributes (which stay); ``refs`` may batch."""
        def fetch(ref: Ref) -> Any:
            if ref.attr is not None:
                return resolve_ref(self.store, ref)  # a ChainRef stays one, non-owning
            obj = self.store.take(ref.id)
            if isinstance(obj, Failure):
                raise obj.to_exception()
            if isinstance(obj, ChainRef):
                self._hand_over(obj, sender)  # ownership of the next hop goes to the requester
            return obj

        def take_all() -> Any:
            refs = msg["refs"]
            for ref in refs:  # check everything first: an error must not lose what was taken
                obj = self.store.get(ref.id)
                if isinstance(obj, Failure):
                    raise obj.to_exception()
            return [fetch(ref) for ref in refs]
        self._observe(identity, msg, take_all)

    def _on_objects(self, sender: str, identity: bytes, msg: dict) -> None:
        if msg.get("count_only"):  # object_count() and repr: no tensor crosses the wire
            self._observe(identity, msg, lambda: len(self.store))
            return

        def snapshot() -> dict:
            return {object_id: dataclasses.replace(obj, owning=False, owner=self.ref)
                    if isinstance(obj, ChainRef) else obj
                    for object_id, obj in self.store.items()}
        self._observe(identity, msg, snapshot)

    def _on_info(self, sender: str, identity: bytes, msg: dict) -> None:
        """Shape, dtype and requires_grad of an object (or of its attribute; None if unset)."""
        def info() -> TensorMeta | None:
            ref: Ref = msg["ref"]
            obj = self.store.get(ref.id)
            if isinstance(obj, Failure):
                raise obj.to_exception()
            if isinstance(obj, ChainRef):
                return obj.meta
            if ref.attr is not None:
                check_reference_attribute(ref.attr)
                obj = getattr(obj, ref.attr)
                if obj is None:
                    return None
            if not isinstance(obj, torch.Tensor):
                raise TypeError(f"the object under id {ref.id} is a {type(obj).__name__}, not a "
                                f"tensor (an operation whose result structure depends on the "
                                f"data): fetch it with .get()")
            return describe(obj)
        self._observe(identity, msg, info)

    def _on_move(self, sender: str, identity: bytes, msg: dict) -> None:
        """Store the objects on the destination (one message carries them all); delete them
        here only once the destination has confirmed every one."""
        ids, new_ids = _object_ids(msg["ids"]), _object_ids(msg["new_ids"])
        if len(ids) != len(new_ids) or not ids:
            raise ProtocolError(f"a move needs as many new ids as ids, at least one; got "
                                f"{len(ids)} and {len(new_ids)}")

        def start() -> Any:
            objects = [self.store.get(object_id) for object_id in ids]
            for obj in objects:
                if isinstance(obj, Failure):
                    raise obj.to_exception()
            dest: WorkerRef = msg["dest"]
            timeout = float(msg.get("timeout") or DEFAULT_PEER_TIMEOUT) * 0.8
            acks: list[dict] = []
            join = _Join(len(ids), lambda: self._move_stored(identity, msg, objects, acks))
            for object_id, new_object_id, obj in zip(ids, new_ids, objects):
                owner = self.store.owner(object_id) or sender
                payload = obj
                req = new_id()
                self.peers.queue(dest, message(STORE, req=req, origin=msg.get("origin", ""),
                                               id=new_object_id, obj=payload, owner=owner))
                self.waiting[req] = _Waiter(time.monotonic() + timeout,
                                            lambda ack: (acks.append(ack), join.arrive()),
                                            lambda: (acks.append({"error": self._move_failure(dest)}),
                                                     join.arrive()))
            return _DEFERRED
        self._observe(identity, msg, start)

    def _move_stored(self, identity: bytes, msg: dict, objects: list[Any], acks: list[dict]) -> None:
        errors = [ack["error"] for ack in acks if ack.get("error")]
        if errors:  # nothing is deleted here: the data stays where it was
            self._send_reply(identity, reply(msg["req"], error=errors[0]))
            return
        for object_id, obj in zip(msg["ids"], objects):
            if object_id in self.store and self.store.get(object_id) is obj:
                self.store.take(object_id)
            if isinstance(obj, ChainRef):
                self._hand_over(obj, msg["dest"].incarnation)
        self._send_reply(identity, reply(msg["req"], value=msg["new_ids"]))

    def _move_failure(self, dest: WorkerRef) -> Failure:
        exc = WorkerUnavailable(dest.id, dest.address, f"move from {self.ref.id!r} got no "
                                f"confirmation; the data stays on {self.ref.id!r}")
        return Failure.from_exception(exc, self.ref.id)

    def _on_ping(self, sender: str, identity: bytes, msg: dict) -> None:
        self._send_reply(identity, reply(msg["req"], value=self.stats()))

    def stats(self) -> dict:
        """Who this worker is and what it has seen: the PING answer."""
        return {"ref": self.ref, "objects": len(self.store), "safe": self.safe,
                "threads": torch.get_num_threads(),
                "lease_seconds": self.leases.lease_seconds, "lease_sweeps": self.leases.sweeps,
                "rejected": self.rejections.total, "rejected_by_reason": dict(self.rejections.by_reason),
                **self.counters, **self.vitals.snapshot(self.store.values())}

    def _on_renew(self, sender: str, identity: bytes, msg: dict) -> None:
        """The lease was renewed on receipt; a worker asking also learns our lease."""
        if msg.get("req"):
            self._send_reply(identity, reply(msg["req"], value=self.leases.lease_seconds))

    # ------------------------------------------------------------------ leases
    def _tick(self) -> None:
        now = time.monotonic()
        if now < self._next_tick:
            return
        self._expire_leases(now)
        self._renew_at_peers(now)
        interval = self.leases.sweep_interval()
        shortest = self.renewals.shortest()
        if shortest is not None:
            interval = min(interval, shortest / 4)
        self._next_tick = now + max(0.05, interval)

    def _expire_leases(self, now: float) -> None:
        for incarnation in self.leases.expired(self.store.owners(), now):
            ids = self.store.owned_by(incarnation)
            log.warning("lease of %s expired: freeing %d objects", incarnation, len(ids))
            self.counters["expired_objects"] += len(ids)
            self.failures.pop(incarnation, None)
            for object_id in ids:
                self._cascade([self.store.take(object_id)])

    def _renew_at_peers(self, now: float) -> None:
        """Keep alive what our stored pointers own on other workers."""
        targets = {obj.location.incarnation: obj.location for obj in self.store.values()
                   if isinstance(obj, ChainRef) and obj.owning}
        for incarnation in self.renewals.due(targets, now):
            req = new_id()
            self.peers.send(targets[incarnation], message(RENEW, req=req, origin=self.ref.incarnation))
            self.waiting[req] = _Waiter(
                now + DEFAULT_PEER_TIMEOUT,
                lambda answer, incarnation=incarnation: self.renewals.learn(incarnation, answer.get("value")),
                lambda: None)

    def _on_shutdown(self, sender: str, identity: bytes, msg: dict) -> None:
        self._send_reply(identity, reply(msg["req"], value=True))
        self._stop_reason = f"shutdown requested by {sender}"


_DEFERRED = object()


def _object_ids(value: Any) -> list[int]:
    """``value`` as a list of object ids, or a :class:`ProtocolError` saying what is wrong."""
    if not isinstance(value, (list, tuple)) or not all(
            type(item) is int and 0 <= item < 1 << 64 for item in value):
        raise ProtocolError(f"object ids must be a list of non-negative 64-bit ints, got {value!r:.60}")
    return list(value)
