"""Flush before answer: an observation reflects everything this worker forwarded before it.

A worker in the middle of a chain forwards commands to the next hop and never waits for them.
So before it answers an observation it *flushes* every peer it forwarded to since the last
flush: it sends each a ``FLUSH`` and answers once every peer acknowledged (or missed its
deadline). ZeroMQ keeps order per connection, so a peer's acknowledgement means everything
forwarded to it earlier has been applied (and, recursively, whatever that peer forwarded).

Nothing blocks. The flush registers a :class:`Waiter` per peer and returns; the loop goes on
serving, and the last acknowledgement runs the observation (:class:`Join`). A waiter has no
deadline of its own: it waits as long as its peer answers liveness probes
(:mod:`syftzmq.worker.liveness`). A peer found dead that way becomes a recorded
:class:`~syftzmq.errors.WorkerUnavailable` for the observing client, and is *unresponsive*:
deletes still go to it, but no longer make every later observation wait for it, until it
answers again.

Deletes and ownership hand-offs (``DEL``, ``FORK``) change no answer but a store listing, so
only a *complete* flush (see :func:`~syftzmq.core.messages.needs_complete_flush`) waits for the
peers that were sent nothing else.

All of this is kept *per origin* (the client a message travels for): an observation flushes
only the peers its own client's commands went to, and a peer that missed one client's deadline
is unresponsive for that client only. So a client whose chain hop is frozen never makes
another client's request wait or fail. At most :data:`MAX_ORIGINS` origins are tracked (the
least recently active is forgotten first; its next observation then waits for nothing it
forwarded before).
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from ..core.failures import Failure
from ..core.ids import new_id
from ..core.messages import AFTER, DEL, FLUSH, FORK, message, needs_complete_flush
from ..core.refs import ChainRef, WorkerRef
from ..errors import WorkerUnavailable
from .failures import FailureRecord
from .peers import Peers

log = logging.getLogger("syftzmq.worker")

DEFAULT_PEER_TIMEOUT = 4.0  # for answers nothing depends on (a peer telling its lease)
MAX_ORIGINS = 1024


@dataclass
class Waiter:
    """A reply this worker expects from ``peer``, with what to do on reply or on timeout
    (``on_timeout`` takes an optional detail: why the peer counts as dead)."""

    deadline: float
    on_reply: Callable[[dict], None]
    on_timeout: Callable[..., None]
    peer: WorkerRef | None = None
    liveness: float | None = None  # the requester's liveness deadline for the peer, if it gave one


@dataclass
class Join:
    """Runs ``then`` once ``pending`` acknowledgements have arrived (or timed out)."""

    pending: int
    then: Callable[[], None]
    done: bool = field(default=False)

    def arrive(self) -> None:
        self.pending -= 1
        if self.pending <= 0 and not self.done:
            self.done = True
            self.then()


class Waiters:
    """The replies this worker awaits from peers, by request id, each with a deadline."""

    def __init__(self) -> None:
        self._waiting: dict[int, Waiter] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def expect(self, req: int, deadline: float, on_reply: Callable[[dict], None],
               on_timeout: Callable[..., None], peer: WorkerRef | None = None,
               liveness: float | None = None) -> None:
        self._waiting[req] = Waiter(deadline, on_reply, on_timeout, peer, liveness)

    def awaited_peers(self) -> dict[str, tuple[WorkerRef, float | None]]:
        """The peers some waiter waits on, by incarnation, each with the shortest liveness
        deadline a requester asked for (their liveness is probed)."""
        found: dict[str, tuple[WorkerRef, float | None]] = {}
        for w in self._waiting.values():
            if w.peer is not None:
                _, shortest = found.get(w.peer.incarnation, (w.peer, None))
                if w.liveness is not None and (shortest is None or w.liveness < shortest):
                    shortest = w.liveness
                found[w.peer.incarnation] = (w.peer, shortest)
        return found

    def peer_dead(self, incarnation: str, detail: str) -> None:
        """``incarnation`` is dead by its liveness: everything waiting on it fails now."""
        for req in [r for r, w in self._waiting.items()
                    if w.peer is not None and w.peer.incarnation == incarnation]:
            self._waiting.pop(req).on_timeout(detail)

    def answered(self, msg: dict) -> None:
        """A peer's reply arrived: run what waited for it (a reply nobody awaits is dropped)."""
        waiter = self._waiting.pop(msg.get("req", 0), None)
        if waiter is not None:
            waiter.on_reply(msg)

    def expire(self, now: float | None = None) -> int:
        """Run the timeout of every waiter whose deadline has passed; returns how many of
        them raised (each is logged; one failing does not keep the others from running)."""
        now = time.monotonic() if now is None else now
        errors = 0
        for req in [r for r, w in self._waiting.items() if w.deadline <= now]:
            try:
                self._waiting.pop(req).on_timeout()
            except Exception:
                errors += 1
                log.exception("a timeout handler failed")
        return errors

    def soonest(self) -> float | None:
        """The earliest deadline, if anything is awaited (the loop's poll wakes up for it)."""
        return min((w.deadline for w in self._waiting.values()), default=None)


