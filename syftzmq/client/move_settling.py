"""How a move in flight ends: awaiting its reply, and deciding *done*, *failed* or *started again*.

:mod:`~syftzmq.client.moves` says what a move in flight is and when one must be awaited; the
session starts moves. This module holds the one policy in between, apart from the session so
that it can be read, and reasoned about, on its own: it is given exactly what ending a move
touches (the table of moves, the round trips that carry the replies, the heartbeat that keeps
the leases alive during the wait, the liveness probes that tell a frozen destination from a
dead one, and the chain holders whose records follow the moved objects) and nothing else.

The rules, in one place:

- Replies of several moves are awaited in one multiplexed wait; a source that died does not end
  the wait for the other sources.
- A failure is never raised by the wait: it is kept on the move for its pointers' next use or
  the next observation (:meth:`MoveSettler.before_observation` raises it there). Only an
  interruption (Ctrl-C) is raised, once every move it left unsettled is in doubt.
- A move the source reported as failed because the destination seemed dead is started once
  more if the destination answers a liveness probe within the rule's grace (slowness is not
  death; the source kept the data). If messages that use it went to the destination already
  (``tagged``, see :mod:`syftzmq.worker.move_arrivals`), it is started again to the same ids
  there, and ``replaces`` it: what waits for the first waits for the new one.
- A failed move whose destination holds messages for it is named to the destination as
  abandoned (``abandon``): what waited there runs, and meets the missing objects.

Every method is called under the session lock.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from ..core.ids import new_id
from ..core.refs import WorkerRef
from ..errors import WorkerUnavailable
from ..wire.liveness import timing
from .chains import ChainHolders
from .heartbeat import Heartbeat
from .liveness import ClientLiveness
from .moves import DONE, FAILED, MoveInFlight, MovesInFlight
from .round_trip import Awaiting, RoundTrips


class StartsMove(Protocol):
    """How a move is started (the session's): sends ``MOVE``, returns the move in flight."""

    def __call__(self, location: WorkerRef, object_ids: list[int], dest: WorkerRef,
                 new_object_ids: list[int], pointers: list[Any] | None,
                 retried: bool = False, replaces: tuple[int, ...] = ()) -> MoveInFlight: ...


class MoveSettler:
    """Awaits moves in flight and ends each one as done or failed (or starts it again)."""

    def __init__(self, moves: MovesInFlight, round_trips: RoundTrips, heartbeat: Heartbeat,
                 liveness: ClientLiveness, chains: ChainHolders, start_move: StartsMove,
                 abandon: Callable[[MoveInFlight], None] = lambda move: None) -> None:
        self._abandon = abandon
        self._moves = moves
        self._round_trips = round_trips
        self._heartbeat = heartbeat
        self._liveness = liveness
        self._chains = chains
        self._start_move = start_move

    # ------------------------------------------------------------------ when to await
    def await_move(self, move: MoveInFlight, timeout: float | None) -> None:
        """A pointer following ``move`` is used: await it (and the other moves to its
        destination, which the use will need next)."""
        if move.state not in (DONE, FAILED):
            self.settle(self._moves.involving({move.dest.incarnation}, set()) or [move], timeout)

    def before_message_to(self, location: WorkerRef, timeout: float | None,
                          also: set[str] = frozenset()) -> None:
        """Before a message to ``location`` (and ``also``): await the moves it could depend on."""
        moves = self._moves.involving({location.incarnation} | also, self._chains.incarnations()
                                      if self._chains else set())
        if moves:
            self.settle(moves, timeout)

    def before_observation(self, timeout: float | None) -> None:
        """An observation: every move in flight is awaited, and a failure nobody has seen is
        raised now (the observation is not made: retrying it is safe)."""
        if self._moves:
            self.settle(list(self._moves.flying), timeout)
        if self._moves.unseen:
            error = self._moves.take_unseen_error()
            if error is not None:
                raise error

    def source_gone(self, incarnation: str) -> None:
        """The worker ``incarnation`` is gone: its moves in flight failed (their pointers' next
        use raises)."""
        for move in self._moves.from_source(incarnation):
            self._failed(move, None)

    # ------------------------------------------------------------------ the wait
    def settle(self, moves: list[MoveInFlight], timeout: float | None) -> None:
        """Await the replies of ``moves`` in one wait; each ends done or failed (a failure is
        kept for its pointers' next use or the next observation, never raised here). Only an
        interruption (Ctrl-C) is raised, once every move it left unsettled is in doubt."""
        pending = [move for move in moves if move in self._moves.flying]
        while pending:
            pending = self._round(pending, timeout)

    def _round(self, pending: list[MoveInFlight], timeout: float | None) -> list[MoveInFlight]:
        """One wait for ``pending``'s replies; the moves still to await (a source that died
        does not end the wait for the others; a move started again is awaited too)."""
        awaiting = Awaiting()
        for move in pending:
            awaiting.adopt(move.awaiting)
        refs = {move.source.incarnation: move.source for move in pending}
        stopped: BaseException | None = None
        try:
            self._heartbeat.ensure_running()
            replies = self._round_trips.wait(awaiting, refs, timeout)
        except BaseException as exc:  # the wait gave up: those not answered are in doubt
            replies, stopped = awaiting.replies, exc
        unanswered = [move for move in pending if move.source.incarnation not in replies]
        one_died = isinstance(stopped, WorkerUnavailable) and any(
            move.source.id == stopped.worker for move in unanswered)
        again, retry = [], []
        for move in pending:
            answer = replies.get(move.source.incarnation)
            if answer is None:
                if one_died and move.source.id != stopped.worker:
                    again.append(move)  # another source died: this one is still alive
                else:
                    self._failed(move, stopped if isinstance(stopped, Exception) else None)
            elif answer.get("error") is None:
                self._done(move)
            else:
                retry.append((move, answer["error"].to_exception()))
        if stopped is not None and not isinstance(stopped, Exception):
            for move, error in retry:
                self._failed(move, error)
            raise stopped  # Ctrl-C: the moves it left are in doubt (see settle)
        for index, (move, error) in enumerate(retry):
            try:
                worth = self._worth_retrying(move, error)
            except BaseException:  # its reply is taken: it must end here, as the rest
                for later, later_error in retry[index:]:
                    self._failed(later, later_error)
                raise
            if worth:
                again.extend(self._started_again(move, error))
            else:
                self._failed(move, error)
        return again

    # ------------------------------------------------------------------ how a move ends
    def _done(self, move: MoveInFlight) -> None:
        move.state = DONE
        self._moves.ended(move)
        for _, pointer in move.live_pointers():
            object.__setattr__(pointer, "_move_doubt", None)

    def _failed(self, move: MoveInFlight, error: BaseException | None,
                abandon: bool = True) -> None:
        """The move failed or its wait gave up: the pointers go back to the source, in doubt
        (at their next use they ask the source what became of it); what the destination
        holds for it runs (unless ``abandon`` is false: it is started again)."""
        move.state, move.error = FAILED, error
        self._moves.ended(move)
        if move.tagged and abandon:
            self._abandon(move)
        self._chains.moved(move.dest.incarnation, move.dest_ids, move.source.incarnation,
                           move.source_ids)
        for index, pointer in move.live_pointers():
            pointer._moved_to(move.source, move.source_ids[index])

    def _worth_retrying(self, move: MoveInFlight, error: BaseException) -> bool:
        """The source found the destination unavailable (silent for a liveness deadline), and
        the destination answers now: it was frozen, not dead (slowness is not death). Asked
        once per move; the destination has the rule's grace (two probe intervals) to answer."""
        if move.retried or not isinstance(error, WorkerUnavailable) \
                or error.worker != move.dest.id or not move.live_pointers():
            return False
        _, grace = timing(self._liveness.timeout, self._liveness.interval)
        try:
            return self._liveness.check_alive(move.dest, within=grace)
        except WorkerUnavailable:
            return False

    def _started_again(self, move: MoveInFlight, error: BaseException) -> list[MoveInFlight]:
        """Start ``move`` again for its pointers still alive (the source kept the data, and
        took back what reached the destination); the others' deletes are queued already."""
        live = move.live_pointers()
        self._failed(move, None, abandon=False)
        ids = [move.source_ids[index] for index, _ in live]
        pointers = [pointer for _, pointer in live]
        if move.tagged:  # messages at the destination name these ids (the source deleted them)
            new_ids = [move.dest_ids[index] for index, _ in live]
            replaces = (move.move_id, *move.replaces)
        else:
            new_ids, replaces = [new_id() for _ in ids], ()
        try:
            flying = self._start_move(move.source, ids, move.dest, new_ids, pointers, retried=True,
                                      replaces=replaces)
        except Exception:
            move.error = error  # the first failure is the one to surface
            self._moves.ended(move)
            if move.tagged:
                self._abandon(move)
            return []
        for pointer, new in zip(pointers, new_ids):
            pointer._moved_to(move.dest, new)
        return [flying]
