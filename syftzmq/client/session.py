"""The client session: every socket, every pending release, and the ordering rules.

Commands are fire-and-forget: the session records which workers have received commands since
they were last observed (*dirty* workers). An observation of worker W first flushes every other
dirty worker (one parallel round trip, skipped when W is the only one), then asks W, which
flushes whatever it forwarded downstream before answering. So an answer always reflects every
command issued before it, along chains too; and the common case — commands to one worker, then
``get`` from it — costs exactly one round trip.

Commands do not leave one by one: they wait in an :class:`~syftzmq.client.outbox.Outbox` (a few
milliseconds at most) and leave together, or ride on the next message to the same worker. One rule
keeps that invisible: before anything goes to a worker that holds pointers this client stored
there (a chain), every other worker's queue leaves first — that worker may forward work to them,
and it must arrive after what this client queued for them.

Pointers that die only append their id to a queue (``__del__`` may run inside a socket call, or
on another thread); the queue rides on the next message to the same worker (``release``, applied
before that message), or goes as batched ``DEL`` messages to the others. A worker that received
only deletes is flushed before a store listing (``OBJECTS``) only: no other answer depends on
them (see :func:`syftzmq.core.messages.needs_complete_flush`).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
import zmq

from ..core import argtree
from ..core.ids import new_id, new_token
from ..core.messages import (ADDRESSED_TO, BATCH, BEFORE, CMD, DEL, FLUSH, FORK, GET, INFO, MOVE,
                             OBJECTS, PING, RELEASES, SHUTDOWN, STORE, message, probe_destination,
                             needs_complete_flush)
from ..core.meta import TensorMeta, describe
from ..core.ops import PLAIN_VALUES, op_to_wire
from ..core.refs import ChainRef, Ref, WorkerRef
from ..errors import StaleIncarnationError, WorkerUnavailable
from ..security.keys import write_key_file
from ..settings import SETTINGS, Settings
from ..tensor.pointer import PointerTensor
from .connection import Connection
from .heartbeat import Heartbeat
from .outbox import Outbox

if TYPE_CHECKING:
    from .launcher import WorkerProcess

log = logging.getLogger("syftzmq.client")


@dataclass
class Stats:
    """Counters of what this client put on the wire: messages sent and blocking round trips."""

    messages_sent: int = 0
    round_trips: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0

    def snapshot(self) -> "Stats":
        return Stats(**vars(self))

    def __sub__(self, other: "Stats") -> "Stats":
        return Stats(**{name: value - getattr(other, name) for name, value in vars(self).items()})


class ClientSession:
    """All of this process's conversations with workers."""

    def __init__(self, settings: Settings = SETTINGS,
                 make_handle: Callable[["ClientSession", WorkerRef], Any] | None = None) -> None:
        """``make_handle`` builds the handle for a worker this session learns of without one
        (``ptr.location`` of a pointer from a chain); the handles module passes its own."""
        self.settings = settings
        self.timeout = settings.timeout
        self._make_handle = make_handle or (lambda session, ref: ref)
        self.context = zmq.Context()
        self.ref = WorkerRef("me", None, f"me#{new_token(6)}")
        self.stats = Stats()
        self._connections: dict[str, Connection] = {}
        self._handles: dict[str, Any] = {}
        self._safe_modes: dict[str, bool] = {}  # incarnation -> runs with --safe
        self._keys: dict[str, bytes | None] = {}
        self._default_key: bytes | None = None
        self._curves: dict[str, Any] = {}
        self._default_curve: Any = None
        self._heartbeat = Heartbeat(self.context, self.ref.incarnation, settings.lease_seconds)
        self._superseded: dict[str, WorkerRef] = {}  # old incarnation -> the one that replaced it
        self._dirty: set[str] = set()
        # Workers that since their last answer received only deletes. A delete changes no
        # answer but a store listing (a cascade may reach the observed worker), so only
        # OBJECTS observations wait for them: see :func:`needs_complete_flush`.
        self._dirty_deletes: set[str] = set()
        # Workers that missed a deadline: deletes still go to them, but do not make them
        # something every later observation must wait for. Cleared when they answer again.
        self._unresponsive: set[str] = set()
        self._forgotten: set[str] = set()
        self._releases: deque[tuple[WorkerRef, int]] = deque()
        self._live: weakref.WeakValueDictionary[int, PointerTensor] = weakref.WeakValueDictionary()
        self._processes: list["WorkerProcess"] = []
        self._lock = threading.RLock()
        self._outbox = Outbox(self._flush_due, self._lock, max_queued=settings.batch,
                              linger=settings.linger_seconds)
        # Workers holding pointers this client stored there: they forward work to others.
        self._chain_holders: set[str] = set()
        self._stalled: set[str] = set()  # a background flush found their socket full
        self._closed = False
        self._cluster_key_file: str | None = None
        self.grads_uncertain = False  # set when a backward() ran on a graph the mirrors lack
        atexit.register(self.close)

    # ------------------------------------------------------------------ workers
    def connect(self, address: str, key: bytes | None, expected_id: str | None = None,
                timeout: float | None = None, curve: Any = None) -> WorkerRef:
        """Open a connection to ``address`` and learn who answers there.

        ``curve`` (a :class:`syftzmq.security.curve.CurveClient`) encrypts the connection.
        """
        with self._lock:
            probe = WorkerRef(expected_id or "?", address, f"probe:{new_token()}")
            connection = Connection(self.context, self.ref.incarnation, address, key, self._send_timeout(),
                                    curve)
            self._connections[probe.incarnation] = connection
            try:
                ping = message(PING, **{ADDRESSED_TO: probe_destination(expected_id, address)})
                info = self._round_trip({probe.incarnation: ping}, {probe.incarnation: probe},
                                        timeout or self.timeout)[probe.incarnation]
            except BaseException:
                del self._connections[probe.incarnation]
                connection.close()
                raise
            ref: WorkerRef = info["ref"]
            del self._connections[probe.incarnation]
            if expected_id is not None and ref.id != expected_id:
                connection.close()
                raise ValueError(f"the worker at {address} is {ref.id!r}, not {expected_id!r}")
            connection.learn_peer(ref.shm)  # the probe knew nothing of it
            old = self._connections.pop(ref.incarnation, None)
            if old is not None:
                old.close()
            self._supersede_earlier_incarnations(ref)
            self._connections[ref.incarnation] = connection
            self._keys[address], self._default_key = key, key  # only keys that worked
            self._curves[address], self._default_curve = curve, curve
            self._heartbeat.watch(ref.incarnation, address, key, curve, info.get("lease_seconds"))
            return ref

    def _supersede_earlier_incarnations(self, ref: WorkerRef) -> None:
        """A worker that answers at a known address under a known id, as a different
        incarnation, was restarted: what lived in the old one is gone."""
        for incarnation in list(self._connections):
            known = self._ref_for_incarnation(incarnation)
            if incarnation != ref.incarnation and known.id == ref.id and known.address == ref.address:
                self._superseded[incarnation] = ref
                self.forget(known)

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

    def set_timeout(self, seconds: float) -> None:
        """The deadline of every later observation and blocked send, on every connection,
        open ones included."""
        if not seconds > 0:
            raise ValueError(f"the timeout must be a positive number of seconds, got {seconds!r}")
        with self._lock:
            self.timeout = float(seconds)
            for connection in self._connections.values():
                connection.set_send_timeout(self.timeout)

    def runs_safe(self, location: WorkerRef) -> bool:
        """Whether the worker runs in safe mode (asked once per incarnation)."""
        safe = self._safe_modes.get(location.incarnation)
        if safe is None:
            safe = bool(self.ping(location).get("safe"))
            self._safe_modes[location.incarnation] = safe
        return safe

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
            import tempfile
            directory = tempfile.mkdtemp(prefix="syftzmq-")
            self._cluster_key_file = os.path.join(directory, "cluster.key")
            write_key_file(self._cluster_key_file)
        return self._cluster_key_file

    # ------------------------------------------------------------------ fire-and-forget
    def command(self, location: WorkerRef, op: tuple, args: tuple, kwargs: dict,
                result_ids: list[int], metas: list[TensorMeta | None] | None = None) -> None:
        """Send one operation; results are stored under ``result_ids``. Runs in this thread's
        grad mode (an optimizer's ``step`` runs without grad on the worker too)."""
        wire_args, wire_kwargs = argtree.map_args(_to_ref, args, kwargs)
        msg = message(CMD, origin=self.ref.incarnation, op=op_to_wire(op), args=wire_args,
                      kwargs=wire_kwargs, results=result_ids, metas=metas)
        if not torch.is_grad_enabled():
            msg["grad"] = False
        if _is_snapshot(msg["op"], wire_args, wire_kwargs):
            self._queue(location, msg)
        else:  # it holds objects the caller may change next: pickle it (and the queue) now
            self._send(location, msg)

    def _queue(self, location: WorkerRef, msg: dict) -> None:
        """Queue a command in the outbox (see :mod:`syftzmq.client.outbox`)."""
        with self._lock:
            self._check_current(location)
            self._connection(location)  # an unknown or closed worker raises now, not later
            if self._releases:
                self._drain_releases(carrier=(location, msg))
            self._dirty.add(location.incarnation)
            if self._outbox.add(location, msg):
                self._flush_queue(location.incarnation)

    def _flush_queue(self, incarnation: str, flags: int = 0) -> None:
        """Send what is queued for ``incarnation`` now, as one message."""
        if incarnation in self._outbox:
            self._send_now(self._outbox.ref(incarnation), message(BATCH, origin=self.ref.incarnation), flags)

    def _flush_due(self) -> None:
        """Called by the outbox's sweeper thread: send queues that waited long enough; never raise
        (a worker that cannot take them now gets them with the next foreground message)."""
        for incarnation in self._outbox.due(time.monotonic()):
            if incarnation in self._stalled:
                continue
            try:
                self._flush_queue(incarnation, zmq.NOBLOCK)
            except Exception:
                self._stalled.add(incarnation)

    def _release_queues_for(self, location: WorkerRef) -> None:
        """Before ``location`` (a chain holder) hears anything, every other queue leaves."""
        for incarnation in self._outbox.incarnations():
            if incarnation != location.incarnation:
                self._flush_queue(incarnation)

    def store_tensor(self, dest: WorkerRef, tensor: "torch.Tensor") -> PointerTensor:
        object_id = new_id()
        self._send(dest, message(STORE, origin=self.ref.incarnation, id=object_id, obj=tensor))
        return self.new_pointer(dest, object_id, meta=describe(tensor))

    def store_object(self, dest: WorkerRef, obj: Any) -> PointerTensor:
        """Store any picklable object on ``dest`` (a plan's function); a pointer to it."""
        object_id = new_id()
        self._send(dest, message(STORE, origin=self.ref.incarnation, id=object_id, obj=obj))
        return self.new_pointer(dest, object_id)

    def store_pointer(self, dest: WorkerRef, pointer: PointerTensor) -> PointerTensor:
        """Store ``pointer`` itself on ``dest``; its ownership (if it has it) goes along."""
        object_id = new_id()
        owning = pointer._owning
        with self._lock:
            self._chain_holders.add(dest.incarnation)
            self._send(dest, message(STORE, origin=self.ref.incarnation, id=object_id,
                                     obj=pointer.to_record(owning)))
            if owning:
                self._send(pointer._location, message(
                    FORK, origin=self.ref.incarnation, id=pointer.id_at_location,
                    old_owner=self.ref.incarnation, new_owner=dest.incarnation))
        return self.new_pointer(dest, object_id, meta=pointer._meta)

    def new_pointer(self, location: WorkerRef, object_id: int, *, meta: TensorMeta | None = None,
                    mirror: "torch.Tensor | None" = None) -> PointerTensor:
        pointer = PointerTensor(location, object_id, meta=meta, mirror=mirror, owning=True,
                                owner=self.ref, session=self)
        self._live[pointer.id] = pointer
        return pointer

    def release(self, location: WorkerRef, object_id: int) -> None:
        """Called from ``__del__``: queue the delete; it goes out with the next message."""
        if not self._closed and location.incarnation not in self._forgotten:
            self._releases.append((location, object_id))

    def _drain_releases(self, carrier: tuple[WorkerRef, dict] | None = None) -> None:
        """Send queued deletes without ever blocking: a worker whose queue is full (dead or
        swamped) keeps its deletes queued here, and nobody else's operation fails for it.

        Deletes for ``carrier``'s worker ride on the carrier message (``RELEASES``, applied
        before it) instead of costing a message of their own.
        """
        batches: dict[str, tuple[WorkerRef, list[int]]] = {}
        while self._releases:
            location, object_id = self._releases.popleft()
            batches.setdefault(location.incarnation, (location, []))[1].append(object_id)
        for location, ids in batches.values():
            if location.incarnation in self._superseded:
                continue  # died with the old incarnation
            if carrier is not None and location.incarnation == carrier[0].incarnation:
                carrier[1][RELEASES] = ids
                continue
            try:
                self._send_now(location, message(DEL, origin=self.ref.incarnation, ids=ids), zmq.NOBLOCK)
            except (zmq.Again, WorkerUnavailable):
                self._releases.extend((location, object_id) for object_id in ids)

    def _send(self, location: WorkerRef, msg: dict) -> None:
        with self._lock:
            if self._releases:
                self._drain_releases(carrier=(location, msg))
            try:
                self._send_now(location, msg)
            except BaseException:
                # the carried deletes did not leave: queue them again
                self._releases.extend((location, i) for i in msg.pop(RELEASES, ()))
                raise

    def _check_current(self, location: WorkerRef) -> None:
        if location.incarnation in self._superseded:
            raise StaleIncarnationError(
                f"worker {location.id!r} was restarted (now {self._superseded[location.incarnation].incarnation!r}); "
                f"objects of its earlier incarnation {location.incarnation!r} are gone")

    def _send_now(self, location: WorkerRef, msg: dict, flags: int = 0) -> None:
        """Send ``msg``, carrying whatever the outbox holds for ``location`` (applied first)."""
        self._check_current(location)
        connection = self._connection(location)
        if not location.incarnation.startswith("probe:"):
            msg[ADDRESSED_TO] = location.incarnation  # a restarted worker refuses it
        queued = self._outbox.take(location.incarnation)  # first: releasing others must not come back
        if queued:
            msg[BEFORE] = queued
        try:
            if location.incarnation in self._chain_holders:
                self._release_queues_for(location)
            self.stats.bytes_sent += connection.send(msg, flags)
        except BaseException as exc:
            self._outbox.put_back(location.incarnation, location, msg.pop(BEFORE, []))
            if isinstance(exc, zmq.Again) and not flags & zmq.NOBLOCK:
                raise WorkerUnavailable(location.id, location.address,
                                        f"its queue stayed full for {self.timeout:.1f} s") from None
            raise
        self._stalled.discard(location.incarnation)
        self.stats.messages_sent += 1
        if queued and any(m["kind"] != DEL for m in queued):
            self._dirty.add(location.incarnation)
        if msg["kind"] != DEL:
            self._dirty.add(location.incarnation)
        elif location.incarnation not in self._unresponsive:
            self._dirty_deletes.add(location.incarnation)

    def _connection(self, location: WorkerRef) -> Connection:
        connection = self._connections.get(location.incarnation)
        if connection is None:
            if self._closed:
                raise RuntimeError("the syftzmq session is closed")
            if not location.address:
                raise WorkerUnavailable(location.id, None, "no address known")
            key = self._keys.get(location.address, self._default_key)
            curve = self._curves.get(location.address, self._default_curve)
            connection = Connection(self.context, self.ref.incarnation, location.address, key,
                                    self._send_timeout(), curve, location.shm)
            self._connections[location.incarnation] = connection
            self._heartbeat.watch(location.incarnation, location.address, key, curve, None)
        return connection

    def _send_timeout(self) -> float:
        return self.timeout

    # ------------------------------------------------------------------ observations
    def observe(self, location: WorkerRef, msg: dict, timeout: float | None = None) -> Any:
        """Ask ``location`` something; the answer reflects every command issued before."""
        timeout = timeout or self.timeout
        with self._lock:
            if self._releases:
                self._drain_releases(carrier=(location, msg))
            try:
                return self._observe_locked(location, msg, timeout)
            except BaseException:
                # The deletes this observation carried may not have left (flushing another
                # worker can raise a remote error or time out before it is sent): queue them
                # again. Deletes are idempotent and ids are never reused, so a second is harmless.
                if location.incarnation not in self._forgotten:
                    self._releases.extend((location, i) for i in msg.pop(RELEASES, ()))
                raise

    def _observe_locked(self, location: WorkerRef, msg: dict, timeout: float) -> Any:
        complete = needs_complete_flush(msg)
        pending = self._dirty | self._dirty_deletes if complete else self._dirty
        others = {incarnation for incarnation in pending if incarnation != location.incarnation}
        if msg.get("kind") == MOVE:
            # A move observes no data: only a chain holder's forwarded commands can still
            # change the objects it moves (everything else surfaces at the next observation).
            others &= self._chain_holders
        if others:
            refs = {incarnation: self._ref_for_incarnation(incarnation) for incarnation in others}
            flush = {"complete": True} if complete else {}
            self._round_trip({incarnation: message(FLUSH, origin=self.ref.incarnation, **flush)
                              for incarnation in others}, refs, timeout)
        msg["origin"] = self.ref.incarnation
        return self._round_trip({location.incarnation: msg}, {location.incarnation: location}, timeout)[location.incarnation]

    def _ref_for_incarnation(self, incarnation: str) -> WorkerRef:
        handle = self._handles.get(incarnation)
        if handle is not None:
            return handle.ref
        return WorkerRef(incarnation.split("#")[0], self._connections[incarnation].address, incarnation)

    def _round_trip(self, requests: dict[str, dict], refs: dict[str, WorkerRef],
                    timeout: float) -> dict[str, Any]:
        """Send one request per worker, wait for every reply; raise the first error."""
        reqs: dict[int, str] = {}
        for incarnation, msg in requests.items():
            req = new_id()
            msg["req"] = req
            msg["timeout"] = timeout
            reqs[req] = incarnation
            self._send_now(refs[incarnation], msg)
        self.stats.round_trips += 1
        replies: dict[str, dict] = {}
        deadline = time.monotonic() + timeout
        poller = None
        if len(requests) > 1:  # one request waits in its receive (below): no poller to build
            poller = zmq.Poller()
            for incarnation in requests:
                poller.register(self._connections[incarnation].socket, zmq.POLLIN)
        while len(replies) < len(requests):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = next(incarnation for incarnation in requests if incarnation not in replies)
                self._unresponsive.add(missing)
                for incarnation in requests:
                    self._dirty.discard(incarnation)
                    self._dirty_deletes.discard(incarnation)
                ref = refs[missing]
                raise WorkerUnavailable(ref.id, ref.address,
                                        f"no answer within {timeout:.1f} s")
            if poller is None:  # the common case: wait in the receive itself
                (incarnation,) = requests
                msg = self._connections[incarnation].receive(self.stats, int(remaining * 1000) + 1)
                if msg is not None and reqs.get(msg.get("req")) == incarnation:
                    replies[incarnation] = msg
                continue
            ready = dict(poller.poll(int(remaining * 1000) + 1))
            for incarnation in requests:
                connection = self._connections[incarnation]
                if connection.socket not in ready:
                    continue
                while incarnation not in replies and (msg := connection.receive(self.stats)) is not None:
                    if reqs.get(msg.get("req")) == incarnation:  # else a late answer to a timed-out ask
                        replies[incarnation] = msg
        errors = []
        for incarnation, msg in replies.items():
            self._dirty.discard(incarnation)
            self._dirty_deletes.discard(incarnation)
            self._unresponsive.discard(incarnation)
            if msg.get("error") is not None:
                errors.append(msg["error"].to_exception())
        if errors:
            raise errors[0]
        return {incarnation: msg["value"] for incarnation, msg in replies.items()}

    def get(self, pointer: PointerTensor) -> Any:
        return self.get_many([pointer])[0]

    def get_many(self, pointers: list[PointerTensor]) -> list[Any]:
        """Fetch several targets; one round trip per worker involved (one in the common case)."""
        by_location: dict[str, list[int]] = {}
        for index, pointer in enumerate(pointers):
            by_location.setdefault(pointer._location.incarnation, []).append(index)
        values: list[Any] = [None] * len(pointers)
        for indices in by_location.values():
            location = pointers[indices[0]]._location
            refs = [_to_ref(pointers[i]) for i in indices]
            fetched = self.observe(location, message(GET, refs=refs))
            for index, value in zip(indices, fetched):
                if isinstance(value, ChainRef):  # one hop of a chain came back
                    value = PointerTensor.from_record(value, self)
                    if value._owning:
                        self._live[value.id] = value
                        with self._lock:
                            self._connection(value._location)  # we own something there: keep its lease
                values[index] = value
        return values

    def info(self, pointer: PointerTensor, attr: str | None = None) -> TensorMeta | None:
        ref = Ref(pointer.id_at_location, attr or pointer._attr)
        return self.observe(pointer._location, message(INFO, ref=ref))

    def objects(self, location: WorkerRef) -> dict:
        """A snapshot of the worker's store; stored chain hops come back as (non-owning)
        pointers."""
        snapshot = self.observe(location, message(OBJECTS))
        return {object_id: PointerTensor.from_record(obj, self) if isinstance(obj, ChainRef)
                else obj for object_id, obj in snapshot.items()}

    def move(self, location: WorkerRef, object_ids: list[int], dest: WorkerRef) -> list[int]:
        """Move objects of ``location`` straight to ``dest`` in one round trip; their new ids."""
        new_object_ids = [new_id() for _ in object_ids]
        with self._lock:
            self._connection(dest)  # the moved objects are ours there: keep their lease renewed
            if location.incarnation in self._chain_holders:
                self._chain_holders.add(dest.incarnation)  # a moved object may be a pointer
        self.observe(location, message(MOVE, ids=list(object_ids), dest=dest,
                                       new_ids=new_object_ids))
        return new_object_ids

    def ping(self, location: WorkerRef, timeout: float | None = None) -> dict:
        with self._lock:
            return self._round_trip({location.incarnation: message(PING)}, {location.incarnation: location},
                                    timeout or self.timeout)[location.incarnation]

    def shutdown(self, location: WorkerRef, timeout: float | None = None) -> None:
        with self._lock:
            self._round_trip({location.incarnation: message(SHUTDOWN, origin=self.ref.incarnation)},
                             {location.incarnation: location}, timeout or self.timeout)
            self.forget(location)

    def forget(self, location: WorkerRef) -> None:
        """Drop the connection to a worker that is gone; its pending releases go too."""
        with self._lock:
            self._releases = deque(r for r in self._releases if r[0].incarnation != location.incarnation)
            self._outbox.discard(location.incarnation)
            self._dirty.discard(location.incarnation)
            self._dirty_deletes.discard(location.incarnation)
            self._forgotten.add(location.incarnation)
            self._heartbeat.forget(location.incarnation)
            connection = self._connections.pop(location.incarnation, None)
            if connection is not None:
                connection.close()

    # ------------------------------------------------------------------ end of life
    def close(self) -> None:
        """Free this client's remote objects, stop the workers it started, close sockets."""
        with self._lock:
            if self._closed:
                return
            for pointer in list(self._live.values()):
                if pointer._owning and pointer._gone is None:
                    pointer._relinquish("released at exit")
                    self._releases.append((pointer._location, pointer.id_at_location))
            self._outbox.close()
            for incarnation in self._outbox.incarnations():
                try:  # queued commands still leave: they may change objects others can see
                    self._flush_queue(incarnation, zmq.NOBLOCK)
                except Exception:
                    pass
            try:
                self._drain_releases()
            except Exception:
                pass
            self._closed = True
            self._heartbeat.stop()
            for process in self._processes:
                process.stop()
            for connection in self._connections.values():
                connection.close()
            self._connections.clear()
            self.context.term()
            if self._cluster_key_file:
                try:
                    os.remove(self._cluster_key_file)
                    os.rmdir(os.path.dirname(self._cluster_key_file))
                except OSError:
                    pass


# Values a queued command may hold unpickled: nothing the caller can change after the call.
_IMMUTABLE = PLAIN_VALUES | {Ref, torch.Size}


def _is_snapshot(op: tuple, args: tuple, kwargs: dict) -> bool:
    """Whether the command is fully determined now, so it can wait in the outbox unpickled.

    A local tensor argument could be changed in place before the queue leaves, and pickled
    code depends on what is registered for pickling by value at the time of the call.
    """
    if not isinstance(op[1], str):
        return False
    for leaf in argtree.leaves(args, kwargs):
        kind = type(leaf)
        if kind not in _IMMUTABLE and not (
                kind is slice and {type(leaf.start), type(leaf.stop), type(leaf.step)} <= _IMMUTABLE):
            return False
    return True


def _to_ref(value: Any) -> Any:
    if isinstance(value, PointerTensor):
        return Ref(value.id_at_location, value._attr)
    return value