def peer_timeout(msg: dict) -> float:
    """How long to wait for a peer on behalf of ``msg``: without end while the peer is alive
    (liveness decides, see :mod:`syftzmq.worker.liveness`). A requester that bounded its call
    stops waiting by itself; the late answer is then dropped by it."""
    return math.inf


def requested_liveness(msg: dict) -> float | None:
    """The liveness deadline the requester of ``msg`` judges workers by, if it said (a worker
    waiting on a peer on its behalf judges the peer by it too, so a dead peer is reported
    within the requester's deadline)."""
    value = msg.get("liveness")
    return float(value) if isinstance(value, (int, float)) and 0 < value < math.inf else None


@dataclass
class _Pending:
    """What one origin's messages left to flush at the peers."""

    dirty: dict[str, WorkerRef] = field(default_factory=dict)
    handoffs: dict[str, WorkerRef] = field(default_factory=dict)  # sent only DEL/FORK
    unresponsive: set[str] = field(default_factory=set)  # missed this origin's flush deadline

    def __bool__(self) -> bool:
        return bool(self.dirty or self.handoffs or self.unresponsive)


class Downstream:
    """What this worker sent to its peers for each origin since it last flushed them, and the
    flush itself."""

    def __init__(self, me: WorkerRef, peers: Peers, waiters: Waiters,
                 failures: FailureRecord, max_origins: int = MAX_ORIGINS) -> None:
        self.me = me
        self.peers = peers
        self.waiters = waiters
        self.failures = failures
        self._max_origins = max_origins
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        # the ``after`` of the message being handled: what it causes here carries it on
        # (see :mod:`syftzmq.worker.arrival_order`); set by the handlers
        self.after: Any = None

    def pending(self, origin: str) -> _Pending:
        """``origin``'s record (made if new; it becomes the most recently active)."""
        found = self._pending.get(origin)
        if found is None:
            while len(self._pending) >= self._max_origins:
                self._pending.popitem(last=False)
            found = self._pending[origin] = _Pending()
        else:
            self._pending.move_to_end(origin)
        return found

    def forget(self, origin: str) -> None:
        """``origin`` is gone (its lease expired): nobody will observe on its behalf."""
        self._pending.pop(origin, None)

    # ------------------------------------------------------------------ sending
    def send(self, peer: WorkerRef, msg: dict) -> None:
        """Queue a fire-and-forget ``msg`` for ``peer``; its origin's next flush waits for it."""
        if self.after is not None:
            msg[AFTER] = self.after
        self.peers.queue(peer, msg)
        pending = self.pending(msg.get("origin", ""))
        if msg["kind"] not in (DEL, FORK):
            pending.dirty[peer.incarnation] = peer
        elif not (msg["kind"] == DEL and peer.incarnation in pending.unresponsive):
            # deletes to a dead peer must not stall every observation
            pending.handoffs[peer.incarnation] = peer

    def cascade(self, removed: list[Any], origin: str) -> None:
        """A removed owning pointer deletes its target, one hop further down the chain.
        Each is on its own: one that cannot be sent (its peer has no usable address) is
        logged and does not keep the others from going."""
        for obj in removed:
            if isinstance(obj, ChainRef) and obj.owning:
                try:
                    self.send(obj.location, message(DEL, origin=origin, ids=[obj.id_at_location]))
                except Exception:
                    log.exception("could not cascade a delete to %r", obj.location)

    def hand_over(self, record: ChainRef, new_owner: str, origin: str) -> None:
        """Tell a chain hop's target holder that the hop now belongs to ``new_owner``."""
        if record.owning:
            self.send(record.location, message(
                FORK, origin=origin, id=record.id_at_location, old_owner=self.me.incarnation,
                new_owner=new_owner))

    # ------------------------------------------------------------------ flushing
    def has_pending(self, origin: str) -> bool:
        """Whether an observation by ``origin`` may have peers to flush first (else
        :meth:`flush` would run its continuation at once)."""
        return origin in self._pending

    def flush(self, msg: dict, then: Callable[[], None]) -> None:
        """Flush the peers ``msg``'s answer depends on, then run ``then`` (at once if none)."""
        origin = msg.get("origin", "")
        pending = self._pending.get(origin)
        if pending is None:
            then()
            return
        complete = needs_complete_flush(msg)
        targets, pending.dirty = pending.dirty, {}
        if complete:
            targets.update(pending.handoffs)
            pending.handoffs = {}
        else:
            for incarnation in targets:
                pending.handoffs.pop(incarnation, None)
        if not pending:
            self._pending.pop(origin, None)
        if not targets:
            then()
            return
        self._send_flushes(origin, list(targets.values()), complete, peer_timeout(msg),
                           requested_liveness(msg), then)

    def _send_flushes(self, origin: str, targets: list[WorkerRef], complete: bool,
                      timeout: float, liveness: float | None, then: Callable[[], None]) -> None:
        flush = {"complete": True} if complete else {}
        if liveness is not None:
            flush["liveness"] = liveness  # the next hop judges its own peers by it too
        join = Join(len(targets), then)
        for peer in targets:
            req = new_id()
            self.waiters.expect(req, time.monotonic() + timeout,
                                self._acknowledged(origin, join, peer.incarnation),
                                self._timed_out(origin, peer, join), peer, liveness)
            try:
                self.peers.send(peer, message(FLUSH, req=req, origin=origin, timeout=timeout,
                                              **flush))
            except Exception as exc:  # never connected: as good as a peer that did not answer
                log.info("could not flush %s: %s", peer.id, exc)  # (liveness decides its fate)

    def _acknowledged(self, origin: str, join: Join, incarnation: str) -> Callable[[dict], None]:
        def on_reply(ack: dict) -> None:
            found = self._pending.get(origin)
            if found is not None:
                found.unresponsive.discard(incarnation)
            for failure in _failures_in(ack):
                self.failures.record(origin, failure)
            join.arrive()
        return on_reply

    def _timed_out(self, origin: str, peer: WorkerRef, join: Join) -> Callable[[], None]:
        def on_timeout(detail: str = "") -> None:
            exc = WorkerUnavailable(peer.id, peer.address, f"no answer from {peer.id!r} to "
                                    f"{self.me.id!r} while flushing a chain"
                                    + (f": {detail}" if detail else ""))
            self.failures.record(origin, self.failures.failure(exc))
            self.pending(origin).unresponsive.add(peer.incarnation)
            join.arrive()
        return on_timeout


def _failures_in(ack: dict) -> list[Failure]:
    """The failures a peer's flush acknowledgement reports (only records: a reply is data)."""
    later = ack.get("failures")
    reported = [ack.get("error"), *(later if isinstance(later, list) else [])]
    return [failure for failure in reported if isinstance(failure, Failure)]
