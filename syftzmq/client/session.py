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
them (see :func:`syftzmq.protocol.needs_complete_flush`).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import zmq

from .. import argtree, runtime
from ..errors import StaleIncarnationError, WorkerUnavailable
from ..ids import new_id, new_token
from ..ops import op_to_wire
from ..pointer import PointerTensor
from ..protocol import (ADDRESSED_TO, BATCH, BEFORE, CMD, DEL, FLUSH, FORK, GET, INFO, MOVE,
                        OBJECTS, PING, RELEASES, SHUTDOWN, STORE, Ref, WorkerRef, message,
                        needs_complete_flush)
from ..shapes import TensorMeta, describe
from ..worker.leases import DEFAULT_LEASE_SECONDS
from .connection import Connection
from .heartbeat import Heartbeat
from .outbox import Outbox

if TYPE_CHECKING:
    from ..launcher import WorkerProcess
    from .handle import Worker

DEFAULT_TIMEOUT = float(os.environ.get("SYFTZMQ_TIMEOUT", "5"))


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

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self.context = zmq.Context()
        self.ref = WorkerRef("me", None, f"me#{new_token(6)}")
        self.stats = Stats()
        self._connections: dict[str, Connection] = {}
        self._handles: dict[str, "Worker"] = {}
        self._keys: dict[str, bytes | None] = {}
        self._default_key: bytes | None = None
        self._curves: dict[str, Any] = {}
        self._default_curve: Any = None
        self._heartbeat = Heartbeat(self.context, self.ref.node, DEFAULT_LEASE_SECONDS)
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
        self._outbox = Outbox(self._flush_due, self._lock)
        # Workers holding pointers this client stored there: they forward work to others.
        self._chain_holders: set[str] = set()
        self._stalled: set[str] = set()  # a background flush found their socket full
        self._closed = False
        self._cluster_key_file: str | None = None
        self.grads_uncertain = False  # set when a backward() ran on a graph the mirrors lack
        runtime.set_current(runtime.LocalContext(self.ref, self))
        atexit.register(self.close)

    # ------------------------------------------------------------------ workers
    def connect(self, address: str, key: bytes | None, expected_id: str | None = None,
                timeout: float | None = None, curve: Any = None) -> WorkerRef:
        """Open a connection to ``address`` and learn who answers there.

        ``curve`` (a :class:`syftzmq.curve.CurveClient`) encrypts the connection.
        """
        with self._lock:
            probe = WorkerRef(expected_id or "?", address, f"probe:{new_token()}")
            connection = Connection(self.context, self.ref.node, address, key, self._send_timeout(),
                                    curve)
            self._connections[probe.node] = connection
            try:
                info = self._round_trip({probe.node: message(PING)}, {probe.node: probe},
                                        timeout or self.timeout)[probe.node]
            except BaseException:
                del self._connections[probe.node]
                connection.close()
                raise
            ref: WorkerRef = info["ref"]
            del self._connections[probe.node]
            if expected_id is not None and ref.id != expected_id:
                connection.close()
                raise ValueError(f"the worker at {address} is {ref.id!r}, not {expected_id!r}")
            connection.learn_peer(ref.shm)  # the probe knew nothing of it
            old = self._connections.pop(ref.node, None)
            if old is not None:
                old.close()
            self._supersede_earlier_incarnations(ref)
            self._connections[ref.node] = connection
            self._keys[address], self._default_key = key, key  # only keys that worked
            self._curves[address], self._default_curve = curve, curve
            self._heartbeat.watch(ref.node, address, key, curve, info.get("lease_seconds"))
            return ref

    def _supersede_earlier_incarnations(self, ref: WorkerRef) -> None:
        """A worker that answers at a known address under a known id, as a different
        incarnation, was restarted: what lived in the old one is gone."""
        for node in list(self._connections):
            known = self._ref_for_node(node)
            if node != ref.node and known.id == ref.id and known.address == ref.address:
                self._superseded[node] = ref
                self.forget(known)

    def register(self, handle: "Worker") -> None:
        self._handles[handle.ref.node] = handle

    def adopt(self, process: "WorkerProcess") -> None:
        """Stop ``process`` when this session closes."""
        self._processes.append(process)

    def handle(self, ref: WorkerRef) -> Any:
        """The handle for ``ref``: the user's own if there is one, else a new one."""
        found = self._handles.get(ref.node)
        if found is None:
            from .handle import LocalWorker, Worker
            found = LocalWorker() if ref.node == self.ref.node else Worker._for_ref(self, ref)
            self._handles[ref.node] = found
        return found

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

            from ..keys import write_key_file
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
        msg = message(CMD, origin=self.ref.node, op=op_to_wire(op), args=wire_args,
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
            self._dirty.add(location.node)
            if self._outbox.add(location, msg):
                self._flush_queue(location.node)

    def _flush_queue(self, node: str, flags: int = 0) -> None:
        """Send what is queued for ``node`` now, as one message."""
        if node in self._outbox:
            self._send_now(self._outbox.ref(node), message(BATCH, origin=self.ref.node), flags)

    def _flush_due(self) -> None:
        """Called by the outbox's sweeper thread: send queues that waited long enough; never raise
        (a worker that cannot take them now gets them with the next foreground message)."""
        for node in self._outbox.due(time.monotonic()):
            if node in self._stalled:
                continue
            try:
                self._flush_queue(node, zmq.NOBLOCK)
            except Exception:
                self._stalled.add(node)

    def _release_queues_for(self, location: WorkerRef) -> None:
        """Before ``location`` (a chain holder) hears anything, every other queue leaves."""
        for node in self._outbox.nodes():
            if node != location.node:
                self._flush_queue(node)

    def store_tensor(self, dest: WorkerRef, tensor: "torch.Tensor") -> PointerTensor:
        object_id = new_id()
        self._send(dest, message(STORE, origin=self.ref.node, id=object_id, obj=tensor))
        return self.new_pointer(dest, object_id, meta=describe(tensor))

    def store_pointer(self, dest: WorkerRef, pointer: PointerTensor) -> PointerTensor:
        """Store ``pointer`` itself on ``dest``; its ownership (if it has it) goes along."""
        object_id = new_id()
        owning = pointer._owning
        with self._lock:
            self._chain_holders.add(dest.node)
            self._send(dest, message(STORE, origin=self.ref.node, id=object_id,
                                     obj=pointer._wire_copy(owning=owning)))
            if owning:
                self._send(pointer._location, message(
                    FORK, origin=self.ref.node, id=pointer.id_at_location,
                    old_owner=self.ref.node, new_owner=dest.node))
        return self.new_pointer(dest, object_id, meta=pointer._meta)

    def new_pointer(self, location: WorkerRef, object_id: int, *, meta: TensorMeta | None = None,
                    mirror: "torch.Tensor | None" = None) -> PointerTensor:
        pointer = PointerTensor(location, object_id, meta=meta, mirror=mirror, owning=True,
                                owner=self.ref, session=self)
        self._live[pointer.id] = pointer
        return pointer

    def release(self, location: WorkerRef, object_id: int) -> None:
        """Called from ``__del__``: queue the delete; it goes out with the next message."""
        if not self._closed and location.node not in self._forgotten:
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
            batches.setdefault(location.node, (location, []))[1].append(object_id)
        for location, ids in batches.values():
            if location.node in self._superseded:
                continue  # died with the old incarnation
            if carrier is not None and location.node == carrier[0].node:
                carrier[1][RELEASES] = ids
                continue
            try:
                self._send_now(location, message(DEL, origin=self.ref.node, ids=ids), zmq.NOBLOCK)
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
        if location.node in self._superseded:
            raise StaleIncarnationError(
                f"worker {location.id!r} was restarted (now {self._superseded[location.node].node!r}); "
                f"objects of its earlier incarnation {location.node!r} are gone")

    def _send_now(self, location: WorkerRef, msg: dict, flags: int = 0) -> None:
        """Send ``msg``, carrying whatever the outbox holds for ``location`` (applied first)."""
        self._check_current(location)
        connection = self._connection(location)
        if not location.node.startswith("probe:"):
            msg[ADDRESSED_TO] = location.node  # a restarted worker refuses it
        queued = self._outbox.take(location.node)  # first: releasing others must not come back
        if queued:
            msg[BEFORE] = queued
        try:
            if location.node in self._chain_holders:
                self._release_queues_for(location)
            self.stats.bytes_sent += connection.send(msg, flags)
        except BaseException as exc:
            self._outbox.put_back(location.node, location, msg.pop(BEFORE, []))
            if isinstance(exc, zmq.Again) and not flags & zmq.NOBLOCK:
                raise WorkerUnavailable(location.id, location.address,
                                        f"its queue stayed full for {self.timeout:.1f} s") from None
            raise
        self._stalled.discard(location.node)
        self.stats.messages_sent += 1
        if queued and any(m["kind"] != DEL for m in queued):
            self._dirty.add(location.node)
        if msg["kind"] != DEL:
            self._dirty.add(location.node)
        elif location.node not in self._unresponsive:
            self._dirty_deletes.add(location.node)

    def _connection(self, location: WorkerRef) -> Connection:
        connection = self._connections.get(location.node)
        if connection is None:
            if self._closed:
                raise RuntimeError("the syftzmq session is closed")
            if not location.address:
                raise WorkerUnavailable(location.id, None, "no address known")
            key = self._keys.get(location.address, self._default_key)
            curve = self._curves.get(location.address, self._default_curve)
            connection = Connection(self.context, self.ref.node, location.address, key,
                                    self._send_timeout(), curve, location.shm)
            self._connections[location.node] = connection
            self._heartbeat.watch(location.node, location.address, key, curve, None)
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
                if location.node not in self._forgotten:
                    self._releases.extend((location, i) for i in msg.pop(RELEASES, ()))
                raise

    def _observe_locked(self, location: WorkerRef, msg: dict, timeout: float) -> Any:
        complete = needs_complete_flush(msg)
        pending = self._dirty | self._dirty_deletes if complete else self._dirty
        others = {node for node in pending if node != location.node}
        if msg.get("kind") == MOVE:
            # A move observes no data: only a chain holder's forwarded commands can still
            # change the objects it moves (everything else surfaces at the next observation).
            others &= self._chain_holders
        if others:
            refs = {node: self._ref_for_node(node) for node in others}
            flush = {"complete": True} if complete else {}
            self._round_trip({node: message(FLUSH, origin=self.ref.node, **flush)
                              for node in others}, refs, timeout)
        msg["origin"] = self.ref.node
        return self._round_trip({location.node: msg}, {location.node: location}, timeout)[location.node]

    def _ref_for_node(self, node: str) -> WorkerRef:
        handle = self._handles.get(node)
        if handle is not None:
            return handle.ref
        return WorkerRef(node.split("#")[0], self._connections[node].address, node)

    def _round_trip(self, requests: dict[str, dict], refs: dict[str, WorkerRef],
                    timeout: float) -> dict[str, Any]:
        """Send one request per worker, wait for every reply; raise the first error."""
        reqs: dict[int, str] = {}
        for node, msg in requests.items():
            req = new_id()
            msg["req"] = req
            msg["timeout"] = timeout
            reqs[req] = node
            self._send_now(refs[node], msg)
        self.stats.round_trips += 1
        replies: dict[str, dict] = {}
        deadline = time.monotonic() + timeout
        poller = None
        if len(requests) > 1:  # one request waits in its receive (below): no poller to build
            poller = zmq.Poller()
            for node in requests:
                poller.register(self._connections[node].socket, zmq.POLLIN)
        while len(replies) < len(requests):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = next(node for node in requests if node not in replies)
                self._unresponsive.add(missing)
                for node in requests:
                    self._dirty.discard(node)
                    self._dirty_deletes.discard(node)
                ref = refs[missing]
                raise WorkerUnavailable(ref.id, ref.address,
                                        f"no answer within {timeout:.1f} s")
            if poller is None:  # the common case: wait in the receive itself
                (node,) = requests
                msg = self._connections[node].receive(self.stats, int(remaining * 1000) + 1)
                if msg is not None and reqs.get(msg.get("req")) == node:
                    replies[node] = msg
                continue
            ready = dict(poller.poll(int(remaining * 1000) + 1))
            for node in requests:
                connection = self._connections[node]
                if connection.socket not in ready:
                    continue
                while node not in replies and (msg := connection.receive(self.stats)) is not None:
                    if reqs.get(msg.get("req")) == node:  # else a late answer to a timed-out ask
                        replies[node] = msg
        errors = []
        for node, msg in replies.items():
            self._dirty.discard(node)
            self._dirty_deletes.discard(node)
            self._unresponsive.discard(node)
            if msg.get("error") is not None:
                errors.append(msg["error"].to_exception())
        if errors:
            raise errors[0]
        return {node: msg["value"] for node, msg in replies.items()}

    def get(self, pointer: PointerTensor) -> Any:
        return self.get_many([pointer])[0]

    def get_many(self, pointers: list[PointerTensor]) -> list[Any]:
        """Fetch several targets; one round trip per worker involved (one in the common case)."""
        by_location: dict[str, list[int]] = {}
        for index, pointer in enumerate(pointers):
            by_location.setdefault(pointer._location.node, []).append(index)
        values: list[Any] = [None] * len(pointers)
        for indices in by_location.values():
            location = pointers[indices[0]]._location
            refs = [_to_ref(pointers[i]) for i in indices]
            fetched = self.observe(location, message(GET, refs=refs))
            for index, value in zip(indices, fetched):
                if isinstance(value, PointerTensor) and value._owning:
                    self._live[value.id] = value
                    with self._lock:
                        self._connection(value._location)  # we own something there: keep its lease
                values[index] = value
        return values

    def info(self, pointer: PointerTensor, attr: str | None = None) -> TensorMeta | None:
        ref = Ref(pointer.id_at_location, attr or pointer._attr)
        return self.observe(pointer._location, message(INFO, ref=ref))

    def objects(self, location: WorkerRef) -> dict:
        return self.observe(location, message(OBJECTS))

    def move(self, location: WorkerRef, object_ids: list[int], dest: WorkerRef) -> list[int]:
        """Move objects of ``location`` straight to ``dest`` in one round trip; their new ids."""
        new_object_ids = [new_id() for _ in object_ids]
        with self._lock:
            self._connection(dest)  # the moved objects are ours there: keep their lease renewed
            if location.node in self._chain_holders:
                self._chain_holders.add(dest.node)  # a moved object may be a pointer
        self.observe(location, message(MOVE, ids=list(object_ids), dest=dest,
                                       new_ids=new_object_ids))
        return new_object_ids

    def ping(self, location: WorkerRef, timeout: float | None = None) -> dict:
        with self._lock:
            return self._round_trip({location.node: message(PING)}, {location.node: location},
                                    timeout or self.timeout)[location.node]

    def shutdown(self, location: WorkerRef, timeout: float | None = None) -> None:
        with self._lock:
            self._round_trip({location.node: message(SHUTDOWN, origin=self.ref.node)},
                             {location.node: location}, timeout or self.timeout)
            self.forget(location)

    def forget(self, location: WorkerRef) -> None:
        """Drop the connection to a worker that is gone; its pending releases go too."""
        with self._lock:
            self._releases = deque(r for r in self._releases if r[0].node != location.node)
            self._outbox.discard(location.node)
            self._dirty.discard(location.node)
            self._dirty_deletes.discard(location.node)
            self._forgotten.add(location.node)
            self._heartbeat.forget(location.node)
            connection = self._connections.pop(location.node, None)
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
            for node in self._outbox.nodes():
                try:  # queued commands still leave: they may change objects others can see
                    self._flush_queue(node, zmq.NOBLOCK)
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
_IMMUTABLE = frozenset({Ref, int, float, bool, complex, str, type(None), type(...), torch.dtype,
                        torch.device, torch.layout, torch.memory_format, torch.Size})


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


_default: ClientSession | None = None


def default_session() -> ClientSession:
    """This process's session, created on first use."""
    global _default
    if _default is None:
        _default = ClientSession()
    return _default
