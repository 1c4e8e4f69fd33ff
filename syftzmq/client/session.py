"""The client session: what this process says to its workers, and the rules that order it.

Commands are fire-and-forget: the session records which workers have received commands since
they were last observed (*dirty* workers). An observation of worker W first flushes every other
dirty worker (one parallel round trip, skipped when W is the only one), then asks W, which
flushes whatever it forwarded downstream before answering. So an answer always reflects every
command issued before it, along chains too; and the common case — commands to one worker, then
``get`` from it — costs exactly one round trip.

The session is a facade over parts with one job each:

- :mod:`~syftzmq.client.connections`: sockets by worker incarnation, handshakes, restarts;
- :mod:`~syftzmq.client.sending`: the one way out, carrying the
  :mod:`~syftzmq.client.outbox` and keeping the chain-holder order (:mod:`~syftzmq.client.chains`);
- :mod:`~syftzmq.client.releases`: deletes of dead pointers, riding on the next message;
- :mod:`~syftzmq.client.round_trip`: requests, replies, and who must be flushed;
- :mod:`~syftzmq.client.liveness`: waiting as long as the worker is alive (probes);
- :mod:`~syftzmq.client.heartbeat`: lease renewal while the user's code is idle.
- :mod:`~syftzmq.client.moves`: moves in flight, and when one must be awaited;
- :mod:`~syftzmq.client.move_settling`: how a move in flight ends (done, failed, started again).

What stays here: commands, stores and typed requests (``get``, ``info``, ``objects``,
``search``, ``clear_objects``, ``move``, ``ping``, ``shutdown``), the observation protocol above, and closing.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

import torch
import zmq

from ..core import argtree
from ..core.ids import new_id, new_token
from ..core.messages import (ADDRESSED_TO, BATCH, CLEAR, CMD, DEL, FLUSH, FORK, GET, IDS_AT, INFO,
                             MOVE, MOVE_OUTCOME, MOVES_ABANDONED, MOVES_FIRST, OBJECTS, PING,
                             RELEASES, SEARCH, SHUTDOWN, STORE, message, needs_complete_flush,
                             probe_destination)
from ..core.meta import TensorMeta, describe
from ..core.ops import op_to_wire
from ..core.vocabulary import PLAIN_VALUES
from ..core.refs import ChainRef, Ref, WorkerRef
from ..errors import NotConnected, WorkerIdMismatch, WorkerTimeout, WorkerUnavailable
from ..security.keys import remove_session_key_file, session_key_file
from ..settings import SETTINGS, Settings
from ..tensor import unchanged
from ..tensor.pointer import PointerTensor
from ..wire import shm
from .chains import ChainHolders
from .connections import Connections
from .deliveries import MoveDoubt
from .move_settling import MoveSettler
from .moves import Following, MoveInFlight, MovesInFlight
from .outbox import starts_real_work
from .diagnose import no_answer
from .heartbeat import Heartbeat
from .live import LivePointers
from .liveness import ClientLiveness
from .releases import ReleaseQueue
from .round_trip import Pending, RoundTrips, reply_value
from .sending import Sender
from .stats import Stats

if TYPE_CHECKING:
    from .launcher import WorkerProcess

__all__ = ["ClientSession", "Stats"]

log = logging.getLogger("syftzmq.client")

CONNECT_TIMEOUT = 5.0  # seconds a handshake may take when no other bound is set
# A get that brought back more than this is confirmed at once (see ClientSession._confirm_now);
# smaller ones wait for the next message (a message of their own would cost more than it
# frees, and a model sent straight back reuses the worker's held copy: tensor.unchanged)
CONFIRM_AT_ONCE_BYTES = unchanged.MAX_BYTES


class ClientSession:
    """All of this process's conversations with workers."""

    def __init__(self, settings: Settings = SETTINGS,
                 make_handle: Callable[["ClientSession", WorkerRef], Any] | None = None) -> None:
        """``make_handle`` builds the handle for a worker this session learns of without one
        (``ptr.location`` of a pointer from a chain); the handles module passes its own."""
        self.settings = settings
        self._timeout = settings.timeout
        self._make_handle = make_handle or (lambda session, ref: ref)
        self.context = zmq.Context()
        self.ref = WorkerRef("me", None, f"me#{new_token(6)}")
        self.stats = Stats()
        self._lock = threading.RLock()
        self._live = LivePointers()
        self._heartbeat = Heartbeat(self.context, self.ref.incarnation, settings.lease_seconds)
        self._connections = Connections(self.context, self.ref.incarnation, self._heartbeat,
                                        self._send_timeout(), self._incarnations_named)
        self._liveness = ClientLiveness(self.context, self.ref.incarnation,
                                        self._connections.credentials, settings.liveness_timeout,
                                        settings.liveness_interval, self.stats)
        shm.keep_exports()  # a client's large sends write kept segments again (shm_spares)
        self._chains = ChainHolders()
        self._pending = Pending()
        self._sender = Sender(self.ref.incarnation, self._connections, self._chains,
                              self._pending, self.stats, self._lock,
                              max_queued=settings.batch, linger=settings.linger_seconds,
                              when_blocked=self._when_blocked)
        self._round_trips = RoundTrips(self._connections, self._sender.send_now, self._pending,
                                       self.stats, self._liveness)
        self._releases = ReleaseQueue(hold=settings.linger_seconds, max_held=settings.batch)
        self._moves = MovesInFlight()
        self._settler = MoveSettler(self._moves, self._round_trips, self._heartbeat,
                                    self._liveness, self._chains, self._start_move,
                                    self._abandon_move)
        self._handles: dict[str, Any] = {}
        self._safe_modes: dict[str, bool] = {}  # incarnation -> runs with --safe
        self._processes: list["WorkerProcess"] = []
        self._closed = False
        self._cluster_key_file: str | None = None
        atexit.register(self.close)

    # ------------------------------------------------------------------ workers
    def connect(self, address: str, key: bytes | None, expected_id: str | None = None,
                timeout: float | None = None, curve: Any = None) -> WorkerRef:
        """Open a connection to ``address`` and learn who answers there.

        ``curve`` (a :class:`syftzmq.security.curve.CurveClient`) encrypts the connection.
        Within ``timeout`` (default: the session's, else :data:`CONNECT_TIMEOUT`) it either
        connects or raises an error naming the likely cause and the fix
        (:mod:`syftzmq.client.diagnose`): nothing listening, a CURVE mismatch, an unknown
        client key, a key the worker rejects, a worker that answers nothing, another worker id.
        """
        seconds = timeout or self.timeout or CONNECT_TIMEOUT
        deadline = time.monotonic() + seconds
        with self._lock:
            probe, connection = self._connections.probe(address, key, curve, expected_id)
            try:
                try:
                    connection.handshake.wait(deadline)   # ZeroMQ's own account of the connection
                finally:
                    connection.end_handshake_watch()
                try:
                    ping = message(PING, **{ADDRESSED_TO: probe_destination(expected_id,
                                                                            address)})
                    info = self._round_trip({probe.incarnation: ping}, {probe.incarnation: probe},
                                            max(0.05, deadline - time.monotonic()))
                except NotConnected:
                    raise
                except TimeoutError:  # WorkerUnavailable, or a bound that ran out
                    raise no_answer(probe.id, address, seconds) from None
            except BaseException:
                self._connections.end_probe(probe, failed=True)
                raise
            finally:
                self._pending.forget(probe.incarnation)  # a probe's name is never used again
            info = info[probe.incarnation]
            ref: WorkerRef = info["ref"]
            mismatch = expected_id is not None and ref.id != expected_id
            self._connections.end_probe(probe, failed=mismatch)
            if mismatch:
                raise WorkerIdMismatch(
                    f"the worker at {address} is {ref.id!r}, not {expected_id!r}: pass "
                    f"id={ref.id!r}, or the address of {expected_id!r} (each worker prints its "
                    f"id and address in its SYFTZMQ-READY line)")
            limit = info.get("max_message_bytes")
            if isinstance(limit, int) and limit > 0:
                connection.max_request_bytes = limit
            self._connections.adopt(ref, connection, key, curve, info.get("lease_seconds"))
            for earlier in self._connections.earlier_incarnations(ref):
                # the worker was restarted: what lived in its earlier incarnation is gone
                self.forget(earlier, replaced_by=ref)
            return ref

    def register(self, handle: Any) -> None:
        self._handles[handle.ref.incarnation] = handle

    def adopt(self, process: "WorkerProcess") -> None:
        """Stop ``process`` when this session closes."""
        self._processes.append(process)

    def handle(self, ref: WorkerRef) -> Any:
        """The handle for ``ref``: the user's own if there is one, else a new one."""
        found = self._handles.get(ref.incarnation)
        if found is None:
            found = self._make_handle(self, ref)
            self._handles[ref.incarnation] = found
        return found

    @property
    def timeout(self) -> float | None:
        """The bound on every observation and blocked send, in seconds; ``None`` (the
        default): they wait as long as the worker is alive."""
        return self._timeout

    @timeout.setter
    def timeout(self, seconds: float | None) -> None:
        self.set_timeout(seconds)

    def set_timeout(self, seconds: float | None) -> None:
        """Bound every later observation and blocked send (on every connection, open ones
        included); a call that runs out raises :class:`~syftzmq.errors.WorkerTimeout`.
        ``None`` removes the bound."""
        if seconds is not None and not (isinstance(seconds, (int, float)) and seconds > 0):
            raise ValueError(f"the timeout must be a positive number of seconds or None, "
                             f"got {seconds!r}")
        with self._lock:
            self._timeout = None if seconds is None else float(seconds)
            self._connections.set_send_timeout(self._send_timeout())

    @property
    def liveness_timeout(self) -> float:
        """Seconds without a liveness answer after which a worker is reported dead."""
        return self._liveness.timeout

    def set_liveness_timeout(self, seconds: float) -> None:
        """How long a worker may leave liveness probes unanswered before this client reports
        it dead (:class:`~syftzmq.errors.WorkerUnavailable`); also how long an unbounded
        blocked send waits before it checks that the worker is alive."""
        with self._lock:
            self._liveness.set_timeout(seconds)
            self._connections.set_send_timeout(self._send_timeout())

    def _send_timeout(self) -> float:
        liveness = getattr(self, "_liveness", None)
        return self._timeout if self._timeout is not None else (
            liveness.timeout if liveness is not None else self.settings.liveness_timeout)

    def _when_blocked(self, location: WorkerRef) -> bool:
        """A send stayed blocked for the send timeout (the worker's queue is full): wait on
        while the worker is alive and the call unbounded (see :class:`Sender`)."""
        if not self._liveness.check_alive(location):
            return False
        if self._timeout is not None:
            raise WorkerTimeout(location.id, location.address, self._timeout,
                                "its queue stayed full: the worker is alive and still working "
                                "through what was sent before")
        return True

    def set_verbose(self, on: bool) -> None:
        """Print a line for every message this session sends (see :mod:`syftzmq.client.verbose`)."""
        from .verbose import printer
        with self._lock:
            self._sender.on_sent = printer() if on else None

    def runs_safe(self, location: WorkerRef) -> bool:
        """Whether the worker runs in safe mode (asked once per incarnation)."""
        safe = self._safe_modes.get(location.incarnation)
        if safe is None:
            safe = bool(self.ping(location).get("safe"))
            self._safe_modes[location.incarnation] = safe
        return safe

    def holds_chains(self, location: WorkerRef) -> bool:
        """Whether ``location`` holds pointer records of this client (a command there may be
        forwarded along a chain, with its operands)."""
        return location.incarnation in self._chains

    def ref_of(self, worker: Any) -> WorkerRef:
        """A :class:`WorkerRef` for a handle, a ref, or a worker id this session knows."""
        if isinstance(worker, WorkerRef):
            return worker
        ref = getattr(worker, "ref", None)
        if isinstance(ref, WorkerRef):
            return ref
        if isinstance(worker, str):
            matches = [h.ref for h in self._handles.values() if h.id == worker]
            if len(matches) == 1:
                return matches[0]
            raise ValueError(f"no single connected worker with id {worker!r}")
        raise TypeError(f"expected a worker, got {type(worker).__name__}")

    def cluster_key_file(self) -> str:
        """A key file (0600) shared by the workers this session spawns."""
        if self._cluster_key_file is None:
            self._cluster_key_file = session_key_file()
        return self._cluster_key_file

    def _ref_for_incarnation(self, incarnation: str) -> WorkerRef:
        handle = self._handles.get(incarnation)
        if handle is not None:
            return handle.ref
        return self._connections.ref(incarnation)

    def _incarnations_named(self) -> set[str]:
        """The worker incarnations some live pointer of this client still points into."""
        return {pointer._location.incarnation for pointer in list(self._live.values())}

    # ------------------------------------------------------------------ fire-and-forget
    def command(self, location: WorkerRef, op: tuple, args: tuple, kwargs: dict,
                result_ids: list[int], metas: list[TensorMeta | None] | None = None) -> None:
        """Send one operation; results are stored under ``result_ids``. Runs in this thread's
        grad mode (an optimizer's ``step`` runs without grad on the worker too)."""
        wire_op = op_to_wire(op)
        ids_at: list[int] = []
        if argtree.is_flat(args, kwargs):  # the common case: one pass, no tree walk
            # A pointer to a whole object travels as its plain id, its position noted in
            # ``ids_at`` (see syftzmq.core.messages.IDS_AT); an attribute pointer as a Ref.
            wire = list(args)
            snapshot = isinstance(wire_op[1], str)
            for index, value in enumerate(wire):
                if isinstance(value, PointerTensor):
                    if value._attr is None:
                        ids_at.append(index)
                        wire[index] = value.id_at_location
                    else:
                        wire[index] = Ref(value.id_at_location, value._attr)
                elif snapshot and type(value) not in _IMMUTABLE:
                    snapshot = _immutable((value,))
            wire_args = tuple(wire)
            if kwargs:
                wire_kwargs = {key: _to_ref(value) for key, value in kwargs.items()}
                snapshot = snapshot and _immutable(wire_kwargs.values())
            else:
                wire_kwargs = {}
        else:
            wire_args, wire_kwargs = argtree.map_args(_to_ref, args, kwargs)
            snapshot = _is_snapshot(wire_op, wire_args, wire_kwargs)
        msg = message(CMD, origin=self.ref.incarnation, unique=False, op=wire_op,
                      args=wire_args, kwargs=wire_kwargs, results=result_ids)
        if ids_at:
            msg[IDS_AT] = ids_at
        if not torch.is_grad_enabled():
            msg["grad"] = False
        if location.incarnation in self._chains:
            # Only a chain holder stores a pointer record per result, and its record needs the
            # result's meta (an ``INFO``, a get of the record); elsewhere it would go unread.
            msg["metas"] = metas
            if result_ids:
                self._results_next_to_chains(location, args, kwargs, result_ids)
        if self._chains and self._pending.dirty and _names_a_view(args, kwargs):
            self._flush_holders_before_view(location)
        if snapshot:
            self._queue(location, msg, starts_real_work(wire_op, metas))
        else:  # it holds objects the caller may change next: pickle it (and the queue) now
            self._send(location, msg)

    def _flush_holders_before_view(self, location: WorkerRef) -> None:
        """A command through a non-owning view (``x`` after ``x.send(alice)``) names an object a
        chain holder can change too, by forwarding to ``location``: the holders sent something
        since they last answered are flushed first, so the command applies after what was
        issued through the chain (two paths to one worker keep no order by themselves)."""
        with self._lock:
            holders = {incarnation for incarnation in self._pending.dirty
                       if incarnation in self._chains and incarnation != location.incarnation}
            self._flush(holders, self.timeout)

    def _flush(self, incarnations: set[str], timeout: float | None,
               complete: bool = False) -> None:
        """One round trip of ``FLUSH`` to ``incarnations`` (within ``timeout``): each has
        applied what it was sent, and what it forwarded (if it holds chains), once this
        returns; ``complete``: deletes and hand-overs too (see
        :func:`~syftzmq.core.messages.needs_complete_flush`)."""
        if incarnations:
            flush = {"complete": True} if complete else {}
            self._round_trip({incarnation: message(FLUSH, origin=self.ref.incarnation, **flush)
                              for incarnation in incarnations},
                             {incarnation: self._ref_for_incarnation(incarnation)
                              for incarnation in incarnations}, timeout)
            if complete:
                self._pending.flushed_completely(incarnations)

    def _results_next_to_chains(self, location: WorkerRef, args: tuple, kwargs: dict,
                                result_ids: list[int]) -> None:
        """Results of an operation on a chain target are pointer records too (the holder
        forwards the operation and stores a pointer to its result)."""
        incarnation = location.incarnation
        with self._lock:
            if any(isinstance(leaf, PointerTensor) and self._chains.is_chain(incarnation, leaf.id_at_location)
                   for leaf in argtree.leaves(args, kwargs)):
                self._chains.stored(incarnation, result_ids)

    def _queue(self, location: WorkerRef, msg: dict, real_work: bool = False) -> None:
        """Queue a command in the outbox (see :mod:`syftzmq.client.outbox`)."""
        with self._lock:
            if self._moves.flying and self._before_message_to(location, msg):
                self._sender.moves_tagged.add(location.incarnation)
            self._connections.current(location)  # an unknown or closed worker raises now, not later
            if self._releases:
                self._drain_releases(carrier=(location, msg))
            self._sender.queue(location, msg, real_work)

    def store_tensor(self, dest: WorkerRef, tensor: "torch.Tensor", *,
                     tags: "set[str] | None" = None,
                     description: str | None = None) -> PointerTensor:
        """Store ``tensor`` on ``dest``; a pointer to it. ``tags`` and ``description`` travel in
        the same message, and the worker indexes them for :meth:`search`."""
        object_id = new_id()
        labels: dict[str, Any] = {}
        if tags:
            labels["tags"] = set(tags)
        if description is not None:
            labels["description"] = description
        self._send(dest, message(STORE, origin=self.ref.incarnation, id=object_id, obj=tensor,
                                 **labels))
        return self.new_pointer(dest, object_id, meta=describe(tensor))

    def store_tensors(self, dest: WorkerRef, tensors: list["torch.Tensor"], *,
                      kept_grads: "list[torch.Tensor | None] | None" = None,
                      fetched: "list[int | None] | None" = None) -> list[PointerTensor]:
        """Store several tensors on ``dest`` in one message (a model's parameters); pointers
        to them. They are pickled before this returns, so the caller may change them next.

        ``kept_grads``, per tensor: a private gradient (see
        :mod:`syftzmq.client.deferred_grads`) that is not in the message: it is sent before
        anything that could see it, and the pointer describes it as present already.
        ``fetched``, per tensor: the id a get from ``dest`` fetched it under; if ``dest``
        still holds that copy and the tensor is unchanged, the held copy is stored again
        instead (see :mod:`syftzmq.tensor.unchanged`)."""
        ids = [new_id() for _ in tensors]
        metas = [describe(tensor) for tensor in tensors]
        if kept_grads is not None:
            metas = [meta if grad is None else replace(meta, grad=describe(grad))
                     for meta, grad in zip(metas, kept_grads)]
        with self._lock:
            for object_id, tensor, old in zip(ids, tensors, fetched or [None] * len(ids)):
                self._queue(dest, self._store_message(dest, object_id, tensor, old))
            self._sender.flush(dest.incarnation)
            pointers = [self.new_pointer(dest, object_id, meta=meta)
                        for object_id, meta in zip(ids, metas)]
            for pointer, grad in zip(pointers, kept_grads or ()):
                if grad is not None:
                    self._sender.deferred_grads.keep(pointer, grad)
        return pointers

    def _store_message(self, dest: WorkerRef, object_id: int, tensor: "torch.Tensor",
                       fetched: int | None) -> dict:
        """A ``STORE`` of ``tensor``: of the copy ``dest`` holds under ``fetched`` if it is
        bitwise the same (its confirmation is withdrawn: the store consumes it), else of it."""
        confirmations = self._sender.confirmations
        copy = None if fetched is None else confirmations.copy_of(dest.incarnation, fetched)
        if copy is not None and unchanged.unchanged(tensor, copy) and unchanged.private_data(tensor):
            confirmations.withdraw(dest.incarnation, fetched)
            return message(STORE, origin=self.ref.incarnation, id=object_id, held=fetched,
                           requires_grad=tensor.requires_grad)
        return message(STORE, origin=self.ref.incarnation, id=object_id, obj=tensor)

    def keep_fetched_copies(self, pointers: list[PointerTensor], copies: list[Any]) -> None:
        """Copies of what ``pointers`` just fetched, kept while their holder keeps its own."""
        with self._lock:
            for pointer, copy in zip(pointers, copies):
                if copy is not None and pointer._attr is None:
                    self._sender.confirmations.keep_copy(pointer._location.incarnation,
                                                         pointer.id_at_location, copy)

    def store_object(self, dest: WorkerRef, obj: Any) -> PointerTensor:
        """Store any picklable object on ``dest`` (a plan's function); a pointer to it."""
        object_id = new_id()
        self._send(dest, message(STORE, origin=self.ref.incarnation, id=object_id, obj=obj))
        return self.new_pointer(dest, object_id)

    def store_object_queued(self, dest: WorkerRef, obj: Any) -> PointerTensor:
        """:meth:`store_object` for an object nobody changes once it is made (a plan's learned
        template): queued, it travels with the next message to ``dest``, not as one more."""
        object_id = new_id()
        self._queue(dest, message(STORE, origin=self.ref.incarnation, id=object_id, obj=obj))
        return self.new_pointer(dest, object_id)

    def store_pointer(self, dest: WorkerRef, pointer: PointerTensor) -> PointerTensor:
        """Store ``pointer`` itself on ``dest``; its ownership (if it has it) goes along."""
        object_id = new_id()
        owning = pointer._owning
        with self._lock:
            self._chains.stored(dest.incarnation, [object_id])
            self._send(dest, message(STORE, origin=self.ref.incarnation, id=object_id,
                                     obj=pointer.to_record(owning)))
            if owning:
                self._send(pointer._location, message(
                    FORK, origin=self.ref.incarnation, id=pointer.id_at_location,
                    old_owner=self.ref.incarnation, new_owner=dest.incarnation))
                # the record at the old place now belongs to dest, which this client talks to
                self._chains.released(pointer._location.incarnation, [pointer.id_at_location])
        return self.new_pointer(dest, object_id, meta=pointer._meta)

    def new_pointer(self, location: WorkerRef, object_id: int, *, meta: TensorMeta | None = None,
                    mirror: "torch.Tensor | None" = None) -> PointerTensor:
        pointer = PointerTensor(location, object_id, meta=meta, mirror=mirror, owning=True,
                                owner=self.ref, session=self)
        self._live[pointer.id] = pointer
        return pointer

    def grads_became_uncertain(self, location: WorkerRef) -> None:
        """The mirrors of ``location``'s tensors may no longer say which have gradients (a
        ``backward()`` ran on a graph they lack, or a mirror was rebuilt as a cut-off leaf):
        every live pointer there asks the worker for ``.grad`` from now on.

        Marking the pointers, not the session, lets the doubt end with them: a pointer created
        afterwards is recorded on its mirror from the start, and a worker's autograd graph never
        spans workers, so pointers elsewhere are unaffected.
        """
        for pointer in list(self._live.values()):
            if pointer._location.incarnation == location.incarnation:
                object.__setattr__(pointer, "_grad_unknown", True)

    # ------------------------------------------------------------------ releases
    def release(self, location: WorkerRef, object_id: int) -> None:
        """Called from ``__del__``: queue the delete; it goes out with the next message."""
        if not self._closed and location.incarnation not in self._connections.gone:
            self._releases.add(location, object_id)

    def _drain_releases(self, carrier: tuple[WorkerRef, dict] | None = None,
                        everything: bool = False) -> None:
        """Send the deletes that are due without ever blocking (see
        :mod:`syftzmq.client.releases`): those for ``carrier``'s worker ride on the carrier
        message; the others leave once held long enough, or all of them with ``everything``
        or without a carrier (an observation of a store listing, the close)."""
        batches = self._releases.take(carrier[0].incarnation if carrier else None,
                                      everything or carrier is None)
        if self._moves:  # a delete must not overtake a move's store at its destination
            for incarnation in self._moves.incarnations() & batches.keys():
                self._releases.requeue(*batches.pop(incarnation))
        if self._chains:
            for incarnation, (_, ids) in batches.items():
                self._chains.released(incarnation, ids)
        self._releases.send(batches, self._send_delete, carrier, skip=self._was_replaced)

    def _was_replaced(self, incarnation: str) -> bool:
        """Whether a restart replaced ``incarnation`` (its objects died with it)."""
        return self._connections.gone.replacement(incarnation) is not None

    def _send_delete(self, location: WorkerRef, ids: list[int]) -> None:
        self._sender.send_now(location, message(DEL, origin=self.ref.incarnation, ids=ids),
                              zmq.NOBLOCK)

    def _send(self, location: WorkerRef, msg: dict) -> None:
        """Send ``msg`` now, with the pending deletes for its worker riding on it."""
        with self._lock:
            if self._moves.flying:
                self._before_message_to(location, msg)
            if self._releases:
                self._drain_releases(carrier=(location, msg))
            try:
                self._sender.send_now(location, msg)
            except BaseException:
                # the carried deletes did not leave: queue them again
                self._releases.requeue(location, msg.pop(RELEASES, ()))
                raise

    def _send_now(self, location: WorkerRef, msg: dict, flags: int = 0) -> None:
        """Send ``msg`` through the one way out (see :meth:`Sender.send_now`)."""
        with self._lock:
            if self._moves.flying:
                self._before_message_to(location, msg)
            self._sender.send_now(location, msg, flags)

    # ------------------------------------------------------------------ moves to a destination
    def defers_move(self, move: MoveInFlight) -> bool:
        """Whether a use of a pointer following ``move`` (in flight) need not await it: the
        messages its use sends to the destination name the move instead, and wait there (see
        :mod:`syftzmq.client.moves`). Not while this client holds chains (a holder may forward
        anything anywhere)."""
        return not self._chains

    def _before_message_to(self, location: WorkerRef, msg: dict,
                           also: set[str] = frozenset()) -> bool:
        """Before ``msg`` goes to ``location`` (and ``also``): moves it could depend on are
        awaited, except those whose destination ``location`` is: ``msg`` names them instead
        (``moves_first``). Whether it names any."""
        if self._chains or also:
            self._settler.before_message_to(location, self.timeout, also)
            return False
        out_of = self._moves.from_source(location.incarnation)
        if out_of:
            self._settler.settle(out_of, self.timeout)
        into = self._moves.into(location.incarnation)
        if not into:
            return False
        for move in into:
            move.tagged = True
        named = msg.setdefault(MOVES_FIRST, [])
        named.extend(move.move_id for move in into if move.move_id not in named)
        return True

    def _abandon_move(self, move: MoveInFlight) -> None:
        """``move`` failed (or this client gave up on it) after messages that wait for it went
        to its destination: tell the destination, so they run. Those that need its objects
        fail there; an observation held with them (the one whose wait ended here) takes those
        failures with its answer, which this client drops. If the move happens after all (its
        source was only slow), the objects still arrive and the pointers follow them (the
        doubt is settled at their next use).

        The message is a ``DEL`` of nothing: it changes no answer, so it makes no later
        observation wait for the destination (which may be the worker that is gone). Never
        blocks nor raises: a destination that cannot be told runs them once they waited a
        lease."""
        dest = move.dest
        if self._closed or dest.incarnation in self._connections.gone \
                or dest.incarnation in self._connections.shut_down:
            return
        abandoned = message(DEL, origin=self.ref.incarnation, ids=[],
                            **{MOVES_ABANDONED: [move.move_id, *move.replaces]})
        try:
            self._sender.send_now(dest, abandoned, zmq.NOBLOCK)
        except Exception:
            log.warning("could not tell %s that move %s failed; what waits for it there runs "
                        "after a lease", dest.id, move.move_id, exc_info=True)

    # ------------------------------------------------------------------ observations
    def observe(self, location: WorkerRef, msg: dict, timeout: float | None = None) -> Any:
        """Ask ``location`` something; the answer reflects every command issued before.
        Waits as long as the worker is alive, or up to ``timeout`` (else the session's bound)."""
        timeout = timeout or self.timeout
        self._connections.check_current(location)  # shut down or replaced: raise at once
        with self._lock:
            into = self._moves_into(location, msg)
            if into:
                self._settler.settle([move for move in self._moves.flying
                                      if move not in into], timeout)
            else:
                self._settler.before_observation(timeout)
            if self._releases:  # a store listing sees every delete issued before it
                self._drain_releases(carrier=(location, msg), everything=needs_complete_flush(msg))
            try:
                if into:
                    return self._observe_with_moves(location, msg, into, timeout)
                return self._observe_locked(location, msg, timeout)
            except BaseException:
                # The deletes this observation carried may not have left (flushing another
                # worker can raise a remote error or time out before it is sent): queue them
                # again. Deletes are idempotent and ids are never reused, so a second is harmless.
                if location.incarnation not in self._connections.gone:
                    self._releases.requeue(location, msg.pop(RELEASES, ()))
                raise

    def _moves_into(self, location: WorkerRef, msg: dict) -> list[MoveInFlight]:
        """The moves in flight to ``location`` that an observation of it may wait for in one
        wait with its answer (none while chains are held, none for a move observation)."""
        if not self._moves.flying or self._chains or msg.get("kind") == MOVE:
            return []
        if self._moves.from_source(location.incarnation):
            return []
        return self._moves.into(location.incarnation)

    def _observe_with_moves(self, location: WorkerRef, msg: dict, into: list[MoveInFlight],
                            timeout: float | None) -> Any:
        """:meth:`_observe_locked` of the destination of moves in flight: the request names
        them (the destination answers once their objects came) and is awaited in one wait with
        their replies, which also stand for flushing their sources. A move that failed raises
        here, as :meth:`MoveSettler.before_observation` would have (the answer is dropped)."""
        into = [move for move in into if move in self._moves.flying]
        sources = {move.source.incarnation for move in into}
        others = {incarnation for incarnation in self._pending.to_flush(
            location.incarnation, needs_complete_flush(msg)) if incarnation not in sources}
        if others:
            self._flush(others, timeout, needs_complete_flush(msg))
        for move in into:
            move.tagged = True
        msg[MOVES_FIRST] = [move.move_id for move in into]
        msg["origin"] = self.ref.incarnation
        self._heartbeat.ensure_running()
        started = time.monotonic()
        refs = {location.incarnation: location}
        awaiting = self._round_trips.start({location.incarnation: msg}, refs, timeout)
        # The moves first, the answer then (it is in its socket by then, or soon): one wait
        # for both would never end if a move must be started again before the answer comes.
        self._settler.settle(into, timeout)
        if self._moves.unseen:
            error = self._moves.take_unseen_error()
            if error is not None:
                if isinstance(error, WorkerUnavailable) and error.worker == location.id:
                    # its source found the destination gone: the answer is not awaited, nor
                    # does a later observation wait for it (as after a wait of our own)
                    self._pending.timed_out(location.incarnation, [location.incarnation])
                raise error
        left = None if timeout is None else max(timeout - (time.monotonic() - started), 0.001)
        return reply_value(self._round_trips.wait(awaiting, refs, left)[location.incarnation])

    def _observe_locked(self, location: WorkerRef, msg: dict, timeout: float | None) -> Any:
        complete = needs_complete_flush(msg)
        others = self._pending.to_flush(location.incarnation, complete)
        if msg.get("kind") == MOVE:
            # A move observes no data: only a chain holder's forwarded commands can still
            # change the objects it moves (everything else surfaces at the next observation).
            others = {incarnation for incarnation in others if incarnation in self._chains}
        if others:  # (the common case: only the observed worker has work in flight)
            self._flush(others, timeout, complete)
        msg["origin"] = self.ref.incarnation
        self._heartbeat.ensure_running()  # as _round_trip does
        return self._round_trips.run_one(location, msg, timeout)

    def _round_trip(self, requests: dict[str, dict], refs: dict[str, WorkerRef],
                    timeout: float | None) -> dict[str, Any]:
        """One multiplexed round trip (see :class:`RoundTrips`). A heartbeat thread that died
        is noticed here, before the leases it should renew run out."""
        self._heartbeat.ensure_running()
        return self._round_trips.run(requests, refs, timeout)

    # ------------------------------------------------------------------ typed requests
    def get(self, pointer: PointerTensor, timeout: float | None = None) -> Any:
        return self._get_from(pointer._location, [pointer], timeout)[0]

    def get_many(self, pointers: list[PointerTensor], timeout: float | None = None) -> list[Any]:
        """Fetch several targets; one round trip per worker involved (one in the common case).

        A get that raises (its bound ran out, Ctrl-C) leaves the data on the worker, which
        keeps what it took until this client confirms receipt (the ids ride on the next
        message there): a retry returns it (see :mod:`syftzmq.client.deliveries`).
        """
        if len(pointers) == 1:  # the common case: one worker, no grouping
            return self._get_from(pointers[0]._location, pointers, timeout)
        by_location: dict[str, list[int]] = {}
        for index, pointer in enumerate(pointers):
            by_location.setdefault(pointer._location.incarnation, []).append(index)
        values: list[Any] = [None] * len(pointers)
        for indices in by_location.values():
            group = [pointers[i] for i in indices]
            for index, value in zip(indices, self._get_from(group[0]._location, group, timeout)):
                values[index] = value
        return values

    def _get_from(self, location: WorkerRef, group: list[PointerTensor],
                  timeout: float | None) -> list[Any]:
        """:meth:`get_many` of pointers that all point into ``location``: one round trip."""
        # a whole object travels as its plain id, an attribute as a Ref (see core.messages)
        refs = [p.id_at_location if p._attr is None else Ref(p.id_at_location, p._attr)
                for p in group]
        fetched = self.observe(location, message(GET, unique=False, refs=refs), timeout)
        taken = [pointer.id_at_location for pointer in group if pointer._attr is None]
        if taken:
            with self._lock:  # a fetched target left its holder: it is no chain target there
                self._chains.released(location.incarnation, taken)
                self._sender.confirmations.add(location, taken)
                if _fetched_bytes(fetched) > CONFIRM_AT_ONCE_BYTES:
                    self._confirm_now(location)
        for value in fetched:
            if isinstance(value, ChainRef):  # a chain hop came back: pointers are made of them
                return [self._fetched(value, location) for value in fetched]
        return fetched

    def _confirm_now(self, location: WorkerRef) -> None:
        """Confirm a large get at once (a message of its own, never blocking) instead of with
        the next message: the worker frees its copy's mapping now, while this client works
        with the tensor, not while it waits for that next message's answer."""
        try:
            self._sender.send_now(location, message(BATCH, origin=self.ref.incarnation),
                                  zmq.NOBLOCK)
        except zmq.Again:
            pass  # the queue is full: the confirmation rides on the next message, as usual

    def _fetched(self, value: Any, holder: WorkerRef) -> Any:
        """A fetched value; a chain hop that came back from ``holder`` becomes a pointer this
        client holds."""
        if not isinstance(value, ChainRef):
            return value
        pointer = PointerTensor.from_record(value, self)
        if pointer._owning:
            self._live[pointer.id] = pointer
            with self._lock:
                # holder hands the hop's target over to us with a FORK it may hold for a while
                # (syftzmq.worker.peers): a store listing must flush holder completely first
                self._pending.handing_off(holder.incarnation)
                self._connections.get(pointer._location)  # we own something there: keep its lease
                # its target may itself be a pointer record; we cannot tell, so assume it is
                self._chains.stored(pointer._location.incarnation, [pointer.id_at_location])
        return pointer

    def info(self, pointer: PointerTensor, attr: str | None = None) -> TensorMeta | None:
        ref = Ref(pointer.id_at_location, attr or pointer._attr)
        return self.observe(pointer._location, message(INFO, ref=ref))

    def objects(self, location: WorkerRef) -> dict:
        """A snapshot of the worker's store; stored chain hops come back as (non-owning)
        pointers."""
        snapshot = self.observe(location, message(OBJECTS))
        return {object_id: PointerTensor.from_record(obj, self) if isinstance(obj, ChainRef)
                else obj for object_id, obj in snapshot.items()}

    def object_of(self, location: WorkerRef, object_id: int) -> Any:
        """One object of the worker's store, left in place (a copy of it comes back); stored
        chain hops come back as (non-owning) pointers. Raises :class:`KeyError` if absent."""
        snapshot = self.observe(location, message(OBJECTS, ids=[object_id]))
        obj = snapshot[object_id]
        return PointerTensor.from_record(obj, self) if isinstance(obj, ChainRef) else obj

    def search(self, location: WorkerRef, terms: list) -> list[PointerTensor]:
        """Pointers to the tensors on ``location`` that match every term (tags, or object ids).

        As in PySyft, the pointers do not garbage-collect: dropping one leaves the object on the
        worker. A pointer to an object this client owns owns it (``get``/``move`` work); one to
        an object another process owns is a non-owning view, which computes but cannot take it.
        """
        records = self.observe(location, message(SEARCH, query=list(terms)))
        pointers = []
        for record in records:
            pointer = PointerTensor(location, record["id"], meta=record["meta"],
                                    owning=record["owned"], owner=self.ref, session=self)
            object.__setattr__(pointer, "_gc", False)
            object.__setattr__(pointer, "tags", set(record["tags"]))
            if record["description"] is not None:
                object.__setattr__(pointer, "description", record["description"])
            self._live[pointer.id] = pointer
            pointers.append(pointer)
        return pointers

    def clear_objects(self, location: WorkerRef) -> list[int]:
        """Drop every object this client owns on ``location``; the ids dropped."""
        cleared = self.observe(location, message(CLEAR))
        with self._lock:
            self._chains.released(location.incarnation, cleared)
        return cleared

    def move(self, location: WorkerRef, object_ids: list[int], dest: WorkerRef,
             pointers: list[PointerTensor] | None = None) -> list[int]:
        """Start moving objects of ``location`` straight to ``dest``; their new ids, at once.

        The reply is awaited before anything that could depend on the move (see
        :mod:`syftzmq.client.moves`); ``pointers`` (those of ``object_ids``, in order) follow
        it and surface its failure at their next use. If sending raises, the move may still
        happen: the pointers are in doubt and ask the source at their next use (see
        :class:`~syftzmq.client.deliveries.MoveDoubt`)."""
        new_object_ids = [new_id() for _ in object_ids]
        with self._lock:
            self._start_move(location, list(object_ids), dest, new_object_ids, pointers)
        return new_object_ids

    def _start_move(self, location: WorkerRef, object_ids: list[int], dest: WorkerRef,
                    new_object_ids: list[int], pointers: list[PointerTensor] | None,
                    retried: bool = False, replaces: tuple[int, ...] = ()) -> MoveInFlight:
        """Send the ``MOVE`` (a chain holder's forwarded commands can still change the objects
        it moves: those are flushed first; nothing else is waited for)."""
        move_id = new_id()
        msg = message(MOVE, ids=list(object_ids), dest=dest, new_ids=new_object_ids,
                      move_id=move_id)
        if replaces:  # its MOVE_IN stands for these too (see syftzmq.worker.move_arrivals)
            msg["replaces"] = list(replaces)
        moved = False
        try:
            self._connections.check_current(location)
            self._connections.get(dest)  # the moved objects are ours there: keep their lease renewed
            holders = {incarnation for incarnation in self._pending.to_flush(
                location.incarnation, needs_complete_flush(msg)) if incarnation in self._chains}
            if self._moves:
                self._before_message_to(location, msg, also=holders)
            # a moved chain target is one at dest too (dest must count as a holder already
            # while the move is under way)
            self._chains.moved(location.incarnation, list(object_ids), dest.incarnation,
                               new_object_ids)
            moved = True
            if self._releases:
                self._drain_releases(carrier=(location, msg))
            self._flush(holders, self.timeout)
            msg["origin"] = self.ref.incarnation
            self._heartbeat.ensure_running()
            awaiting = self._round_trips.start({location.incarnation: msg},
                                               {location.incarnation: location}, self.timeout)
        except BaseException:
            if moved:
                self._chains.moved(dest.incarnation, new_object_ids, location.incarnation,
                                   list(object_ids))
            if location.incarnation not in self._connections.gone:
                self._releases.requeue(location, msg.pop(RELEASES, ()))
            for pointer, old, new in zip(pointers or (), object_ids, new_object_ids):
                object.__setattr__(pointer, "_move_doubt",
                                   MoveDoubt(move_id, location, old, dest, new))
            raise
        flying = MoveInFlight.of(move_id, location, dest, object_ids, new_object_ids, awaiting,
                                 pointers, retried, replaces)
        self._moves.add(flying)
        for index, pointer in enumerate(pointers or ()):
            object.__setattr__(pointer, "_move_doubt", Following(flying, index))
        return flying

    # ------------------------------------------------------------------ moves in flight
    def await_move(self, move: MoveInFlight) -> None:
        """A pointer following ``move`` is used: await it (see :class:`MoveSettler`)."""
        with self._lock:
            self._settler.await_move(move, self.timeout)

    def take_move_error(self, move: MoveInFlight) -> BaseException | None:
        """``move``'s failure if nobody has seen it yet (it is then seen)."""
        with self._lock:
            return move.take_error()

    def move_outcome(self, source: WorkerRef, move_id: int) -> dict:
        """What became of move ``move_id`` (asked of its source; see
        :mod:`syftzmq.worker.deliveries`): ``{"state": "done"|"failed"|"cancelled", ...}``."""
        self._connections.check_current(source)
        with self._lock:
            if self._moves:
                self._settler.before_message_to(source, self.timeout)
            return self._round_trip({source.incarnation: message(MOVE_OUTCOME, move_id=move_id,
                                                                 origin=self.ref.incarnation)},
                                    {source.incarnation: source}, self.timeout)[source.incarnation]

    def moved_after_doubt(self, doubt: MoveDoubt) -> None:
        """A move in doubt turned out done: its target is a chain target at the destination
        if it was one at the source."""
        with self._lock:
            self._chains.moved(doubt.source.incarnation, [doubt.source_id],
                               doubt.dest.incarnation, [doubt.dest_id])
            self._connections.get(doubt.dest)

    def ping(self, location: WorkerRef, timeout: float | None = None, vitals: bool = False) -> dict:
        with self._lock:
            self._settler.before_observation(timeout or self.timeout)
            msg = message(PING, vitals=True) if vitals else message(PING)
            return self._round_trip({location.incarnation: msg},
                                    {location.incarnation: location},
                                    timeout or self.timeout)[location.incarnation]

    def shutdown(self, location: WorkerRef, timeout: float | None = None) -> None:
        """Stop the worker. From then on everything addressed to it raises
        :class:`~syftzmq.errors.WorkerShutDown` at once; a second call returns at once."""
        with self._lock:
            if self.was_shut_down(location):
                return
            if self._moves.flying:
                self._settler.before_message_to(location, self.timeout)
            self._round_trip({location.incarnation: message(SHUTDOWN, origin=self.ref.incarnation)},
                             {location.incarnation: location}, timeout or self.timeout)
            self._connections.shut_down.add(location.incarnation)
            self.forget(location)

    def was_shut_down(self, location: WorkerRef) -> bool:
        """Whether this client shut that worker incarnation down."""
        return location.incarnation in self._connections.shut_down

    def forget(self, location: WorkerRef, replaced_by: WorkerRef | None = None) -> None:
        """Drop the connection to a worker that is gone; its pending releases go too, and
        everything this client remembered about it but that it is gone."""
        incarnation = location.incarnation
        with self._lock:
            self._settler.source_gone(incarnation)  # its moves' pointers raise at next use
            self._releases.discard(incarnation)
            self._sender.forget(incarnation)
            self._pending.forget(incarnation)
            self._chains.forget(incarnation)
            self._safe_modes.pop(incarnation, None)
            self._liveness.forget(incarnation)
            self._connections.forget(incarnation, replaced_by)

    # ------------------------------------------------------------------ end of life
    def close(self) -> None:
        """Free this client's remote objects, stop the workers it started, close sockets.

        Runs at exit too, so it never raises for a worker that cannot be reached: what it
        could not deliver is logged, with the error.
        """
        with self._lock:
            if self._closed:
                return
            try:
                if self._moves:
                    self._settler.settle(list(self._moves.flying), self.timeout)
            except BaseException:
                log.warning("could not learn the outcome of this client's moves at close",
                            exc_info=True)
            for pointer in list(self._live.values()):
                if pointer._owning and pointer._gone is None:
                    pointer._relinquish("released at exit")
                    if pointer._move_doubt is not None:
                        pointer._move_doubt.release(self)
                    else:
                        self._releases.add(pointer._location, pointer.id_at_location)
            for location, ids in self._sender.confirmations.take_all():
                self._releases.requeue(location, ids)  # a delete confirms a get too
            self._sender.flush_all_at_exit()
            try:
                self._drain_releases()
            except Exception:
                log.warning("could not send this client's deletes at close; the workers free "
                            "the objects when its lease runs out", exc_info=True)
            self._closed = True
            self._heartbeat.stop()
            for process in reversed(self._processes):  # a worker template after its workers
                process.stop()
            self._liveness.close()
            self._connections.close()
            self.context.term()
            self._remove_cluster_key_file()

    def _remove_cluster_key_file(self) -> None:
        if not self._cluster_key_file:
            return
        try:
            remove_session_key_file(self._cluster_key_file)
        except OSError:
            log.warning("could not remove the cluster key file %s", self._cluster_key_file,
                        exc_info=True)


