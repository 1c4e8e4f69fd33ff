"""Commands waiting to leave, per worker: many operations, one message.

Every message costs both ends a fixed amount of Python (pickling a dict, signing, a socket call,
a wake-up of the receiver's loop) that dwarfs the work of a small operation. So fire-and-forget
commands are queued here and leave together, as one message, when the first of these happens:

- something else goes to the same worker: the queue rides along on it (``before``, applied
  first), so ``(p + p).get()`` is a single message;
- the queue holds ``max_queued`` commands (``SYFTZMQ_BATCH``);
- a command joins a queue whose oldest command has waited ``linger`` (``SYFTZMQ_LINGER_MS``);
- a command that gives the worker real work joins it (:func:`starts_real_work`: a result of at
  least :data:`BUSY_ELEMENTS` elements, or ``backward``), unless the last such command left
  less than :data:`BUSY_GAP_SECONDS` ago: waiting would leave the worker idle while the client
  issues the next commands, so a training step's forward pass runs on the worker while the
  client is still issuing the rest of it, instead of after; the gap keeps that to a few
  messages a step (the worker still has the previous work to do meanwhile);
- a background thread finds a queue older than that (it looks every :data:`SWEEP_SECONDS`), so
  a command never waits for the client's next operation to start running.

Why the thread polls instead of being woken per command: waking a thread costs the caller a GIL
hand-off, about 100 µs on a small VM — more than the whole client side of an operation. So the
thread is woken once when work starts, looks every few milliseconds while work is queued, and
goes back to sleep after a second without queued work. Each look takes the GIL from the client,
and on a loaded machine getting it back can cost the client milliseconds; so while the client
keeps queueing (its own ``add`` sends a queue that is old enough) the thread looks less often,
every :data:`BUSY_SWEEP_SECONDS` at most, and it takes the session's lock only when a queue is
actually due.

The queue never reorders anything. Order across workers is the session's business (see
``Sender._release_queues_for`` in :mod:`syftzmq.client.sending`).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any, Callable

from ..core.refs import WorkerRef

log = logging.getLogger("syftzmq.client")

SWEEP_SECONDS = 0.005
# A command with results this large (elements) keeps a worker busy for longer than a message
# costs it (about a hundred microseconds): worth sending at once. A pipelined burst of small
# operations stays batched.
BUSY_ELEMENTS = 1 << 16
BUSY_GAP_SECONDS = 0.001  # after one real-work command left, the next waits this long at least
_BACKWARD = ("method", "backward")  # its results are gradients, which no meta describes
BUSY_SWEEP_SECONDS = 0.02  # the longest pause between looks while the client keeps queueing
IDLE_SECONDS = 1.0  # the thread sleeps after this long without queued work


def starts_real_work(op: Any, metas: "list | None") -> bool:
    """Whether a command (its wire ``op`` and its results' ``metas``) keeps its worker busy
    long enough to leave without waiting: a result of :data:`BUSY_ELEMENTS` elements or more,
    or ``backward``. The session asks it per command, from the metas it inferred (they travel
    only to chain holders), so it looks at as little as it can."""
    if metas:
        for meta in metas:
            if meta is not None and meta.shape.numel() >= BUSY_ELEMENTS:
                return True
        return False
    return op == _BACKWARD


class Outbox:
    """Per-worker queues of fire-and-forget messages, flushed by size, by age or by the caller.

    Not locked itself: every method runs under the session's lock, including the sweeper
    thread's flush (``flush_due`` is called with it held).
    """

    def __init__(self, flush_due: Callable[[], None], lock: threading.RLock, *,
                 max_queued: int = 64, linger: float = 0.005) -> None:
        self.max_queued = max_queued
        self.linger = linger
        self._queues: dict[str, list[dict]] = {}
        self._refs: dict[str, WorkerRef] = {}
        self._oldest: dict[str, float] = {}
        self._busy_since: dict[str, float] = {}  # when the last real-work command asked to leave
        self._lock = lock
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._sweeping = False  # the thread is looking (no need to wake it)
        self._added = 0  # commands queued so far: the thread tells an active client by it
        self._flush_due = weakref.WeakMethod(flush_due)

    def add(self, location: WorkerRef, msg: dict, real_work: bool = False) -> bool:
        """Queue ``msg``; true when the queue should leave now (full, old enough, or ``msg``
        starts ``real_work``: see the module docstring and :func:`starts_real_work`)."""
        self._added += 1
        queue = self._queues.get(location.incarnation)
        if queue is None:
            queue = self._queues[location.incarnation] = []
            self._refs[location.incarnation] = location
            self._oldest[location.incarnation] = time.monotonic()
            if not self._sweeping:
                self._start_sweeping()
            queue.append(msg)
            return real_work and self._worker_needs_work(location.incarnation)
        queue.append(msg)
        return (len(queue) >= self.max_queued
                or time.monotonic() - self._oldest[location.incarnation] >= self.linger
                or (real_work and self._worker_needs_work(location.incarnation)))

    def _worker_needs_work(self, incarnation: str) -> bool:
        """Whether real work for ``incarnation`` should leave now: none left in the last
        :data:`BUSY_GAP_SECONDS` (then the worker is probably still on it). Records it."""
        now = time.monotonic()
        if now - self._busy_since.get(incarnation, -BUSY_GAP_SECONDS) < BUSY_GAP_SECONDS:
            return False
        self._busy_since[incarnation] = now
        return True

    def take(self, incarnation: str) -> list[dict]:
        """Everything queued for ``incarnation`` (the queue empties)."""
        self._oldest.pop(incarnation, None)
        self._refs.pop(incarnation, None)
        return self._queues.pop(incarnation, [])

    def put_back(self, incarnation: str, location: WorkerRef, msgs: list[dict]) -> None:
        """Messages that did not leave go back to the front, in their order."""
        if msgs:
            self._queues[incarnation] = msgs + self._queues.get(incarnation, [])
            self._refs[incarnation] = location
            self._oldest.setdefault(incarnation, time.monotonic())

    def incarnations(self) -> list[str]:
        return list(self._queues)

    def ref(self, incarnation: str) -> WorkerRef:
        return self._refs[incarnation]

    def due(self, now: float) -> list[str]:
        return [incarnation for incarnation, since in self._oldest.items() if now - since >= self.linger]

    def _any_due(self, now: float) -> bool:
        """Whether some queue waited the linger; safe without the lock (``list`` of a dict's
        values is one step under the GIL), so the thread need not take it to find out."""
        return any(now - since >= self.linger for since in list(self._oldest.values()))

    def discard(self, incarnation: str) -> None:
        self.take(incarnation)
        self._busy_since.pop(incarnation, None)

    def __contains__(self, incarnation: str) -> bool:
        return incarnation in self._queues

    def __bool__(self) -> bool:
        return bool(self._queues)

    # ---------------------------------------------------------------- the sweeping thread
    def _start_sweeping(self) -> None:
        if self._closed:
            return
        self._sweeping = True
        if self._thread is None:
            self._thread = threading.Thread(target=self._sweep, name="syftzmq-outbox",
                                            daemon=True)
            self._thread.start()
        self._wake.set()

    def _sweep(self) -> None:
        """Sleep until work starts; then flush what is due every few ms until idle a while."""
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            last_work = time.monotonic()
            pause, seen = SWEEP_SECONDS, self._added
            while not self._closed:
                time.sleep(pause)  # a timer, not synchronization: see module docstring
                now = time.monotonic()
                # the client queued since the last look: it sends what ages itself, look later
                pause = min(pause * 2, BUSY_SWEEP_SECONDS) if self._added != seen else SWEEP_SECONDS
                seen = self._added
                if self._queues:
                    last_work = now
                    if not self._any_due(now):
                        continue
                    flush_due = self._flush_due()
                    if flush_due is None:  # the session is gone
                        return
                    with self._lock:
                        if self._closed:
                            return
                        self._call(flush_due)
                elif now - last_work > IDLE_SECONDS:
                    with self._lock:
                        if not self._queues:  # ``add`` sees this under the same lock
                            self._sweeping = False
                            break

    @staticmethod
    def _call(flush_due: Callable[[], None]) -> None:
        """``flush_due`` must not raise; if it does anyway, the sweeper keeps going (queued
        commands still leave with the next message) and the error is logged, not lost."""
        try:
            flush_due()
        except Exception:
            log.warning("the outbox's background flush failed; queued commands leave with "
                        "the next message instead", exc_info=True)

    def close(self) -> None:
        self._closed = True
        self._wake.set()
