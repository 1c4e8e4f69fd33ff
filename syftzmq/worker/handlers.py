"""What a worker does with each kind of authenticated request.

One method per message kind, all with the signature ``(sender, identity, msg)``: ``sender`` is
the requesting process (incarnation), ``identity`` the routing identity to reply to. The loop
(:mod:`syftzmq.worker.server`) has already verified, decoded and addressed the message; it
calls :meth:`Handlers.handle`, which applies what the request carries first (queued messages in
``before``, piggybacked deletes in ``release``) and then the request itself.

Fire-and-forget kinds (``STORE``, ``CMD``, ``DEL``, ``FORK``, ``RENEW``, ``BATCH``) change the
store and answer nothing (unless asked with a ``req``). Observations (``GET``, ``OBJECTS``,
``INFO``, ``MOVE``, ``FLUSH``) go through :meth:`Handlers._observe`: flush downstream first
(:mod:`syftzmq.worker.downstream`), then fail with whatever the requester's earlier commands
left in the failure record (:mod:`syftzmq.worker.failures`), else act and reply.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Callable

import torch

from ..core.allowlist import check_reference_attribute
from ..core.failures import Failure
from ..core.ids import new_id
from ..core.messages import (BATCH, BATCHABLE, BEFORE, CMD, DEL, FLUSH, FORK, GET, INFO, MOVE,
                             OBJECTS, PING, RELEASES, RENEW, SHUTDOWN, STORE, check_fields,
                             message, reply)
from ..core.meta import TensorMeta, describe
from ..core.ops import op_from_wire
from ..core.refs import ChainRef, Ref, WorkerRef
from ..errors import ProtocolError, WorkerUnavailable
from .downstream import Downstream, Join, Waiters, peer_timeout, requested_liveness
from .execute import DependencyFailed, resolve_ref, run_command
from .failures import FailureRecord, raise_if_failed
from .leases import Leases
from .store import ObjectStore

log = logging.getLogger("syftzmq.worker")

Handler = Callable[[str, bytes, dict], None]
_DEFERRED = object()  # an observation whose reply is sent later, by a callback


class Handlers:
    """The request handlers of one worker, over its store, leases and downstream peers.

    ``send_reply(identity, msg)`` answers a requester; ``stats()`` is the ``PING`` answer;
    ``stop(reason)`` ends the loop after the current message.
    """

    def __init__(self, me: WorkerRef, store: ObjectStore, leases: Leases,
                 failures: FailureRecord, downstream: Downstream, waiters: Waiters,
                 send_reply: Callable[[bytes, dict], None], stats: Callable[[], dict],
                 stop: Callable[[str], None], safe: bool, counters: dict) -> None:
        self.me = me
        self.store = store
        self.leases = leases
        self.failures = failures
        self.downstream = downstream
        self.waiters = waiters
        self.send_reply = send_reply
        self.stats = stats
        self.stop = stop
        self.safe = safe
        self.counters = counters
        self.table: dict[str, Handler] = {
            STORE: self.on_store, CMD: self.on_command, DEL: self.on_delete, FORK: self.on_fork,
            GET: self.on_get, OBJECTS: self.on_objects, INFO: self.on_info, MOVE: self.on_move,
            FLUSH: self.on_flush, PING: self.on_ping, SHUTDOWN: self.on_shutdown,
            RENEW: self.on_renew,
            BATCH: lambda sender, identity, msg: None}  # its content came in ``before``

    # ------------------------------------------------------------------ dispatch
    def handle(self, sender: str, identity: bytes, msg: dict) -> None:
        """Apply ``msg`` and what it carries; any failure becomes a reply or a record."""
        try:
            self._apply_queued(sender, identity, msg)
            check_fields(msg)
            self._apply_piggybacked_releases(sender, msg)
            self.table[msg["kind"]](sender, identity, msg)
        except Exception as exc:
            self.fail(identity, msg, exc)

    def fail(self, identity: bytes, msg: dict, exc: BaseException) -> None:
        """Report a failed request: as a reply if one is awaited, else at the next observation."""
        answer = self.failures.report(msg, exc)
        if answer is not None:
            self.send_reply(identity, answer)

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
                self.fail(identity, {"origin": msg.get("origin", "")}, ProtocolError(
                    f"a queued message must be one of {sorted(BATCHABLE)}; got {kind!r:.40}"))
                continue
            try:
                check_fields(inner)
                self._apply_piggybacked_releases(sender, inner)
                self.table[inner["kind"]](sender, identity, inner)
            except Exception as exc:
                self.fail(identity, inner, exc)

    def _apply_piggybacked_releases(self, sender: str, msg: dict) -> None:
        """Deletes that rode along on another message (``RELEASES``), applied *before* it.

        The client queued them when pointers died, i.e. before it issued this message, so
        the message cannot use those objects: deleting first is the order they happened in.
        """
        ids = msg.get(RELEASES)
        if ids:
            for object_id in object_ids(ids):
                self.downstream.cascade(self.store.delete(object_id, sender))

    # ------------------------------------------------------------------ fire-and-forget requests
    def on_store(self, sender: str, identity: bytes, msg: dict) -> None:
        object_ids([msg["id"]])
        owner = msg.get("owner") or sender
        self.store.put(msg["id"], msg["obj"], owner)
        self.leases.adopt(owner)
        if msg.get("req"):
            self.send_reply(identity, reply(msg["req"], value=True))

    def on_command(self, sender: str, identity: bytes, msg: dict) -> None:
        self.counters["commands"] += 1
        object_ids(msg.get("results"))  # malformed: no failure is stored under junk ids
        try:
            wire_op = msg.get("op")
            forward = run_command(self.store, {**msg, "op": op_from_wire(wire_op, self.safe)},
                                  sender, self.me)
        except Exception as exc:
            failure = exc.failure if isinstance(exc, DependencyFailed) else self.failures.failure(exc)
            for result_id in msg.get("results", []):
                if result_id not in self.store:
                    self.store.put(result_id, failure, sender)
            self.failures.record(msg.get("origin", ""), failure)
            return
        if forward is not None:
            forward.message["op"] = wire_op  # the next hop resolves the name itself
            self.downstream.send(forward.to, forward.message)

    def on_delete(self, sender: str, identity: bytes, msg: dict) -> None:
        for object_id in msg["ids"]:
            self.downstream.cascade(self.store.delete(object_id, sender))

    def on_fork(self, sender: str, identity: bytes, msg: dict) -> None:
        self.leases.adopt(msg["new_owner"])
        self.downstream.cascade(self.store.fork(msg["id"], msg["old_owner"], msg["new_owner"]))

    def on_renew(self, sender: str, identity: bytes, msg: dict) -> None:
        """The lease was renewed on receipt; a worker asking also learns our lease."""
        if msg.get("req"):
            self.send_reply(identity, reply(msg["req"], value=self.leases.lease_seconds))

    # ------------------------------------------------------------------ observations
    def _observe(self, identity: bytes, msg: dict, action: Callable[[], Any]) -> None:
        """Flush downstream, then perform ``action`` and reply — unless earlier commands failed."""
        def finish() -> None:
            failed = self.failures.failed_reply(msg["req"], msg.get("origin", ""))
            if failed is not None:
                self.send_reply(identity, failed)
                return
            try:
                value = action()
            except Exception as exc:
                self.send_reply(identity, self.failures.error_reply(msg["req"], exc))
                return
            if value is not _DEFERRED:
                self.send_reply(identity, reply(msg["req"], value=value))

        self.downstream.flush(msg, finish)

    def on_flush(self, sender: str, identity: bytes, msg: dict) -> None:
        self._observe(identity, msg, lambda: True)

    def on_get(self, sender: str, identity: bytes, msg: dict) -> None:
        """Return objects (and remove them) or attributes (which stay); ``refs`` may batch."""
        def fetch(ref: Ref) -> Any:
            if ref.attr is not None:
                return resolve_ref(self.store, ref)  # a ChainRef stays one, non-owning
            obj = raise_if_failed(self.store.take(ref.id))
            if isinstance(obj, ChainRef):
                self.downstream.hand_over(obj, sender)  # the next hop now belongs to the requester
            return obj

        def take_all() -> Any:
            refs = msg["refs"]
            for ref in refs:  # check everything first: an error must not lose what was taken
                raise_if_failed(self.store.get(ref.id))
            return [fetch(ref) for ref in refs]
        self._observe(identity, msg, take_all)

    def on_objects(self, sender: str, identity: bytes, msg: dict) -> None:
        if msg.get("count_only"):  # object_count() and repr: no tensor crosses the wire
            self._observe(identity, msg, lambda: len(self.store))
            return

        def snapshot() -> dict:
            return {object_id: dataclasses.replace(obj, owning=False, owner=self.me)
                    if isinstance(obj, ChainRef) else obj
                    for object_id, obj in self.store.items()}
        self._observe(identity, msg, snapshot)

    def on_info(self, sender: str, identity: bytes, msg: dict) -> None:
        """Shape, dtype and requires_grad of an object (or of its attribute; None if unset)."""
        def info() -> TensorMeta | None:
            ref: Ref = msg["ref"]
            obj = raise_if_failed(self.store.get(ref.id))
            if isinstance(obj, ChainRef):
                return obj.meta
            if ref.attr is not None:
                check_reference_attribute(ref.attr)  # .grad or .data, never a free lookup
                obj = getattr(obj, ref.attr)
                if obj is None:
                    return None
            if not isinstance(obj, torch.Tensor):
                raise TypeError(f"the object under id {ref.id} is a {type(obj).__name__}, not a "
                                f"tensor (an operation whose result structure depends on the "
                                f"data): fetch it with .get()")
            return describe(obj)
        self._observe(identity, msg, info)

    def on_move(self, sender: str, identity: bytes, msg: dict) -> None:
        """Store the objects on the destination (one message carries them all); delete them
        here only once the destination has confirmed every one."""
        ids, new_ids = object_ids(msg["ids"]), object_ids(msg["new_ids"])
        if len(ids) != len(new_ids) or not ids:
            raise ProtocolError(f"a move needs as many new ids as ids, at least one; got "
                                f"{len(ids)} and {len(new_ids)}")

        def start() -> Any:
            objects = [self.store.get(object_id) for object_id in ids]
            for obj in objects:
                raise_if_failed(obj)
            self._send_moved(sender, identity, msg, ids, new_ids, objects)
            return _DEFERRED
        self._observe(identity, msg, start)

    def _send_moved(self, sender: str, identity: bytes, msg: dict, ids: list[int],
                    new_ids: list[int], objects: list[Any]) -> None:
        """Store ``objects`` on the move's destination, each confirmed (or timed out) alone."""
        dest: WorkerRef = msg["dest"]
        deadline = time.monotonic() + peer_timeout(msg)
        acks: list[dict] = []
        join = Join(len(ids), lambda: self._move_stored(identity, msg, objects, acks))
        for object_id, new_object_id, obj in zip(ids, new_ids, objects):
            owner = self.store.owner(object_id) or sender
            req = new_id()
            self.downstream.peers.queue(dest, message(STORE, req=req, origin=msg.get("origin", ""),
                                                      id=new_object_id, obj=obj, owner=owner))
            self.waiters.expect(req, deadline,
                                lambda ack: (acks.append(ack), join.arrive()),
                                lambda *_: (acks.append({"error": self._move_failure(dest)}),
                                            join.arrive()), dest, requested_liveness(msg))

    def _move_stored(self, identity: bytes, msg: dict, objects: list[Any], acks: list[dict]) -> None:
        errors = [ack["error"] for ack in acks if ack.get("error")]
        if errors:  # nothing is deleted here: the data stays where it was
            self.send_reply(identity, reply(msg["req"], error=errors[0]))
            return
        for object_id, obj in zip(msg["ids"], objects):
            if object_id in self.store and self.store.get(object_id) is obj:
                self.store.take(object_id)
            if isinstance(obj, ChainRef):
                self.downstream.hand_over(obj, msg["dest"].incarnation)
        self.send_reply(identity, reply(msg["req"], value=msg["new_ids"]))

    def _move_failure(self, dest: WorkerRef) -> Failure:
        exc = WorkerUnavailable(dest.id, dest.address, f"move from {self.me.id!r} got no "
                                f"confirmation; the data stays on {self.me.id!r}")
        return self.failures.failure(exc)

    # ------------------------------------------------------------------ the worker itself
    def on_ping(self, sender: str, identity: bytes, msg: dict) -> None:
        self.send_reply(identity, reply(msg["req"], value=self.stats()))

    def on_shutdown(self, sender: str, identity: bytes, msg: dict) -> None:
        self.send_reply(identity, reply(msg["req"], value=True))
        self.stop(f"shutdown requested by {sender}")


def object_ids(value: Any) -> list[int]:
    """``value`` as a list of object ids, or a :class:`ProtocolError` saying what is wrong."""
    if not isinstance(value, (list, tuple)) or not all(
            type(item) is int and 0 <= item < 1 << 64 for item in value):
        raise ProtocolError(f"object ids must be a list of non-negative 64-bit ints, got {value!r:.60}")
    return list(value)
