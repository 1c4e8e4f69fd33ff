"""The queue of deletes for dead pointers, and how they leave.

A pointer that dies only appends ``(worker, id)`` here: ``__del__`` may run inside a socket
call or on another thread, so it must neither send nor take a lock. The session drains the
queue before its next message: deletes for that message's worker ride on it (``RELEASES``,
applied before it). Deletes for the other workers are *held* until they are worth a message of
their own: when they have waited the outbox's linger, or a worker has a batch's worth, or an
observation must see them (a store listing, see
:func:`~syftzmq.core.messages.needs_complete_flush`), or the session closes. Then they leave as
one ``DEL`` per worker, without ever blocking — a worker whose queue is full (dead or swamped)
keeps its deletes here, and nobody else's operation fails for it.

Why hold them: a delete changes no answer but a store listing, yet as a message of its own it
costs the client a send and the worker a wake-up — as much as a whole operation. Along a pointer
chain every ``(chain + 1).get()`` returns the next hop's pointer, which usually dies at once,
on a worker this client never otherwise messages: sent one by one, those deletes doubled the
messages per hop. Held, a few leave together, or ride on the next message to their worker.

Deletes are idempotent and ids are never reused, so sending one twice (after a failure that may
or may not have happened before the send) is harmless.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Callable, Iterable

import zmq

from ..core.messages import RELEASES
from ..core.refs import WorkerRef
from ..errors import WorkerUnavailable

log = logging.getLogger("syftzmq.client")

Batches = dict[str, tuple[WorkerRef, list[int]]]


class ReleaseQueue:
    """Pending deletes, in the order their pointers died, and those held back per worker.

    ``hold`` (seconds) and ``max_held`` (deletes per worker) bound how long and how many deletes
    for a worker wait for a message to ride on before they leave on their own.
    """

    def __init__(self, hold: float = 0.005, max_held: int = 64) -> None:
        self._queue: deque[tuple[WorkerRef, int]] = deque()  # appended to without a lock
        # by worker incarnation: (worker, ids, since when held); touched under the session lock
        self._held: dict[str, tuple[WorkerRef, list[int], float]] = {}
        self.hold = hold
        self.max_held = max_held

    def add(self, location: WorkerRef, object_id: int) -> None:
        """Queue one delete (thread-safe without a lock: one ``deque.append``)."""
        self._queue.append((location, object_id))

    def requeue(self, location: WorkerRef, object_ids: Iterable[int]) -> None:
        """Deletes that did not leave (their message failed): they go with a later one."""
        self._queue.extend((location, object_id) for object_id in object_ids)

    def discard(self, incarnation: str) -> None:
        """Drop the deletes for a worker that is gone (its objects went with it).

        Pops and re-appends instead of rebuilding the deque, so a pointer dying on another
        thread meanwhile is not lost.
        """
        self._held.pop(incarnation, None)
        for _ in range(len(self._queue)):
            entry = self._queue.popleft()
            if entry[0].incarnation != incarnation:
                self._queue.append(entry)

    def take(self, carrier: str | None = None, everything: bool = True) -> Batches:
        """The deletes due now, grouped by worker; the others stay held.

        Due: every delete if ``everything``; else those for ``carrier`` (the incarnation of the
        message they can ride on), and another worker's once they waited :attr:`hold` seconds
        or number :attr:`max_held`.
        """
        held = self._held
        now = time.monotonic()
        while self._queue:
            location, object_id = self._queue.popleft()
            entry = held.get(location.incarnation)
            if entry is None:
                held[location.incarnation] = (location, [object_id], now)
            else:
                entry[1].append(object_id)
        if everything:
            self._held = {}
            return {incarnation: (location, ids) for incarnation, (location, ids, _) in held.items()}
        due: Batches = {}
        for incarnation, (location, ids, since) in list(held.items()):
            if incarnation == carrier or len(ids) >= self.max_held or now - since >= self.hold:
                del held[incarnation]
                due[incarnation] = (location, ids)
        return due

    def __bool__(self) -> bool:
        return bool(self._queue or self._held)

    def __len__(self) -> int:
        return len(self._queue) + sum(len(ids) for _, ids, _ in self._held.values())

    def send(self, batches: Batches, send_delete: Callable[[WorkerRef, list[int]], None],
             carrier: tuple[WorkerRef, dict] | None = None,
             skip: Callable[[str], bool] = lambda incarnation: False) -> None:
        """Send ``batches``: onto ``carrier``'s message for its worker, as ``DEL`` for the others.

        ``send_delete`` must not block (it raises ``zmq.Again`` or :class:`WorkerUnavailable`
        when the worker cannot take it now: those deletes are queued again). Batches for which
        ``skip`` is true are dropped (their worker was restarted: the objects died with it).
        """
        for incarnation, (location, ids) in batches.items():
            if skip(incarnation):
                continue
            if carrier is not None and incarnation == carrier[0].incarnation:
                carrier[1][RELEASES] = ids
                continue
            try:
                send_delete(location, ids)
            except (zmq.Again, WorkerUnavailable):
                log.debug("deletes for %s wait for a later message", location.id, exc_info=True)
                self.requeue(location, ids)