# Values a queued command may hold unpickled: nothing the caller can change after the call.
_IMMUTABLE = PLAIN_VALUES | {Ref, torch.Size}


def _fetched_bytes(values: list) -> int:
    """Bytes of the tensors among ``values`` (what a get brought back)."""
    total = 0
    for value in values:  # a loop, not sum(...) of a generator: most gets fetch one tensor
        if isinstance(value, torch.Tensor):
            total += value.numel() * value.element_size()
    return total


def _names_a_view(args: tuple, kwargs: dict) -> bool:
    """Whether an operand is a pointer that does not own its target (a view of something
    handed on, or an attribute)."""
    return any(isinstance(leaf, PointerTensor) and not leaf._owning
               for leaf in argtree.leaves(args, kwargs))


def _is_snapshot(op: tuple, args: tuple, kwargs: dict) -> bool:
    """Whether the command is fully determined now, so it can wait in the outbox unpickled.

    A local tensor argument could be changed in place before the queue leaves, and pickled
    code depends on what is registered for pickling by value at the time of the call.
    """
    return isinstance(op[1], str) and _immutable(argtree.leaves(args, kwargs))


def _immutable(leaves: Any) -> bool:
    """Whether every one of ``leaves`` is a value the caller cannot change (see above)."""
    for leaf in leaves:
        kind = type(leaf)
        if kind not in _IMMUTABLE and not (
                kind is slice and {type(leaf.start), type(leaf.stop), type(leaf.step)} <= _IMMUTABLE):
            return False
    return True


def _to_ref(value: Any) -> Any:
    if isinstance(value, PointerTensor):
        return Ref(value.id_at_location, value._attr)
    return value
