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
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..core.ids import new_id
from ..core.messages import DEL, FLUSH, FORK, message, needs_complete_flush
from ..core.refs import ChainRef, WorkerRef
from ..errors import WorkerUnavailable
from .failures import FailureRecord
from .peers import Peers

DEFAULT_PEER_TIMEOUT = 4.0  # for answers nothing depends on (a peer telling its lease)


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

    def expire(self, now: float | None = None) -> None:
        """Run the timeout of every waiter whose deadline has passed."""
        now = time.monotonic() if now is None else now
        for req in [r for r, w in self._waiting.items() if w.deadline <= now]:
            self._waiting.pop(req).on_timeout()

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


class Downstream:
    """What this worker sent to its peers since it last flushed them, and the flush itself."""

    def __init__(self, me: WorkerRef, peers: Peers, waiters: Waiters,
                 failures: FailureRecord) -> None:
        self.me = me
        self.peers = peers
        self.waiters = waiters
        self.failures = failures
        self.dirty: set[str] = set()
        self.dirty_handoffs: set[str] = set()  # peers sent only DEL/FORK (needs_complete_flush)
        self.unresponsive: set[str] = set()  # peers that missed a flush deadline

    # ------------------------------------------------------------------ sending
    def send(self, peer: WorkerRef, msg: dict) -> None:
        """Queue a fire-and-forget ``msg`` for ``peer``; the next flush waits for it."""
        self.peers.queue(peer, msg)
        if msg["kind"] not in (DEL, FORK):
            self.dirty.add(peer.incarnation)
        elif not (msg["kind"] == DEL and peer.incarnation in self.unresponsive):
            # deletes to a dead peer must not stall every observation
            self.dirty_handoffs.add(peer.incarnation)

    def cascade(self, removed: list[Any]) -> None:
        """A removed owning pointer deletes its target, one hop further down the chain."""
        for obj in removed:
            if isinstance(obj, ChainRef) and obj.owning:
                self.send(obj.location, message(DEL, ids=[obj.id_at_location]))

    def hand_over(self, record: ChainRef, new_owner: str) -> None:
        """Tell a chain hop's target holder that the hop now belongs to ``new_owner``."""
        if record.owning:
            self.send(record.location, message(
                FORK, id=record.id_at_location, old_owner=self.me.incarnation, new_owner=new_owner))

    # ------------------------------------------------------------------ flushing
    def flush(self, msg: dict, then: Callable[[], None]) -> None:
        """Flush the peers ``msg``'s answer depends on, then run ``then`` (at once if none)."""
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
        timeout = peer_timeout(msg)
        liveness = requested_liveness(msg)
        if liveness is not None:
            flush["liveness"] = liveness  # the next hop judges its own peers by it too
        join = Join(len(targets), then)
        for incarnation in targets:
            peer = self.peers.refs[incarnation]
            req = new_id()
            self.peers.send(peer, message(FLUSH, req=req, origin=origin, timeout=timeout, **flush))
            self.waiters.expect(req, time.monotonic() + timeout,
                                self._acknowledged(origin, join, incarnation),
                                self._timed_out(origin, peer, join), peer, liveness)

    def _acknowledged(self, origin: str, join: Join, incarnation: str) -> Callable[[dict], None]:
        def on_reply(ack: dict) -> None:
            self.unresponsive.discard(incarnation)
            for failure in ([ack["error"]] if ack.get("error") else []) + list(ack.get("failures", [])):
                self.failures.record(origin, failure)
            join.arrive()
        return on_reply

    def _timed_out(self, origin: str, peer: WorkerRef, join: Join) -> Callable[[], None]:
        def on_timeout(detail: str = "") -> None:
            exc = WorkerUnavailable(peer.id, peer.address, f"no answer from {peer.id!r} to "
                                    f"{self.me.id!r} while flushing a chain"
                                    + (f": {detail}" if detail else ""))
            self.failures.record(origin, self.failures.failure(exc))
            self.unresponsive.add(peer.incarnation)
            join.arrive()
        return on_timeout
