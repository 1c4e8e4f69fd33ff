"""What a worker does with each kind of authenticated request.

One method per message kind, all with the signature ``(sender, identity, msg)``: ``sender`` is
the requesting process (incarnation), ``identity`` the routing identity to reply to. The loop
(:mod:`syftzmq.worker.server`) has already verified, decoded and addressed the message; it
calls :meth:`Handlers.handle`, which applies what the request carries first (queued messages in
``before``, piggybacked deletes in ``release``) and then the request itself.

Fire-and-forget kinds (``STORE``, ``MOVE_IN``, ``CMD``, ``DEL``, ``FORK``, ``RENEW``,
``BATCH``) change the store and answer nothing (unless asked with a ``req``). Observations (``GET``, ``OBJECTS``,
``INFO``, ``MOVE``, ``FLUSH``, ``SEARCH``, ``CLEAR``) go through :meth:`Handlers._observe`: flush downstream first
(:mod:`syftzmq.worker.downstream`), then fail with whatever the requester's earlier commands
left in the failure record (:mod:`syftzmq.worker.failures`), else act and reply.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import weakref
from typing import Any, Callable

import torch

from ..core.allowlist import check_reference_attribute
from ..core.failures import Failure
from ..core.ids import new_id
from ..core.messages import (AFTER, BATCH, BATCHABLE, BEFORE, CLEAR, CMD, CONFIRMS, DEL, FLUSH, FORK,
                             GET, HELD, INFO, MOVE, MOVE_IN, MOVE_OUTCOME, OBJECTS, PING, RELEASES, RENEW, SEARCH,
                             SHUTDOWN, STORE, check_fields, message, reply)
from ..core.meta import TensorMeta, describe
from ..core.ops import op_from_wire
from ..core.refs import ChainRef, Ref, WorkerRef
from ..errors import (IdCollisionError, MessageTooLarge, OperationRefused, ProtocolError,
                      WorkerUnavailable)
from ..wire import shm
from ..wire.envelope import MAX_MESSAGE_BYTES
from ..wire.shm_map import deferred_unmaps
from .deliveries import MoveLog, Unconfirmed
from .downstream import Downstream, Waiters, peer_timeout, requested_liveness
from .execute import DependencyFailed, resolve_ref, run_command
from . import handover
from .failures import FailureRecord, raise_if_failed
from .leases import Leases
from .store import ObjectStore
from .tags import check_description, check_tags, check_terms
from .validate import check_owner, check_received, check_worker_ref, object_ids, short
from .vitals import stored_bytes

log = logging.getLogger("syftzmq.worker")

Handler = Callable[[str, bytes, dict], None]
_DEFERRED = object()  # an observation whose reply is sent later, by a callback
_MISSING = object()


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
        self.unconfirmed = Unconfirmed()  # what GETs took, until the requester confirms
        self.moves = MoveLog()            # outcomes of moves, for clients whose wait gave up
        # what one message may carry here, and so (a cluster's workers share it) to a peer
        self.max_message_bytes = MAX_MESSAGE_BYTES
        self.table: dict[str, Handler] = {
            STORE: self.on_store, CMD: self.on_command, DEL: self.on_delete, FORK: self.on_fork,
            GET: self.on_get, OBJECTS: self.on_objects, INFO: self.on_info, MOVE: self.on_move,
            FLUSH: self.on_flush, PING: self.on_ping, SHUTDOWN: self.on_shutdown,
            RENEW: self.on_renew, SEARCH: self.on_search, CLEAR: self.on_clear,
            MOVE_IN: self.on_move_in, MOVE_OUTCOME: self.on_move_outcome,
            BATCH: lambda sender, identity, msg: None}  # its content came in ``before``

    # ------------------------------------------------------------------ dispatch
    def handle(self, sender: str, identity: bytes, msg: dict) -> None:
        """Apply ``msg`` and what it carries; any failure becomes a reply or a record.

        What this worker forwards meanwhile carries the message's ``after`` on (see
        :mod:`syftzmq.worker.arrival_order`)."""
        confirmed_later = None
        outer = msg.get(AFTER)
        try:
            if BEFORE in msg:
                self._apply_queued(sender, identity, msg, outer)
            elif msg["kind"] == RENEW:  # a lease renewal with nothing riding on it, counted
                self.counters["lone_renewals"] += 1  # apart: it comes on a timer, not per step
            self.downstream.after = outer
            check_fields(msg)
            if msg["kind"] == GET and CONFIRMS in msg and RELEASES not in msg:
                # A get's answer cannot depend on the objects it confirms (ids are never
                # reused, a fetched pointer never fetches again): they are dropped once the
                # answer has left, not before it. Checked now, so an error still fails the get.
                confirmed_later = object_ids(msg[CONFIRMS] or [])
            elif RELEASES in msg or CONFIRMS in msg:
                self._apply_piggybacked_releases(sender, msg)
            self.table[msg["kind"]](sender, identity, msg)
        except Exception as exc:
            self.fail(identity, msg, exc)
        finally:
            self.downstream.after = None
        if confirmed_later:
            self._drop_confirmed(sender, confirmed_later)

    def fail(self, identity: bytes, msg: dict, exc: BaseException) -> None:
        """Report a failed request: as a reply if one is awaited, else at the next observation."""
        answer = self.failures.report(msg, exc)
        if answer is not None:
            self.send_reply(identity, answer)

    def _apply_queued(self, sender: str, identity: bytes, msg: dict, after: Any = None) -> None:
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
                kind = short(inner.get("kind")) if isinstance(inner, dict) else type(inner).__name__
                self.fail(identity, {"origin": msg.get("origin", "")}, ProtocolError(
                    f"a queued message must be one of {sorted(BATCHABLE)}; got {kind}"))
                continue
            try:
                self.downstream.after = inner.get(AFTER, after)
                check_fields(inner)
                if RELEASES in inner or CONFIRMS in inner:
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
                self.downstream.cascade(self.store.delete(object_id, sender), _origin(msg))
            self.unconfirmed.confirm(sender, ids)  # a pointer died before its get was confirmed
        confirmed = msg.get(CONFIRMS)
        if confirmed:
            self._drop_confirmed(sender, object_ids(confirmed))

    def _drop_confirmed(self, sender: str, confirmed: list[int]) -> None:
        """``sender`` has received these objects: the copies held for a retry go."""
        if confirmed:
            dropped = self.unconfirmed.take(sender, confirmed)
            if not all(_small_tensor(obj) for obj in dropped):
                with deferred_unmaps():  # the request they rode on must not wait for the freeing
                    dropped.clear()

    # ------------------------------------------------------------------ fire-and-forget requests
    def on_store(self, sender: str, identity: bytes, msg: dict) -> None:
        obj = self._held_parameter(sender, msg) if HELD in msg else msg.get("obj")
        self._put(*self._admitted(sender, msg["id"], obj, msg.get("owner"), msg))
        if msg.get("req"):
            self.send_reply(identity, reply(msg["req"], value=True))

    def _held_parameter(self, sender: str, msg: dict) -> torch.nn.Parameter:
        """A parameter over the data of what the sender's ``GET`` took under ``held`` and it
        has not confirmed (consumed here: the sender has its value, bitwise equal)."""
        held, requires_grad = msg[HELD], msg.get("requires_grad")
        if type(held) is not int or type(requires_grad) is not bool:
            raise ProtocolError("a store of a held copy needs an integer id and requires_grad")
        taken = self.unconfirmed.take(sender, [held])
        if not taken or type(taken[0]) is not torch.nn.Parameter:
            raise ProtocolError(f"no fetched parameter {held} is held for the sender")
        return torch.nn.Parameter(taken[0].detach(), requires_grad=requires_grad)

    def _admitted(self, sender: str, object_id: Any, obj: Any, owner: Any, labels: dict) -> tuple:
        """``obj`` checked for storing under ``object_id``, as :meth:`_put`'s arguments:
        (id, object, owner — ``sender`` unless one is named —, tags, description)."""
        object_ids([object_id])
        tags, description = check_tags(labels.get("tags")), check_description(labels.get("description"))
        if (tags or description is not None) and not isinstance(obj, torch.Tensor):
            raise ProtocolError(f"tags and a description apply to tensors only; the object "
                                f"stored under id {object_id} is a {type(obj).__name__}")
        return object_id, check_received(obj), check_owner(owner) or sender, tags, description

    def _put(self, object_id: int, obj: Any, owner: str, tags: frozenset, description: Any) -> None:
        self.store.put(object_id, obj, owner)
        self.store.tags.add(object_id, tags, description)
        self.leases.adopt(owner)

    def on_command(self, sender: str, identity: bytes, msg: dict) -> None:
        self.counters["commands"] += 1
        object_ids(msg.get("results"))  # malformed: no failure is stored under junk ids
        try:
            forward = run_command(self.store, msg, op_from_wire(msg.get("op"), self.safe),
                                  sender, self.me)
        except Exception as exc:
            failure = exc.failure if isinstance(exc, DependencyFailed) else self.failures.failure(exc)
            for result_id in msg.get("results", []):
                if result_id not in self.store:
                    self.store.put(result_id, failure, sender)
            self.failures.record(msg.get("origin", ""), failure)
            return
        if forward is not None:
            self.downstream.send(forward.to, forward.message)

    def on_delete(self, sender: str, identity: bytes, msg: dict) -> None:
        """Delete the requester's objects; ``owner`` deletes on an owner's behalf, as ``STORE``
        stores on one's behalf (a move's source takes back the copy of a move that failed)."""
        requester = check_owner(msg.get("owner")) or sender
        for object_id in object_ids(msg["ids"]):
            self.downstream.cascade(self.store.delete(object_id, requester), _origin(msg))
        self.unconfirmed.confirm(sender, msg["ids"])

    def on_fork(self, sender: str, identity: bytes, msg: dict) -> None:
        self.leases.adopt(msg["new_owner"])
        self.downstream.cascade(self.store.fork(msg["id"], msg["old_owner"], msg["new_owner"]),
                                _origin(msg))

    def on_renew(self, sender: str, identity: bytes, msg: dict) -> None:
        """The lease was renewed on receipt; a worker asking also learns our lease."""
        if msg.get("req"):
            self.send_reply(identity, reply(msg["req"], value=self.leases.lease_seconds))

    # ------------------------------------------------------------------ observations
    def _observe(self, identity: bytes, msg: dict, action: Callable[..., Any], *args: Any,
                 respond: Callable[[dict], None] | None = None) -> None:
        """Flush downstream, then perform ``action(*args)`` and reply — unless earlier commands
        failed. Replies go through ``respond`` when given (a move records its outcome there).

        With nothing to flush (the common case) the answer is made at once, without the
        closure a deferred answer needs."""
        if self.downstream.has_pending(msg.get("origin", "")):
            self.downstream.flush(msg, lambda: self._answer(identity, msg, respond, action, args))
        else:
            self._answer(identity, msg, respond, action, args)

    def _answer(self, identity: bytes, msg: dict, respond: Callable[[dict], None] | None,
                action: Callable[..., Any], args: tuple) -> None:
        """The answer to the observation ``msg``: the failures its origin's earlier commands
        left, else the value of ``action(*args)`` (or its error)."""
        answer = self.failures.failed_reply(msg["req"], msg.get("origin", ""))
        if answer is None:
            try:
                value = action(*args)
            except Exception as exc:
                answer = self.failures.error_reply(msg["req"], exc)
            else:
                if value is _DEFERRED:
                    return
                answer = reply(msg["req"], value=value)
        if respond is None:
            self.send_reply(identity, answer)
        else:
            respond(answer)

    def on_flush(self, sender: str, identity: bytes, msg: dict) -> None:
        self._observe(identity, msg, lambda: True)

    def on_get(self, sender: str, identity: bytes, msg: dict) -> None:
        """Return objects (and remove them) or attributes (which stay); ``refs`` may batch.

        A taken object is held until the requester confirms receipt (see
        :mod:`syftzmq.worker.deliveries`): a retry of a get whose answer was lost finds it there.
        """
        self._observe(identity, msg, self._take_all, sender, msg)

    def _held(self, sender: str, object_id: int) -> Any:
        """What a get of ``object_id`` by ``sender`` already took and was not confirmed, else
        _MISSING."""
        if object_id in self.store:
            return _MISSING
        return self.unconfirmed.find(sender, object_id, _MISSING)

    def _take_all(self, sender: str, msg: dict) -> list[Any]:
        """``refs`` names each target as its plain id (a whole object, taken) or as a
        :class:`Ref` (an attribute, which stays)."""
        refs = msg["refs"]
        for ref in refs:  # check everything first: an error must not lose what was taken
            object_id = ref if type(ref) is int else ref.id
            if (type(ref) is not int and ref.attr is not None) \
                    or self._held(sender, object_id) is _MISSING:
                raise_if_failed(self.store.get(object_id))
        return [self._fetch(sender, msg, ref) for ref in refs]

    def _fetch(self, sender: str, msg: dict, ref: "int | Ref") -> Any:
        if type(ref) is not int:
            if ref.attr is not None:
                return resolve_ref(self.store, ref)  # a ChainRef stays one, non-owning
            ref = ref.id
        again = self._held(sender, ref)
        if again is not _MISSING:  # a retry: the first answer never reached the requester
            return again
        # held below, out of every command's reach; autograd may keep reading it (see handover)
        sent = handover.offer(self.store, ref, autograd_may_keep=True)
        obj = raise_if_failed(self.store.take(ref))
        if isinstance(obj, ChainRef):
            # the next hop now belongs to the requester
            self.downstream.hand_over(obj, sender, _origin(msg))
        self.unconfirmed.hold(sender, ref, obj)
        return sent

    def on_objects(self, sender: str, identity: bytes, msg: dict) -> None:
        """A snapshot of the store (``ids``: of those ids only, the ones present), with what gets
        took that their requesters have not confirmed yet (until then it is where it was)."""
        if msg.get("count_only"):  # object_count() and repr: no tensor crosses the wire
            self._observe(identity, msg, lambda: len(self.store) + len(self.unconfirmed))
            return
        wanted = None if msg.get("ids") is None else set(object_ids(msg["ids"]))

        def snapshot() -> dict:
            return {object_id: dataclasses.replace(obj, owning=False, owner=self.me)
                    if isinstance(obj, ChainRef) else obj
                    for object_id, obj in [*self.store.items(), *self.unconfirmed.items()]
                    if wanted is None or object_id in wanted}
        self._observe(identity, msg, snapshot)

    def on_search(self, sender: str, identity: bytes, msg: dict) -> None:
        """Records of the stored tensors matching every term of ``query`` (see
        :mod:`syftzmq.worker.tags`); only their metadata travels, never their data."""
        terms = check_terms(msg["query"])

        def is_tensor(object_id: int) -> bool:
            return object_id in self.store and isinstance(self.store.get(object_id), torch.Tensor)

        def records() -> list[dict]:
            index = self.store.tags
            return [{"id": object_id, "meta": describe(self.store.get(object_id)),
                     "tags": sorted(index.tags_of(object_id)),
                     "description": index.description_of(object_id),
                     "owned": self.store.owner(object_id) == sender}
                    for object_id in index.search(terms, is_tensor) if is_tensor(object_id)]
        self._observe(identity, msg, records)

    def on_clear(self, sender: str, identity: bytes, msg: dict) -> None:
        """Drop every object the requester owns here (stored pointers cascade down their
        chains); objects other processes own stay. Answers the dropped ids."""
        def clear() -> list[int]:
            ids = self.store.owned_by(sender)
            for object_id in ids:
                self.downstream.cascade(self.store.delete(object_id, sender), _origin(msg))
            return ids
        self._observe(identity, msg, clear)

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
        check_worker_ref(msg["dest"], "the destination of a move")
        if len(ids) != len(new_ids) or not ids:
            raise ProtocolError(f"a move needs as many new ids as ids, at least one; got "
                                f"{len(ids)} and {len(new_ids)}")
        move_id = msg.get("move_id")
        if move_id is not None:
            object_ids([move_id])
            if not self.moves.begin(move_id):
                raise OperationRefused(
                    f"move {move_id} was cancelled: its client gave up waiting and asked for its "
                    f"outcome before this worker saw it (or the id was used before); nothing "
                    f"was moved")

        def respond(answer: dict) -> None:
            if move_id is not None:
                self.moves.finish(move_id, answer.get("value") if answer.get("error") is None
                                  else None)
            self.send_reply(identity, answer)

        def start() -> Any:
            offers = [handover.offer(self.store, object_id) for object_id in ids]
            objects = [self.store.get(object_id) for object_id in ids]
            for obj in objects:
                raise_if_failed(obj)
            _check_move_size(objects, self.max_message_bytes)
            self._send_moved(sender, respond, msg, ids, new_ids, objects, offers)
            return _DEFERRED
        self._observe(identity, msg, start, respond=respond)

    def on_move_outcome(self, sender: str, identity: bytes, msg: dict) -> None:
        """Whether the move ``move_id`` happened (``done``, with the new ids), did not
        (``failed``), or was never seen (``cancelled`` now, so it never will be); a move still
        waiting for its destination is answered once it is settled."""
        self.moves.ask(msg["move_id"], lambda outcome: self.send_reply(
            identity, reply(msg["req"], value=outcome)))

    def _send_moved(self, sender: str, respond: Callable[[dict], None], msg: dict,
                    ids: list[int], new_ids: list[int], objects: list[Any],
                    offers: list[Any]) -> None:
        """Store ``objects`` on the move's destination: one ``MOVE_IN`` carries them all, and
        its one answer (or its timeout) settles the move; ``offers`` are the objects as they
        travel (pages lent where :mod:`.handover` allows)."""
        dest: WorkerRef = msg["dest"]
        owners = [self.store.owner(object_id) or sender for object_id in ids]
        lent = [weakref.ref(mapping) for mapping in map(handover.mapping_of, offers) if mapping]
        req = new_id()
        self.downstream.peers.queue(dest, message(
            MOVE_IN, req=req, origin=msg.get("origin", ""), ids=new_ids, objs=offers,
            owners=owners, labels=[self.store.tags.labels_of(object_id) for object_id in ids],
            move_id=msg.get("move_id"), replaces=msg.get("replaces")))  # see move_arrivals
        self.waiters.expect(
            req, time.monotonic() + peer_timeout(msg),
            lambda ack: self._move_stored(respond, msg, objects, owners, ack, lent),
            lambda *_: self._move_stored(respond, msg, objects, owners,
                                         {"error": self._move_failure(dest)}, lent),
            dest, requested_liveness(msg))

    def on_move_in(self, sender: str, identity: bytes, msg: dict) -> None:
        """A move's objects, from its source: every one is stored here, or none is (the source
        deletes its copies only once this answered that all of them are)."""
        ids, objs, owners, labels = msg["ids"], msg["objs"], msg["owners"], msg["labels"]
        if not ids or not len(ids) == len(objs) == len(owners) == len(labels) \
                or not all(isinstance(label, dict) for label in labels):
            raise ProtocolError(f"a move's objects need an object, an owner and labels (a dict) "
                                f"per id, at least one; got {len(ids)} ids, {len(objs)} objects, "
                                f"{len(owners)} owners and {len(labels)} labels")
        admitted = [self._admitted(sender, *fields) for fields in zip(ids, objs, owners, labels)]
        taken = [object_id for object_id in ids if object_id in self.store]
        if taken or len(set(ids)) != len(ids):
            raise IdCollisionError(f"a move's objects name ids already used here "
                                   f"({taken or 'twice in the move'}); nothing was stored")
        for entry in admitted:
            self._put(*entry)
        if msg.get("req"):
            self.send_reply(identity, reply(msg["req"], value=True))

    def _move_stored(self, respond: Callable[[dict], None], msg: dict, objects: list[Any],
                     owners: list[str], ack: dict, lent: list) -> None:
        """The destination answered (``ack``) or timed out: finish the move, or take it back.

        A failed move leaves the data here, and deletes, on its owners' behalf, whatever copies
        reached the destination; that delete travels behind the ``MOVE_IN`` on one connection,
        so a destination that was only frozen applies it after the objects and keeps no orphan. An
        object its owner deleted while it moved is deleted at the destination the same way.
        """
        dest: WorkerRef = msg["dest"]
        if ack.get("error"):  # nothing is deleted here: the data stays where it was
            for new_object_id, owner in zip(msg["new_ids"], owners):
                self.downstream.peers.queue(dest, message(DEL, ids=[new_object_id], owner=owner,
                                                          retracts=msg.get("move_id")))
            respond(reply(msg["req"], error=ack["error"]))
            return
        for object_id, new_object_id, obj, owner in zip(msg["ids"], msg["new_ids"], objects, owners):
            if object_id in self.store and self.store.get(object_id) is obj:
                self.store.take(object_id)
            else:  # deleted by its owner meanwhile: the copy must not outlive it
                self.downstream.peers.queue(dest, message(DEL, ids=[new_object_id], owner=owner))
                continue
            if isinstance(obj, ChainRef):
                self.downstream.hand_over(obj, dest.incarnation, _origin(msg))
        if lent:  # pages handed over: what is left here of them must not see the destination's
            with deferred_unmaps():
                objects.clear()
                obj = None
            handover.settle(lent)
        respond(reply(msg["req"], value=msg["new_ids"]))

    def _move_failure(self, dest: WorkerRef) -> Failure:
        exc = WorkerUnavailable(dest.id, dest.address, f"move from {self.me.id!r} got no "
                                f"confirmation; the data stays on {self.me.id!r}")
        return self.failures.failure(exc)

    # ------------------------------------------------------------------ the worker itself
    def on_ping(self, sender: str, identity: bytes, msg: dict) -> None:
        """Who this worker is and what it has seen; ``tagged``: objects in the tag index;
        with ``vitals``, also the bytes its tensors hold (a walk over the store)."""
        answer = {**self.stats(), "tagged": len(self.store.tags)}
        if msg.get("vitals") is True:
            answer["bytes_stored"] = stored_bytes(self.store.values())
        self.send_reply(identity, reply(msg["req"], value=answer))

    def on_shutdown(self, sender: str, identity: bytes, msg: dict) -> None:
        self.send_reply(identity, reply(msg["req"], value=True))
        self.stop(f"shutdown requested by {sender}")


def _small_tensor(obj: Any) -> bool:
    """A dense tensor over memory too small ever to be shared: dropping it unmaps nothing."""
    if type(obj) is not torch.Tensor or obj.layout is not torch.strided or obj.is_quantized:
        return False  # (a sparse tensor has no storage to ask)
    return obj.untyped_storage().nbytes() < shm.THRESHOLD


def _origin(msg: dict) -> str:
    """The client ``msg`` travels for (the loop has checked that it is a string)."""
    return msg.get("origin", "")


def _check_move_size(objects: list[Any], limit: int) -> None:
    """A move's objects travel as one message, which the destination accepts up to its limit
    (a cluster's workers share this worker's): above it, refuse now, naming the sizes, instead
    of sending what the destination would drop. Nothing moves."""
    size = sum(obj.numel() * obj.element_size() for obj in objects if isinstance(obj, torch.Tensor))
    if size > limit:
        raise MessageTooLarge("a move", size, limit,
                              "move fewer or smaller tensors at a time (the data stays here)")
