"""The client's half of "a call that gives up changes nothing" (the worker's half is
:mod:`syftzmq.worker.deliveries`).

- :class:`Confirmations`: a worker keeps what a ``GET`` took until this client confirms it
  has it. The ids of received gets wait here and ride on the next message to that worker
  (``confirm``), like deletes ride as ``release``: no message of its own. Until then the
  worker holds its copy, so an idle client leaves the last thing it fetched from each worker
  held there until it next talks to that worker (or exits: :meth:`Confirmations.take_all`
  turns what is left into deletes at close). A get of more than 64 MiB is confirmed at once,
  by a message of its own (``ClientSession._confirm_now``): freeing that copy's mapping
  takes the worker tens of ms, better spent now than in the next request's answer.
- :class:`MoveDoubt`: a move whose wait raised (a bound ran out, Ctrl-C, a worker lost) may
  or may not have happened. Its pointer is marked *in doubt* and, at its next use, asks the
  source for the move's outcome (:meth:`MoveDoubt.settle`): done, the pointer follows the
  data; failed, or never seen (the source then refuses the move if it arrives later), it
  stays. Every failed move is put in doubt, even one the source answered with an error: that
  costs one small round trip at the next use of the pointer, after a failure only, and keeps
  the rule free of guesses about which errors came after the move started.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..core.messages import (BATCH, DEL, FLUSH, GET, INFO, MOVE, MOVE_OUTCOME, OBJECTS, PING,
                             SHUTDOWN)
from ..core.refs import WorkerRef

# Messages a confirmation may ride on: those syftzmq builds from plain values only. A worker
# that cannot unpickle a message (a safe worker refusing code, a class it cannot import) loses
# everything riding on it, so confirmations never ride on a command or store that may carry
# user objects; they wait for the next observation or batch (at most the outbox's linger).
CONFIRM_CARRIERS = frozenset({BATCH, DEL, FLUSH, GET, INFO, MOVE, MOVE_OUTCOME, OBJECTS, PING,
                              SHUTDOWN})


class Confirmations:
    """Ids of fetched objects to confirm, per worker incarnation (used under the session lock)."""

    def __init__(self, recycle: Callable[[Iterable[Any]], None] = lambda copies: None) -> None:
        """``recycle`` is handed the copies (see :meth:`keep_copy`) nobody needs any more."""
        self._waiting: dict[str, tuple[WorkerRef, list[int]]] = {}
        # copies of fetched parameters, kept while the worker holds its own: until their
        # confirmation leaves (see :mod:`syftzmq.tensor.unchanged`)
        self._copies: dict[str, dict[int, Any]] = {}
        self._recycle = recycle

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def add(self, location: WorkerRef, object_ids: Iterable[int]) -> None:
        ids = list(object_ids)
        if ids:
            self._waiting.setdefault(location.incarnation, (location, []))[1].extend(ids)

    def take(self, incarnation: str) -> list[int]:
        """What to confirm with the next message to ``incarnation`` (removed from here)."""
        entry = self._waiting.pop(incarnation, None)
        if self._copies:
            self._recycle(self._copies.pop(incarnation, {}).values())  # the worker drops its own
        return entry[1] if entry is not None else []

    def keep_copy(self, incarnation: str, object_id: int, copy: Any) -> None:
        """Keep ``copy`` of what was fetched under ``object_id`` while its confirmation waits
        here (the worker holds the original until then)."""
        entry = self._waiting.get(incarnation)
        if entry is not None and object_id in entry[1]:
            self._copies.setdefault(incarnation, {})[object_id] = copy

    def copy_of(self, incarnation: str, object_id: int) -> Any:
        """The copy kept for ``object_id``, or None (none was kept, or it was confirmed)."""
        return self._copies.get(incarnation, {}).get(object_id)

    def withdraw(self, incarnation: str, object_id: int) -> None:
        """``object_id`` will not be confirmed: a store of the worker's held copy consumes it."""
        copies = self._copies.get(incarnation)
        if copies is not None and object_id in copies:
            self._recycle([copies.pop(object_id)])
        entry = self._waiting.get(incarnation)
        if entry is not None and object_id in entry[1]:
            entry[1].remove(object_id)
            if not entry[1]:
                del self._waiting[incarnation]

    def put_back(self, location: WorkerRef, object_ids: Iterable[int]) -> None:
        """Confirmations whose message did not leave: they go with a later one."""
        self.add(location, object_ids)

    def discard(self, incarnation: str) -> None:
        """The worker is gone: nothing to confirm there."""
        self._waiting.pop(incarnation, None)
        self._copies.pop(incarnation, None)

    def take_all(self) -> list[tuple[WorkerRef, list[int]]]:
        """Everything still to confirm (at close, sent as deletes)."""
        waiting, self._waiting = self._waiting, {}
        self._copies = {}
        return list(waiting.values())


@dataclass(frozen=True)
class MoveDoubt:
    """A move of one pointer's target whose outcome this client does not know."""

    move_id: int
    source: WorkerRef
    source_id: int
    dest: WorkerRef
    dest_id: int

    def settle(self, session: Any, pointer: Any) -> None:
        """Ask the source what became of the move and make ``pointer`` match: it follows the
        data (``done``) or stays (``failed``, ``cancelled``). Raises, leaving the doubt in
        place, if the source cannot be asked now."""
        outcome = session.move_outcome(self.source, self.move_id)
        object.__setattr__(pointer, "_move_doubt", None)
        if outcome.get("state") == "done":
            session.moved_after_doubt(self)
            pointer._moved_to(self.dest, self.dest_id)

    def release(self, session: Any) -> None:
        """The pointer died in doubt: delete at both places (deletes are idempotent; at the
        source a delete that arrives while the move is under way also removes the copy the
        move made)."""
        session.release(self.source, self.source_id)
        session.release(self.dest, self.dest_id)
