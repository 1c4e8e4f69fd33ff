"""This client's connections, one per worker *incarnation* (a worker process's life).

A worker restarted at the same address under the same id is a new incarnation: what lived in
the old one is gone, and the client must say so (:class:`~syftzmq.errors.StaleIncarnationError`)
instead of sending commands that the new one would refuse or, worse, apply to other objects.
So connections are keyed by incarnation, a handshake (``PING``) learns who answers at an
address, and an answer from a new incarnation supersedes the earlier ones at that address.

Connections to workers learned from pointers (a chain hop fetched from another worker) open
lazily, with the key and CURVE setting that last worked for that address (or the last that
worked anywhere). Every open connection is watched by the heartbeat, which renews this
client's lease there while the user's code is idle.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import zmq

from ..core.ids import new_token
from ..core.refs import WorkerRef
from ..errors import StaleIncarnationError, WorkerShutDown, WorkerUnavailable
from .connection import Connection
from .heartbeat import Heartbeat

PROBE = "probe:"  # the incarnation a connection has until its worker tells its own


class GoneIncarnations:
    """Incarnations this client stopped talking to, and the one that replaced each (if any).

    They are remembered so that a pointer into one fails clearly (superseded) or its delete is
    dropped (forgotten) instead of reopening a connection. That reason lasts only while some
    pointer still names the incarnation, so when the record grows past its limit the entries no
    live pointer names (``still_named``) are dropped, and the limit doubles if that was not
    enough (the pruning costs one pass over the live pointers, amortised over many entries).
    """

    LIMIT = 64

    def __init__(self, still_named: Callable[[], set[str]]) -> None:
        self._replaced_by: dict[str, WorkerRef | None] = {}
        self._still_named = still_named
        self._limit = self.LIMIT

    def add(self, incarnation: str, replaced_by: WorkerRef | None = None) -> None:
        if replaced_by is not None or incarnation not in self._replaced_by:
            self._replaced_by[incarnation] = replaced_by
        if len(self._replaced_by) > self._limit:
            self._prune()

    def _prune(self) -> None:
        named = self._still_named()
        self._replaced_by = {incarnation: new for incarnation, new in self._replaced_by.items()
                             if incarnation in named}
        self._limit = max(self.LIMIT, 2 * len(self._replaced_by))

    def replacement(self, incarnation: str) -> WorkerRef | None:
        """The incarnation that superseded ``incarnation``, if one did."""
        return self._replaced_by.get(incarnation)

    def __contains__(self, incarnation: object) -> bool:
        return incarnation in self._replaced_by

    def __len__(self) -> int:
        return len(self._replaced_by)


class Connections:
    """The open connections by incarnation, with the keys that opened them.

    Not locked itself: the session calls it under its lock.
    """

    def __init__(self, context: zmq.Context, incarnation: str, heartbeat: Heartbeat,
                 send_timeout: float, still_named: Callable[[], set[str]]) -> None:
        self._context = context
        self._incarnation = incarnation  # this client's, carried in every routing identity
        self._heartbeat = heartbeat
        self.send_timeout = send_timeout
        self.gone = GoneIncarnations(still_named)
        # Incarnations this client shut down: never pruned (one entry per shutdown() call), so
        # a handle kept after shutdown() fails at once instead of reopening a connection.
        self.shut_down: set[str] = set()
        self._open: dict[str, Connection] = {}
        self._refs: dict[str, WorkerRef] = {}
        self._keys: dict[str, bytes | None] = {}
        self._default_key: bytes | None = None
        self._curves: dict[str, Any] = {}
        self._default_curve: Any = None
        self.closed = False

    # ------------------------------------------------------------------ lookup
    def __getitem__(self, incarnation: str) -> Connection:
        return self._open[incarnation]

    def __contains__(self, incarnation: object) -> bool:
        return incarnation in self._open

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._open))

    def ref(self, incarnation: str) -> WorkerRef:
        """What this client knows of the worker behind an open connection."""
        known = self._refs.get(incarnation)
        if known is not None:
            return known
        return WorkerRef(incarnation.split("#")[0], self._open[incarnation].address, incarnation)

    def credentials(self, location: WorkerRef) -> tuple[bytes | None, Any]:
        """The key and CURVE setting this client uses for ``location`` (its liveness endpoint
        wants the same)."""
        connection = self._open.get(location.incarnation)
        key = connection.signer.key if connection is not None else \
            self._keys.get(location.address, self._default_key)
        return key, self._curves.get(location.address, self._default_curve)

    def check_current(self, location: WorkerRef) -> None:
        """Raise if ``location`` is an incarnation that this client shut down, or that a restart
        of its worker replaced."""
        if location.incarnation in self.shut_down:
            raise WorkerShutDown(location.id, location.address)
        replacement = self.gone.replacement(location.incarnation)
        if replacement is not None:
            raise StaleIncarnationError(
                f"worker {location.id!r} was restarted (now {replacement.incarnation!r}); "
                f"objects of its earlier incarnation {location.incarnation!r} are gone")

    def current(self, location: WorkerRef) -> Connection:
        """:meth:`check_current`, then :meth:`get`: what every message to a worker asks first,
        in one call."""
        incarnation = location.incarnation
        if incarnation in self.shut_down or incarnation in self.gone:
            self.check_current(location)  # raises if it was shut down or replaced, saying which
        connection = self._open.get(incarnation)
        return connection if connection is not None else self.get(location)

    def get(self, location: WorkerRef) -> Connection:
        """The connection to ``location``, opened now if this client has none yet."""
        connection = self._open.get(location.incarnation)
        if connection is None:
            if location.incarnation in self.shut_down:
                raise WorkerShutDown(location.id, location.address)
            if self.closed:
                raise RuntimeError("the syftzmq session is closed")
            if not location.address:
                raise WorkerUnavailable(location.id, None, "no address known")
            key = self._keys.get(location.address, self._default_key)
            curve = self._curves.get(location.address, self._default_curve)
            connection = Connection(self._context, self._incarnation, location.address, key,
                                    self.send_timeout, curve, location.shm, worker=location.id)
            self._open[location.incarnation] = connection
            self._refs[location.incarnation] = location
            self._heartbeat.watch(location.incarnation, location.address, key, curve, None)
        return connection

    # ------------------------------------------------------------------ handshakes
    def probe(self, address: str, key: bytes | None, curve: Any,
              expected_id: str | None) -> tuple[WorkerRef, Connection]:
        """A connection to ``address`` under a provisional incarnation, for the handshake."""
        probe = WorkerRef(expected_id or "?", address, f"{PROBE}{new_token()}")
        connection = Connection(self._context, self._incarnation, address, key, self.send_timeout,
                                curve, worker=probe.id, watch_handshake=True)
        self._open[probe.incarnation] = connection
        return probe, connection

    def end_probe(self, probe: WorkerRef, failed: bool) -> None:
        """The handshake is over: the probe's entry goes (its socket too if it failed)."""
        connection = self._open.pop(probe.incarnation)
        if failed:
            connection.close()

    def adopt(self, ref: WorkerRef, connection: Connection, key: bytes | None, curve: Any,
              lease: float | None) -> None:
        """``connection`` (a finished probe) is the connection to ``ref`` from now on."""
        connection.learn_peer(ref.shm)  # the probe knew nothing of it
        connection.worker = ref.id
        old = self._open.pop(ref.incarnation, None)
        if old is not None:
            old.close()
        self._open[ref.incarnation] = connection
        self._refs[ref.incarnation] = ref
        self._keys[ref.address], self._default_key = key, key  # only keys that worked
        self._curves[ref.address], self._default_curve = curve, curve
        self._heartbeat.watch(ref.incarnation, ref.address, key, curve, lease)

    def earlier_incarnations(self, ref: WorkerRef) -> list[WorkerRef]:
        """Open incarnations that ``ref`` supersedes: the same id at the same address."""
        found = []
        for incarnation in self:
            known = self.ref(incarnation)
            if incarnation != ref.incarnation and known.id == ref.id and known.address == ref.address:
                found.append(known)
        return found

    # ------------------------------------------------------------------ end of a connection
    def forget(self, incarnation: str, replaced_by: WorkerRef | None = None) -> None:
        """Close the connection to a worker incarnation that is gone, and remember it is."""
        self.gone.add(incarnation, replaced_by)
        self._heartbeat.forget(incarnation)
        self._refs.pop(incarnation, None)
        connection = self._open.pop(incarnation, None)
        if connection is not None:
            connection.close()

    def set_send_timeout(self, seconds: float) -> None:
        """How long a blocked send may wait, on every connection (open ones included)."""
        self.send_timeout = seconds
        for connection in self._open.values():
            connection.set_send_timeout(seconds)

    def close(self) -> None:
        self.closed = True
        for connection in self._open.values():
            connection.close()
        self._open.clear()
        self._refs.clear()
