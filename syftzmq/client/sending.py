"""The one way out: every message to a worker leaves through :meth:`Sender.send_now`.

Fire-and-forget commands wait in the :class:`~syftzmq.client.outbox.Outbox` and leave together,
or ride on the next message to the same worker (``before``, applied first). One rule keeps that
invisible: before anything goes to a chain holder (:mod:`syftzmq.client.chains`), every other
worker's queue leaves first — the holder may forward work to them, and it must arrive after
what this client queued for them. Leaving first is not arriving first (ZeroMQ orders each
connection, not two paths), so every message is numbered per worker and a message to a holder
names the last number each other worker was sent (``after``, see
:mod:`syftzmq.worker.arrival_order`). Keeping those rules, and the record of what each worker has
received (:class:`~syftzmq.client.round_trip.Pending`), in this one method is what lets every
other part of the client send without thinking about order.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import zmq

from ..core.messages import ADDRESSED_TO, AFTER, BATCH, BEFORE, CONFIRMS, MOVES_FIRST, SEQ, message
from ..core.refs import WorkerRef
from ..errors import WorkerUnavailable
from ..tensor import unchanged
from .chains import ChainHolders
from .connections import PROBE, Connections
from .deferred_grads import DeferredGrads, clears_grad
from .deliveries import CONFIRM_CARRIERS, Confirmations
from .outbox import Outbox
from .round_trip import Pending
from .stats import Stats

log = logging.getLogger("syftzmq.client")


class Sender:
    """Sends messages, carrying the outbox, in an order no worker can tell from unqueued.

    Every method runs under the session's lock (``lock``), the outbox's sweeper included.
    """

    def __init__(self, origin: str, connections: Connections, chains: ChainHolders,
                 pending: Pending, stats: Stats, lock: threading.RLock, *, max_queued: int,
                 linger: float, when_blocked: Callable[[WorkerRef], bool] | None = None) -> None:
        """``when_blocked(location)`` is asked when a send stayed blocked for the send timeout:
        True to keep waiting (the worker is alive and unbounded), else it raises or returns
        False (then :class:`WorkerUnavailable`)."""
        self._origin = origin
        self._connections = connections
        self._chains = chains
        self._pending = pending
        self._stats = stats
        self.outbox = Outbox(self.flush_due, lock, max_queued=max_queued, linger=linger)
        self._stalled: set[str] = set()  # a background flush found their socket full
        # Called with (worker, message) after each message left (``TorchHook(verbose=True)``).
        self.on_sent: Callable[[WorkerRef, dict], None] | None = None
        # received gets to confirm; they ride on the next message to their worker
        self.confirmations = Confirmations(recycle=unchanged.recycle)
        # gradients ``model.send`` kept back; they leave before anything that could see them
        self.deferred_grads = DeferredGrads()
        self._kept_grads = self.deferred_grads.kept  # tested per message: a plain dict
        self._when_blocked = when_blocked
        # per worker incarnation: how many messages went there (each carries its number)
        self._sent: dict[str, int] = {}
        # workers whose queued commands may name moves (``moves_first``): the message that
        # carries them names those moves itself, the only place the worker looks
        self.moves_tagged: set[str] = set()

    def send_now(self, location: WorkerRef, msg: dict, flags: int = 0) -> None:
        """Send ``msg``, carrying whatever the outbox holds for ``location`` (applied first).

        Blocks while the worker's queue is full, up to the send timeout (then raises
        :class:`WorkerUnavailable`), or raises ``zmq.Again`` at once with ``zmq.NOBLOCK``;
        whatever it carried is queued again then.
        """
        connection = self._connections.current(location)
        incarnation = location.incarnation
        kind = msg["kind"]
        numbered = not incarnation.startswith(PROBE)
        if numbered:
            msg[ADDRESSED_TO] = incarnation  # a restarted worker refuses it
        if self._kept_grads and kind != BATCH:  # a batch carries what was checked
            self._release_grads(location, msg)
        # first: releasing others must not come back
        queued = self.outbox.take(incarnation)
        if queued:
            msg[BEFORE] = queued
            if self.moves_tagged and incarnation in self.moves_tagged:
                _name_moves_carried(msg, queued)
        confirmed = self.confirmations.take(incarnation) if kind in CONFIRM_CARRIERS else None
        if confirmed:
            msg[CONFIRMS] = confirmed
        try:
            if incarnation in self._chains:
                self._release_queues_for(location)
                after = self._unanswered(incarnation)
                if after:
                    msg[AFTER] = after
            if numbered:
                seq = msg[SEQ] = self._sent.get(incarnation, 0) + 1
            still_waiting = None if self._when_blocked is None else (
                lambda: self._when_blocked(location))
            self._stats.bytes_sent += connection.send(msg, flags, still_waiting)
        except BaseException as exc:
            self.outbox.put_back(location.incarnation, location, msg.pop(BEFORE, []))
            self.confirmations.put_back(location, msg.pop(CONFIRMS, []))
            if isinstance(exc, zmq.Again) and not flags & zmq.NOBLOCK:
                raise WorkerUnavailable(location.id, location.address,
                                        f"its queue stayed full for "
                                        f"{self._connections.send_timeout:.1f} s") from None
            raise
        if numbered:
            self._sent[incarnation] = seq
        if queued and self.moves_tagged:
            self.moves_tagged.discard(incarnation)
        self._stalled.discard(incarnation)
        self._stats.messages_sent += 1
        self._pending.sent(incarnation, kind, queued)
        if self.on_sent is not None:
            self.on_sent(location, msg)

    def _unanswered(self, holder: str) -> dict[str, int]:
        """For a message to chain ``holder``: the number of the last message each other worker
        was sent and has not answered since. What the holder forwards there waits for it
        (ZeroMQ orders each connection, not the two paths; see
        :mod:`syftzmq.worker.arrival_order`)."""
        sent = self._sent
        return {incarnation: sent[incarnation]
                for incarnation in self._pending.dirty | self._pending.deletes
                if incarnation != holder and incarnation in sent}

    def queue(self, location: WorkerRef, msg: dict, real_work: bool = False) -> None:
        """Queue a command; it leaves now if its queue is full or its oldest waited enough,
        or if it starts ``real_work`` (:func:`~syftzmq.client.outbox.starts_real_work`)."""
        if self._kept_grads and self._release_grads(location, msg):
            return  # it clears a gradient the worker does not have
        self._pending.queued(location.incarnation)
        if self.outbox.add(location, msg, real_work):
            self.flush(location.incarnation)

    def _release_grads(self, location: WorkerRef, msg: dict) -> bool:
        """Before ``msg`` goes to ``location``: the gradients kept for it are queued first,
        unless all ``msg`` does is clear one parameter's gradient: that one is forgotten, and
        if it was kept, ``msg`` changes nothing there (True: it need not be sent)."""
        incarnation = location.incarnation
        if incarnation not in self.deferred_grads:
            return False
        cleared = clears_grad(msg)
        if cleared is not None:
            return self.deferred_grads.forget(incarnation, cleared)
        self._queue_kept_grads(location)
        return False

    def _queue_kept_grads(self, location: WorkerRef) -> None:
        """The gradients kept for ``location``, queued as ``setattr`` commands (they leave
        with the next message to it, before what it carries)."""
        commands = self.deferred_grads.take(location.incarnation, self._origin)
        if commands:
            self._pending.queued(location.incarnation)
        for command in commands:
            self.outbox.add(location, command)

    def flush(self, incarnation: str, flags: int = 0) -> None:
        """Send what is queued for ``incarnation`` now, as one message."""
        if incarnation in self.outbox:
            self.send_now(self.outbox.ref(incarnation), message(BATCH, origin=self._origin), flags)

    def flush_due(self) -> None:
        """Called by the outbox's sweeper thread: send queues that waited long enough; never
        raise (a worker that cannot take them now gets them with the next foreground message,
        and until then the sweeper leaves it alone)."""
        for incarnation in self.outbox.due(time.monotonic()):
            if incarnation in self._stalled:
                continue
            try:
                self.flush(incarnation, zmq.NOBLOCK)
            except zmq.Again:
                log.debug("the queue to %s is full; its commands wait for the next message",
                          incarnation, exc_info=True)
                self._stalled.add(incarnation)
            except Exception:
                log.warning("a background flush to %s failed; its commands wait for the next "
                            "message to it, which will raise if it still fails", incarnation,
                            exc_info=True)
                self._stalled.add(incarnation)

    def flush_all_at_exit(self) -> None:
        """Send every queue without blocking: queued commands may change objects others can
        see. A worker that cannot take them is logged, not waited for."""
        self.outbox.close()
        for location in self.deferred_grads.locations():  # another client may look there
            self._queue_kept_grads(location)
        for incarnation in self.outbox.incarnations():
            try:
                self.flush(incarnation, zmq.NOBLOCK)
            except Exception:
                log.warning("commands queued for %s were lost at close", incarnation,
                            exc_info=True)

    def forget(self, incarnation: str) -> None:
        self._sent.pop(incarnation, None)
        self.outbox.discard(incarnation)
        self.deferred_grads.discard(incarnation)
        self.confirmations.discard(incarnation)
        self._stalled.discard(incarnation)

    def _release_queues_for(self, location: WorkerRef) -> None:
        """Before ``location`` (a chain holder) hears anything, every other queue leaves."""
        for incarnation in self.outbox.incarnations():
            if incarnation != location.incarnation:
                self.flush(incarnation)


def _name_moves_carried(msg: dict, queued: list[dict]) -> None:
    """``msg`` names every move the commands it carries wait for (see
    :mod:`syftzmq.worker.move_arrivals`)."""
    for inner in queued:
        for move_id in inner.get(MOVES_FIRST, ()):
            named = msg.setdefault(MOVES_FIRST, [])
            if move_id not in named:
                named.append(move_id)
