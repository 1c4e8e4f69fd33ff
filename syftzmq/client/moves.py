"""Moves in flight: a move returns at once, and its reply is awaited when something depends on it.

``ptr.move(w)`` sends ``MOVE`` to the source and returns; the pointer names its new place at
once. The source answers only once the destination has the objects, and a round trip spent
waiting for that in ``move`` itself serialised every move of a FedAvg round. So the reply stays
outstanding here, as a :class:`MoveInFlight`, and the session awaits it (with its usual bound
and liveness rules, the bound counted from when the wait starts) before anything that could
depend on the move:

- any message to the source (deletes to either end are held back until then), and any message
  to a chain holder (it may forward to either);
- any use of a moved pointer (:meth:`Following.settle`, from the pointer's ``_check_usable``),
  and any message to the destination, only while this client holds chains;
- at the latest, the next observation of anything (``get``, ``ping``, ``_objects``...).

Otherwise a message to the destination is not held back here: it names the moves in flight to
it (``moves_first``) and the destination holds it until their objects came from the sources
(:mod:`syftzmq.worker.move_arrivals`); an observation of the destination is sent at once the
same way, and its answer awaited in one wait with the moves' replies. The observation returns
only once every move is settled, so a failed move still raises there (its answer is dropped:
a get it made stays retrievable, :mod:`syftzmq.worker.deliveries`), and the destination is
told the move was abandoned, so nothing waits there for it.

One source has at most one move in flight (a second message to it awaits the first), so its
reply is the only one its socket can carry; moves from different sources are awaited in one
multiplexed wait, so two models moved to one aggregator cost one wait, not two in series.

What a move ends as (:meth:`MoveInFlight.outcome`): *done* (the pointers already name the new
place), or *failed* (the source answered an error, or the wait gave up: the pointers go back to
the source and are in doubt, :class:`~syftzmq.client.deliveries.MoveDoubt`, exactly as a move
that raised used to leave them). A failure is surfaced once, at the first of: the next use of
one of its pointers, the next observation of anything. Nothing is silent: a failure nobody
has seen is kept until then. A move that failed only because the source found the destination
unavailable is started again if the destination answers a liveness probe at that point (it was
frozen, not dead: slowness is not death); the source kept the data, so nothing is lost.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from ..core.refs import WorkerRef
from .deliveries import MoveDoubt
from .round_trip import Awaiting

FLYING, DONE, FAILED = "flying", "done", "failed"


@dataclass(eq=False)
class MoveInFlight:
    """One move whose reply has not been awaited yet (or whose failure nobody has seen)."""

    move_id: int
    source: WorkerRef
    dest: WorkerRef
    source_ids: list[int]
    dest_ids: list[int]
    awaiting: Awaiting
    pointers: list[Any]  # weak references to the pointers that follow, aligned with the ids
    retried: bool = False  # started again once already (see the module docstring)
    # messages using its objects went to the destination, held there until they arrive
    # (:mod:`syftzmq.worker.move_arrivals`): if it fails, the destination is told
    tagged: bool = False
    replaces: tuple[int, ...] = ()  # the moves this one started again for (their messages wait)
    state: str = FLYING
    error: BaseException | None = None  # a failure not surfaced yet
    _surfaced: bool = field(default=False, repr=False)

    @classmethod
    def of(cls, move_id: int, source: WorkerRef, dest: WorkerRef, source_ids: list[int],
           dest_ids: list[int], awaiting: Awaiting, pointers: list[Any] | None,
           retried: bool = False, replaces: tuple[int, ...] = ()) -> "MoveInFlight":
        refs = [weakref.ref(pointer) for pointer in pointers or ()]
        return cls(move_id, source, dest, list(source_ids), list(dest_ids), awaiting, refs,
                   retried, tagged=bool(replaces), replaces=replaces)

    def involves(self, incarnation: str) -> bool:
        return incarnation in (self.source.incarnation, self.dest.incarnation)

    def live_pointers(self) -> list[tuple[int, Any]]:
        """(index, pointer) of the pointers still alive and still following this move."""
        found = []
        for index, ref in enumerate(self.pointers):
            pointer = ref()
            if pointer is not None and isinstance(pointer._move_doubt, Following) \
                    and pointer._move_doubt.move is self:
                found.append((index, pointer))
        return found

    def doubt(self, index: int) -> MoveDoubt:
        return MoveDoubt(self.move_id, self.source, self.source_ids[index], self.dest,
                         self.dest_ids[index])

    def take_error(self) -> BaseException | None:
        """The failure to raise now, once: ``None`` if there is none or it was raised."""
        if self.state != FAILED or self._surfaced:
            return None
        self._surfaced = True
        error, self.error = self.error, None
        return error


@dataclass(frozen=True)
class Following:
    """What a moved pointer holds (as ``_move_doubt``) while its move is in flight, and after
    a failure until its next use raised it."""

    move: MoveInFlight
    index: int

    def settle(self, session: Any, pointer: Any) -> None:
        """The pointer is used: await its move; a failure is raised here (once), and the
        pointer, back at the source, is in doubt as any failed move leaves it."""
        if self.move.state == FLYING:
            if session.defers_move(self.move):
                return  # the destination waits for it instead (see the module docstring)
            session.await_move(self.move)
        current = pointer._move_doubt
        if current is not self:  # settled meanwhile: done (None), or started again
            if current is not None:
                current.settle(session, pointer)
            return
        if self.move.state == DONE:
            object.__setattr__(pointer, "_move_doubt", None)
            return
        doubt = self.move.doubt(self.index)
        object.__setattr__(pointer, "_move_doubt", doubt)
        error = session.take_move_error(self.move)
        if error is not None:
            raise error
        doubt.settle(session, pointer)

    def release(self, session: Any) -> None:
        """The pointer died before anyone awaited its move: delete at both places (deletes are
        idempotent, and the session holds them back until the move is settled)."""
        self.move.doubt(self.index).release(session)


class MovesInFlight:
    """The session's moves in flight and its failed moves nobody has seen yet (used under the
    session lock)."""

    def __init__(self) -> None:
        self.flying: list[MoveInFlight] = []
        self.unseen: list[MoveInFlight] = []  # failed, the failure not surfaced yet

    def __bool__(self) -> bool:
        return bool(self.flying)

    def add(self, move: MoveInFlight) -> None:
        self.flying.append(move)

    def involving(self, incarnations: set[str], chain_holders: set[str]) -> list[MoveInFlight]:
        """The moves a message to ``incarnations`` must await: those whose source or
        destination it reaches (a chain holder may forward to anyone: every move)."""
        if incarnations & chain_holders:
            return list(self.flying)
        return [move for move in self.flying
                if move.source.incarnation in incarnations or move.dest.incarnation in incarnations]

    def from_source(self, incarnation: str) -> list[MoveInFlight]:
        """The moves in flight out of the worker ``incarnation``."""
        return [move for move in self.flying if move.source.incarnation == incarnation]

    def into(self, incarnation: str) -> list[MoveInFlight]:
        """The moves in flight to the worker ``incarnation``."""
        return [move for move in self.flying if move.dest.incarnation == incarnation]

    def incarnations(self) -> set[str]:
        """Every worker a move in flight involves (deletes to them wait)."""
        return {incarnation for move in self.flying
                for incarnation in (move.source.incarnation, move.dest.incarnation)}

    def ended(self, move: MoveInFlight) -> None:
        """``move`` is settled (its ``state`` says how)."""
        if move in self.flying:
            self.flying.remove(move)
        if move.state == FAILED and move.error is not None:
            self.unseen.append(move)

    def take_unseen_error(self) -> BaseException | None:
        """A failure no use or observation has raised yet, to raise now (once)."""
        while self.unseen:
            error = self.unseen.pop(0).take_error()
            if error is not None:
                return error
        return None
