"""A client's messages that use a move's objects wait here for the move itself, not the client.

A move's source answers the client only once this worker (the destination) has stored the
objects. A client that waited for that answer before its next message here (an average of two
moved models, a ``get``) paid three hops after the source was done: the source's ``MOVE_IN``
here, this worker's confirmation back, the source's answer to the client; then its own message
here. So the client sends at once, naming the moves still in flight at its side
(``moves_first``), and this worker holds that message, and every later one of the same client
behind it (one connection keeps order), until each named move's ``MOVE_IN`` was applied here.

It never waits for what cannot come:

* a move whose ``MOVE_IN`` came (stored or refused: either way the source answers its client,
  and what waited runs as it would have then) is remembered, the last :data:`ARRIVALS_KEPT`,
  until its source takes it back (the source gave up waiting for this worker's confirmation:
  the client starts it again, to the same ids, with a ``MOVE_IN`` that ``replaces`` it, or
  abandons it);
* a move the client names in ``moves_abandoned`` (its source answered an error, or died) is
  treated as arrived: what waited for it runs now (and meets missing objects, whose errors
  surface at the client's next observation, after the move's own failure);
* nothing waits longer than ``lease_seconds`` since it began to wait, nor more than
  :data:`~syftzmq.worker.arrival_order.MAX_WAITING` messages per client (then the oldest runs,
  counted as ``order_gave_up``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Callable

from ..core.messages import BEFORE, DEL, MOVE_IN, MOVES_ABANDONED, MOVES_FIRST

log = logging.getLogger("syftzmq.worker")

ARRIVALS_KEPT = 16384  # move ids whose MOVE_IN was applied here, newest kept

Apply = Callable[[str, bytes, dict], None]


@dataclass
class _Held:
    identity: bytes
    msg: dict
    since: float


def _move_ids(value: Any) -> list:
    """The move ids a field names (a malformed field names none: it stalls nothing)."""
    if type(value) is not list:
        return []
    return [move_id for move_id in value if type(move_id) is int]


class MoveArrivals:
    """Which moves reached this worker, and the client messages held until they do.

    ``apply(sender, identity, msg)`` runs a client's message as the loop would (used for the
    held ones once they may run)."""

    def __init__(self, apply: Apply, lease_seconds: float, counters: dict,
                 max_waiting: int) -> None:
        self._apply = apply
        self._lease_seconds = lease_seconds
        self._counters = counters
        self._max_waiting = max_waiting
        self._arrived: OrderedDict[int, None] = OrderedDict()
        self._held: dict[str, deque[_Held]] = {}
        counters.setdefault("moves_waited", 0)

    def __bool__(self) -> bool:
        return bool(self._held)

    # ------------------------------------------------------------------ arrivals
    def note_peer_message(self, msg: dict) -> bool:
        """A peer's message was applied: the moves whose ``MOVE_IN`` it was (or carried)
        arrived; those whose source took them back (the ``DEL`` of a move that failed,
        ``retracts``) did not. Whether any arrived."""
        found = self._note(msg)
        queued = msg.get(BEFORE)
        if type(queued) is list:
            for inner in queued:
                if type(inner) is dict:
                    found = self._note(inner) or found
        return found

    def _note(self, msg: dict) -> bool:
        kind = msg.get("kind")
        if kind == MOVE_IN:
            # a move started again stands for the one it replaces (the client sends it with
            # the same ids here: what waits for the first may use its objects)
            found = self._arrive(msg.get("move_id"))
            for move_id in _move_ids(msg.get("replaces")):
                found = self._arrive(move_id) or found
            return found
        if kind == DEL and "retracts" in msg:
            # the source gave up on it (this worker was silent): the client may start it again
            # with the same ids, and what it sends here from now on waits for that
            retracted = msg["retracts"]
            if type(retracted) is int:
                self._arrived.pop(retracted, None)
        return False

    def note_abandoned(self, msg: dict) -> bool:
        """A client's message names moves that failed: they count as arrived."""
        found = False
        for move_id in _move_ids(msg.get(MOVES_ABANDONED)):
            found = self._arrive(move_id) or found
        return found

    def _arrive(self, move_id: Any) -> bool:
        if type(move_id) is not int:
            return False
        self._arrived[move_id] = None
        if len(self._arrived) > ARRIVALS_KEPT:
            self._arrived.popitem(last=False)
        return True

    # ------------------------------------------------------------------ holding
    def must_hold(self, sender: str, msg: dict) -> bool:
        """Whether the client's ``msg`` waits: it (or what it carries) names a move not
        arrived yet, or an earlier message of ``sender`` waits already."""
        return sender in self._held or self._unarrived(msg)

    def hold(self, sender: str, identity: bytes, msg: dict, now: float) -> None:
        queue = self._held.setdefault(sender, deque())
        queue.append(_Held(identity, msg, now))
        self._counters["moves_waited"] += 1
        if len(queue) > self._max_waiting:
            self._give_up(sender, queue.popleft(), f"more than {self._max_waiting} messages "
                                                   f"waiting for moves")
            self.release(now)

    def release(self, now: float) -> None:
        """Run, per client and in order, the held messages whose moves arrived (or that
        waited a lease), up to the first that must still wait."""
        for sender in list(self._held):
            queue = self._held.get(sender)  # (a message run meanwhile may have run the rest)
            while queue:
                head = queue[0]
                if self._unarrived(head.msg):
                    if now - head.since <= self._lease_seconds:
                        break
                    queue.popleft()
                    self._give_up(sender, head, "a move it uses did not arrive within a lease")
                    continue
                queue.popleft()
                self._apply(sender, head.identity, head.msg)
            if not queue and queue is not None:
                self._held.pop(sender, None)

    def next_due(self) -> float | None:
        if not self._held:
            return None
        return min(queue[0].since for queue in self._held.values()) + self._lease_seconds

    def waiting(self) -> int:
        return sum(len(queue) for queue in self._held.values())

    def _unarrived(self, msg: dict) -> bool:
        """Whether ``msg`` names a move not arrived yet (the client names, on the message
        itself, every move what it carries uses)."""
        if MOVES_FIRST not in msg:
            return False
        arrived = self._arrived
        return any(move_id not in arrived for move_id in _move_ids(msg[MOVES_FIRST]))

    def _give_up(self, sender: str, held: _Held, why: str) -> None:
        self._counters["order_gave_up"] += 1
        log.warning("running a message from %s before the move it uses: %s", sender, why)
        self._apply(sender, held.identity, held.msg)
