"""What a worker handed out but its requester may not have received: a call that gives up
changes nothing.

A client may stop waiting for an answer (its own bound ran out, the user pressed Ctrl-C, the
worker was frozen for a while) after the worker already acted on the request. Two requests
change the store, and for them that would lose or strand data:

- ``GET`` takes objects out of the store. If the reply never reaches the user, a retry would
  find nothing. So what a ``GET`` took is kept here, *unconfirmed*, under its requester until
  the requester says it has it: the client's next message to this worker carries their ids in
  ``confirm`` (it rides like ``release``, so a confirmation costs no message of its own). A
  retried ``GET`` of the same ids, from the same requester, is answered from here; a delete
  of the id from its requester (its pointer died) drops it; and unconfirmed objects count as
  the requester's for its lease, so a client that died is not waited for forever. They are
  listed in the store snapshot (``_objects``): until the client has them, they are where they
  were.
- ``MOVE`` stores objects on another worker and deletes them here. A client that gave up
  cannot know whether that happened; it asks (``MOVE_OUTCOME``) with the move's id, and
  :class:`MoveLog` answers ``done`` (the pointer follows the data), ``failed`` (the data stayed
  here), or, for a move it never saw, ``cancelled`` — and then refuses that move if its
  message arrives after all. An outcome not known yet (the destination has not confirmed) is
  answered once it is.

Held ``ChainRef`` records were already handed over to the requester (their next hop was told
with a ``FORK``), so dropping one here never cascades a delete down the chain.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Iterator
PENDING, DONE, FAILED, CANCELLED = "pending", "done", "failed", "cancelled"
MOVE_LOG_LIMIT = 4096  # move outcomes kept (oldest finished ones go first)
_NONE = object()


class Unconfirmed:
    """Objects a ``GET`` took, by (requester, object id), until the requester confirms."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, int], Any] = {}

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, requester: str, object_id: int, obj: Any) -> None:
        self._held[(requester, object_id)] = obj

    def find(self, requester: str, object_id: int, default: Any = None) -> Any:
        """What ``requester`` already fetched under ``object_id`` and has not confirmed."""
        return self._held.get((requester, object_id), default)

    def confirm(self, requester: str, object_ids: Any) -> int:
        """``requester`` has these objects (or no longer wants them): drop them; how many."""
        return len(self.take(requester, object_ids))

    def take(self, requester: str, object_ids: Any) -> list[Any]:
        """Like :meth:`confirm`, but the dropped objects are returned: the caller chooses
        where their last reference goes (see :func:`syftzmq.wire.shm_map.deferred_unmaps`)."""
        taken = []
        for object_id in object_ids or ():
            if type(object_id) is int:
                obj = self._held.pop((requester, object_id), _NONE)
                if obj is not _NONE:
                    taken.append(obj)
        return taken

    def requesters(self) -> set[str]:
        """Everyone something waits here for (they count as owners for leases)."""
        return {requester for requester, _ in self._held}

    def drop_requester(self, requester: str) -> int:
        """``requester``'s lease expired: nobody will confirm; how many objects were dropped."""
        keys = [key for key in self._held if key[0] == requester]
        for key in keys:
            del self._held[key]
        return len(keys)

    def items(self) -> Iterator[tuple[int, Any]]:
        """(object id, object) of everything held, for the store snapshot."""
        return iter([(object_id, obj) for (_, object_id), obj in self._held.items()])

    def values(self) -> list[Any]:
        return list(self._held.values())


class MoveLog:
    """The outcome of each move by its client-chosen id, bounded.

    ``begin`` when a ``MOVE`` arrives (refused if the move was cancelled), ``finish`` when its
    reply goes out; ``ask`` answers an outcome question now, or once the move finishes.
    """

    def __init__(self, limit: int = MOVE_LOG_LIMIT) -> None:
        self._states: OrderedDict[int, str] = OrderedDict()
        self._new_ids: dict[int, list[int]] = {}
        self._askers: dict[int, list[Callable[[dict], None]]] = {}
        self._limit = limit

    def __len__(self) -> int:
        return len(self._states)

    def state(self, move_id: int) -> str | None:
        return self._states.get(move_id)

    def begin(self, move_id: int) -> bool:
        """A ``MOVE`` arrived; False if it must be refused (its client cancelled it, or the
        same id was used before)."""
        if move_id in self._states:
            return False
        self._set(move_id, PENDING)
        return True

    def finish(self, move_id: int, new_ids: list[int] | None) -> None:
        """The move's reply went out: ``new_ids`` if it succeeded, else ``None``."""
        if self._states.get(move_id) != PENDING:
            return
        self._set(move_id, DONE if new_ids is not None else FAILED)
        if new_ids is not None:
            self._new_ids[move_id] = list(new_ids)
        for answer in self._askers.pop(move_id, []):
            answer(self.outcome(move_id))

    def ask(self, move_id: int, answer: Callable[[dict], None]) -> None:
        """Answer ``{"state": ..., "new_ids": ...}``; a move never seen is cancelled first."""
        state = self._states.get(move_id)
        if state is None:
            self._set(move_id, CANCELLED)
        elif state == PENDING:
            self._askers.setdefault(move_id, []).append(answer)
            return
        answer(self.outcome(move_id))

    def outcome(self, move_id: int) -> dict:
        return {"state": self._states.get(move_id, CANCELLED),
                "new_ids": self._new_ids.get(move_id)}

    def _set(self, move_id: int, state: str) -> None:
        self._states[move_id] = state
        self._states.move_to_end(move_id)
        while len(self._states) > self._limit:
            oldest = next((m for m, s in self._states.items() if s != PENDING), None)
            if oldest is None:
                break
            del self._states[oldest]
            self._new_ids.pop(oldest, None)

