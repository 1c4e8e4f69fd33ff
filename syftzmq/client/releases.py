"""The queue of deletes for dead pointers, and how they leave.

A pointer that dies only appends ``(worker, id)`` here: ``__del__`` may run inside a socket
call or on another thread, so it must neither send nor take a lock. The session drains the
queue before its next message: deletes for that message's worker ride on it (``RELEASES``,
applied before it), the others leave as one ``DEL`` per worker, without ever blocking — a
worker whose queue is full (dead or swamped) keeps its deletes here, and nobody else's
operation fails for it. Deletes are idempotent and ids are never reused, so sending one twice
(after a failure that may or may not have happened before the send) is harmless.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Callable, Iterable

import zmq

from ..core.messages import RELEASES
from ..core.refs import WorkerRef
from ..errors import WorkerUnavailable

log = logging.getLogger("syftzmq.client")

Batches = dict[str, tuple[WorkerRef, list[int]]]


class ReleaseQueue:
    """Pending deletes, in the order their pointers died."""

    def __init__(self) -> None:
        self._queue: deque[tuple[WorkerRef, int]] = deque()

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
        for _ in range(len(self._queue)):
            entry = self._queue.popleft()
            if entry[0].incarnation != incarnation:
                self._queue.append(entry)

    def take(self) -> Batches:
        """Everything queued, grouped by worker (the queue empties)."""
        batches: Batches = {}
        while self._queue:
            location, object_id = self._queue.popleft()
            batches.setdefault(location.incarnation, (location, []))[1].append(object_id)
        return batches

    def __bool__(self) -> bool:
        return bool(self._queue)

    def __len__(self) -> int:
        return len(self._queue)

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
