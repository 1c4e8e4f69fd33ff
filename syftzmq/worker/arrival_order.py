"""Work that reaches this worker by two paths is applied in the order it was issued.

A client sends some messages to this worker directly and others to a chain holder, which
forwards them here. ZeroMQ keeps order per connection only: this worker's socket takes turns
between the client's connection and the holder's, so when both have messages waiting (this
worker was busy, or not scheduled), the holder's forward can be read first — and find no object
where the client stored one just before, or apply an in-place update too early.

So the client numbers the messages it sends to each worker (``seq``) and tells a chain holder
how far each other worker must have got (``after``: incarnation -> the client's last ``seq``
there) before what the holder forwards may apply there; a holder passes ``after`` on with
everything it forwards (commands, cascaded deletes, hand-overs), hop after hop. Here a forwarded
message whose requirement is not met yet *waits*, and everything after it from the same peer
waits behind it (per-peer order is kept), until the client's own message has come.

It never waits for what cannot come:

* only for an origin this worker has heard from (a client talks to a worker directly — its
  connection handshake — before any ``after`` can name that worker; an origin it never heard
  of is not waited for, so a forged ``after`` stalls nothing);
* not past the origin's lease: a client silent here for ``lease_seconds`` (since the message
  began to wait, or since it was last heard) is gone, and what waited for it runs;
* at most :data:`MAX_WAITING` messages per peer; beyond that the oldest runs (and the numbers
  of at most :data:`~syftzmq.worker.downstream.MAX_ORIGINS` clients are kept);
* not for a message of the client's this worker could not read (refused at decoding: a safe
  worker refusing a class, say). Its number is inside it, so from then on nothing waits for
  that client until its next readable message says how far it has got (all before the lost
  one had come: one connection keeps order).

Whatever runs without its requirement runs exactly as it would have without this module, and
is counted (``order_gave_up``).

A client's own message may also wait here: for a move's objects to arrive from its source (see
:mod:`syftzmq.worker.move_arrivals`, which holds those).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable

from ..core.messages import AFTER, BEFORE, MOVES_ABANDONED, MOVES_FIRST, SEQ
from .downstream import MAX_ORIGINS
from .move_arrivals import MoveArrivals

log = logging.getLogger("syftzmq.worker")

MAX_WAITING = 10_000  # messages one peer may have waiting here

Apply = Callable[[str, bytes, dict], None]


@dataclass
class _Waiting:
    identity: bytes
    msg: dict
    since: float


class ArrivalOrder:
    """Holds back a peer's forwarded messages until the client messages they follow came.

    ``apply(sender, identity, msg)`` handles a message; ``last_heard(incarnation)`` says when
    an origin was last heard from here (``None``: never, or forgotten); ``lease_seconds`` bounds
    how long anything waits for a silent origin.
    """

    def __init__(self, me: str, apply: Apply, last_heard: Callable[[str], float | None],
                 lease_seconds: float, counters: dict, max_waiting: int = MAX_WAITING) -> None:
        self.me = me
        self._apply = apply
        self._last_heard = last_heard
        self._lease_seconds = lease_seconds
        self._counters = counters
        self._max_waiting = max_waiting
        # per client: the highest ``seq`` it sent us so far, least recently heard first (at
        # most MAX_ORIGINS: a client forgotten here is waited for until its next message)
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._lost: OrderedDict[str, None] = OrderedDict()  # last message unreadable here
        self._waiting: dict[str, deque[_Waiting]] = {}  # per peer, in arrival order
        counters.setdefault("order_waited", 0)
        counters.setdefault("order_gave_up", 0)
        self.moves = MoveArrivals(self._apply_client, lease_seconds, counters, max_waiting)

    def admit(self, sender: str, identity: bytes, msg: dict) -> None:
        """Handle ``msg`` from ``sender`` now, or once what it must follow has come."""
        if type(msg.get(SEQ)) is int:  # a client's own message: it may release others
            moves = self.moves
            if MOVES_ABANDONED in msg and moves.note_abandoned(msg) and moves:
                moves.release(time.monotonic())
            if (moves or MOVES_FIRST in msg) and moves.must_hold(sender, msg):
                moves.hold(sender, identity, msg, time.monotonic())
                return
            self._apply_client(sender, identity, msg)
            return
        queue = self._waiting.get(sender)
        if queue is None:
            if self._unmet(sender, msg, known_only=True) is None:
                self._apply_peer(sender, identity, msg)
                return
            queue = self._waiting[sender] = deque()
        self._counters["order_waited"] += 1
        queue.append(_Waiting(identity, msg, time.monotonic()))
        if len(queue) > self._max_waiting:
            self._give_up(sender, queue.popleft(), f"more than {self._max_waiting} messages "
                                                   f"from {sender} waiting")
            self._release(time.monotonic())

    def _apply_client(self, sender: str, identity: bytes, msg: dict) -> None:
        """A client's own message runs: how far that client got here is known from now on."""
        seq = msg[SEQ]
        seen = self._seen
        if seq > seen.get(sender, 0):
            seen[sender] = seq
        seen.move_to_end(sender)
        if len(seen) > MAX_ORIGINS:
            seen.popitem(last=False)
        if self._lost:
            self._lost.pop(sender, None)
        self._apply(sender, identity, msg)
        if self._waiting:
            self._release(time.monotonic())

    def _apply_peer(self, sender: str, identity: bytes, msg: dict) -> None:
        """A peer's message runs; a move's objects it brought release what waits for them."""
        self._apply(sender, identity, msg)
        if self.moves.note_peer_message(msg) and self.moves:
            self.moves.release(time.monotonic())

    def lost(self, sender: str) -> None:
        """A message from ``sender`` could not be read: what waits for it runs now, and
        nothing waits for ``sender`` until its next message is read."""
        self._lost[sender] = None
        if len(self._lost) > MAX_ORIGINS:
            self._lost.popitem(last=False)
        if self._waiting:
            self._release(time.monotonic())

    def expire(self, now: float | None = None) -> None:
        """Run what waits for an origin that went silent, or for a move longer than a lease
        (see the modules' rules)."""
        now = time.monotonic() if now is None else now
        if self._waiting:
            self._release(now)
        if self.moves:
            self.moves.release(now)

    def next_due(self) -> float | None:
        """When :meth:`expire` may next have something to run (the loop wakes for it)."""
        due = [when for when in (self.moves.next_due(),) if when is not None]
        if self._waiting:
            due.append(min(queue[0].since for queue in self._waiting.values())
                       + self._lease_seconds)
        return min(due) if due else None

    def waiting(self) -> int:
        return sum(len(queue) for queue in self._waiting.values()) + self.moves.waiting()

    def __bool__(self) -> bool:
        """Whether anything waits (the loop looks at :meth:`expire` only then)."""
        return bool(self._waiting) or bool(self.moves)

    # ------------------------------------------------------------------ internals
    def _release(self, now: float) -> None:
        """Run, per peer and in order, every waiting message whose requirement is met (or
        whose origin went silent), up to the first that must still wait."""
        for sender in list(self._waiting):
            queue = self._waiting.get(sender)  # (a message run meanwhile may have run the rest)
            while queue:
                head = queue[0]
                unmet = self._unmet(sender, head.msg)
                if unmet is not None:
                    origin, _ = unmet
                    heard = self._last_heard(origin)
                    if now - max(head.since, heard or head.since) <= self._lease_seconds:
                        break
                    queue.popleft()
                    self._give_up(sender, head, f"origin {origin} silent for a lease")
                    continue
                queue.popleft()
                self._apply_peer(sender, head.identity, head.msg)
            if not queue:
                self._waiting.pop(sender, None)

    def _give_up(self, sender: str, waiting: _Waiting, why: str) -> None:
        self._counters["order_gave_up"] += 1
        log.warning("running a message from %s before what it follows: %s", sender, why)
        self._apply_peer(sender, waiting.identity, waiting.msg)

    def _unmet(self, sender: str, msg: dict, known_only: bool = False) -> tuple[str, int] | None:
        """The first (origin, seq) that ``msg`` or a message it carries must follow and that
        has not come yet (``known_only``: from an origin this worker has heard from)."""
        found = self._requirement(sender, msg, known_only)
        if found is not None:
            return found
        queued = msg.get(BEFORE)
        if type(queued) is list:
            for inner in queued:
                if type(inner) is dict:
                    found = self._requirement(sender, inner, known_only)
                    if found is not None:
                        return found
        return None

    def _requirement(self, sender: str, msg: dict, known_only: bool) -> tuple[str, int] | None:
        after = msg.get(AFTER)
        if type(after) is not dict:
            return None
        needed = after.get(self.me)
        origin = msg.get("origin")
        if type(needed) is not int or type(origin) is not str or origin == sender:
            return None  # only forwarded work waits: a client's own order is its connection's
        if needed <= self._seen.get(origin, 0) or origin in self._lost or \
                (known_only and self._last_heard(origin) is None):
            return None
        return origin, needed
