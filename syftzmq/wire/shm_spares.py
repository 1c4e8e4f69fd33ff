"""Shared-memory segments prepared ahead of the next large export, off its critical path.

Writing into a fresh tmpfs file is mostly the kernel allocating its pages (256 MiB: about
110 ms into fresh pages against 12 ms into allocated ones, on a quiet machine here). After each
large export, a thread of this process prepares segments of the same part sizes for the next
export of those sizes:

- every spare is allocated (``fallocate``), so writing it can never hit a full ``/dev/shm``;
- a spare of at least :data:`MAPPED_MIN` bytes is also mapped here and, once every part is
  allocated, its pages are faulted in, a chunk at a time, by a thread at the lowest priority:
  the export copies into them with a plain ``memcpy`` (which releases the GIL, one thread per
  part), about 0.6x the time of ``pwrite`` into the allocated file; a spare taken before all
  its pages are in gets the rest written with ``pwrite``. Faulting in costs more CPU than the
  copy saves, so it pays only when the process has idle time between large exports: measured
  interleaved in one session against spares that are only allocated (loaded 2-core machine),
  send 64 / 256 MiB 0.88x / 0.92x (up to 0.65x) when the result is used between rounds, and
  1.03-1.04x (noise) when sends follow each other at once, since the thread then rarely runs.
  1 MiB exports take no spare at all: measured fastest (1.36-1.51 ms against 1.5-1.7 ms with a
  spare of either kind).

The taker of a spare owns its mapping (it unmaps it as soon as it has copied: the receiver
owns the pages then); the preparing thread stops at the chunk it was faulting in. Mappings are
not inherited by a fork (``MADV_DONTFORK``) and a forked child closes the spares' descriptors
it inherited: it must not keep pages its parent hands over.

Lifetime: spares are named by this pid like segments (``syftzmq-<pid>-spare-<random>``, renamed
to a segment's name when used, see :mod:`syftzmq.wire.shm`), so they are swept like segments
if this process is killed; only the sizes of the last large export are kept (others are
dropped when an export of other sizes asks for spares); they are unlinked when nobody used them
for :data:`IDLE` seconds, and at exit.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from . import shm_map

MIN = 8 << 20  # exports this large (all parts together) are followed by preparing spares
MAX = 1 << 30
MAPPED_MIN = 8 << 20  # spares this large are mapped and populated here (see the docstring)
IDLE = 30.0
POPULATE_NICE = 19  # of the thread faulting spares in (see Spares._populate_forever)
WAIT = 2.0  # seconds an export waits for a spare of its size being allocated (see take)
_POPULATE_CHUNK = 4 << 20  # faulted in at a time: a taker waits for one chunk at most


@dataclass(eq=False)
class Spare:
    """One prepared segment. ``address`` (nonzero if mapped here) and ``ready`` (how many
    bytes from its start are faulted in) are for its taker: it copies those bytes into the
    mapping and writes the rest (see :meth:`Spares.take`)."""

    name: str
    fd: int
    size: int
    address: int = 0
    ready: int = 0
    taken: bool = False
    busy: bool = False  # a chunk is being faulted in (outside the lock)
    release_by_populator: bool = False


def _pages(size: int) -> int:
    return -(-size // mmap.PAGESIZE)


class Spares:
    """The spares of one process. ``create`` makes a new, empty spare file (name, descriptor);
    ``remove`` unlinks one by name.

    ``_lock`` guards the pool and each spare's fields. The thread faulting a spare in runs at
    a low priority and never holds the lock while it works (a taker would wait for it): it
    marks the spare ``busy`` for each chunk, and stops once the spare is taken. The taker
    copies only into the ``ready`` bytes, which the populating thread no longer touches; the
    mapping is unmapped by whichever of the two finishes last (:meth:`release`).
    """

    def __init__(self, create: Callable[[], tuple[str, int]], remove: Callable[[str], None]) -> None:
        self._create = create
        self._remove = remove
        self._lock = threading.Lock()
        self._files: list[Spare] = []
        self._wanted: list[int] = []
        self._used = time.monotonic()
        self._wake = threading.Condition(self._lock)
        self._allocating: list[int] = []  # sizes the preparing thread is allocating now
        self._allocated = threading.Condition(self._lock)
        self._to_populate: "queue.SimpleQueue[Spare]" = queue.SimpleQueue()
        self._pid = 0
        os.register_at_fork(after_in_child=self._forget)

    def take(self, size: int) -> Spare | None:
        """A spare of ``size`` (the same number of pages), taken out of the pool, or None.

        The caller owns the spare's file from here on (renames, truncates to ``size``,
        closes). If ``address`` is set, it copies the first ``ready`` bytes into the mapping,
        writes the rest with ``pwrite``, and then calls :meth:`release`.

        If the preparing thread is allocating a spare of that size, waits for it (up to
        :data:`WAIT` seconds): allocating another one here at the same time would take
        longer, and use the memory twice."""
        deadline = time.monotonic() + WAIT
        with self._lock:
            if self._pid != os.getpid():
                return None
            while True:
                spare = max((f for f in self._files if _pages(f.size) == _pages(size)),
                            key=lambda f: f.ready, default=None)  # the most faulted in
                if spare is not None or not any(_pages(s) == _pages(size)
                                                for s in self._allocating):
                    break
                if not self._allocated.wait(deadline - time.monotonic()):
                    break
            if spare is None:
                return None
            self._files.remove(spare)
            self._used = time.monotonic()
            spare.taken = True
            return spare

    def release(self, spare: Spare) -> None:
        """The taker of ``spare`` is done with its mapping: unmapped now, or by the populating
        thread once the chunk it is faulting in is done (the range must not be reused before)."""
        with self._lock:
            if not spare.address:
                return
            if spare.busy:
                spare.release_by_populator = True
                return
            address, spare.address = spare.address, 0
        shm_map.unmap_later(address, spare.size)

    def want(self, sizes: Sequence[int]) -> None:
        """Prepare spares of ``sizes`` (for exports of :data:`MIN` bytes or more), dropping
        spares of other sizes."""
        if sum(sizes) < MIN or sum(sizes) > MAX:
            return
        with self._lock:
            self._wanted = list(sizes)
            self._used = time.monotonic()
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._files = []
                self._to_populate = queue.SimpleQueue()
                threading.Thread(target=self._prepare_forever, name="syftzmq-spares",
                                 daemon=True).start()
                threading.Thread(target=self._populate_forever, name="syftzmq-spares-populate",
                                 daemon=True).start()
            self._wake.notify()

    def drop(self) -> None:
        """Unlink every spare (at exit)."""
        with self._lock:
            self._drop_locked(self._files)

    def sizes(self, populated: bool = False) -> list[int]:
        """The sizes of the spares there are now, or of those mapped and faulted in entirely
        (for tests and checks)."""
        with self._lock:
            return sorted(f.size for f in self._files if not populated or f.ready == f.size)

    # ------------------------------------------------------------------ the preparing thread
    def _prepare_forever(self) -> None:
        while True:
            with self._lock:
                while not self._wanted:
                    if not self._wake.wait(IDLE) and time.monotonic() - self._used > IDLE:
                        self._drop_locked(self._files)
                missing, self._wanted = self._wanted, []
                stale = []
                for spare in self._files:
                    if spare.size in missing:
                        missing.remove(spare.size)
                    else:
                        stale.append(spare)
                self._drop_locked(stale)
                self._allocating = list(missing)
            # every part allocated first (writable without allocating), then faulted in
            prepared = []
            for size in missing:
                spare = self._allocate(size)
                if spare is None:
                    break
                prepared.append(spare)
            with self._lock:
                self._allocating = []
                self._allocated.notify_all()
            for spare in prepared:
                if spare.address:
                    self._to_populate.put(spare)

    def _populate_forever(self) -> None:
        """Fault spares in at a low priority: on a busy machine, the critical path of whatever
        runs now matters more than a faster copy later (a spare not faulted in is written)."""
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), POPULATE_NICE)
        except (OSError, AttributeError):
            pass
        while True:
            self._populate(self._to_populate.get())

    def _allocate(self, size: int) -> Spare | None:
        try:
            name, fd = self._create()
        except OSError:
            return None
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError:  # /dev/shm full: no spare
            os.close(fd)
            self._remove(name)
            return None
        spare = Spare(name, fd, size)
        if size >= MAPPED_MIN:
            try:
                spare.address = shm_map.map_file(fd, size)
            except OSError:
                pass
        with self._lock:
            if self._pid != os.getpid():  # forked meanwhile: not this process's
                return None
            self._files.append(spare)
            self._allocating.remove(size)
            self._allocated.notify_all()
        return spare

    def _populate(self, spare: Spare) -> None:
        """Fault the spare's pages in, a chunk at a time, until done or taken."""
        for done in range(0, spare.size, _POPULATE_CHUNK):
            with self._lock:
                if spare.taken or not spare.address:
                    return
                spare.busy = True
            ok = shm_map.populate(spare.address + done, min(_POPULATE_CHUNK, spare.size - done))
            with self._lock:
                spare.busy = False
                if ok and not spare.taken:
                    spare.ready = min(spare.size, done + _POPULATE_CHUNK)
                release = spare.release_by_populator
                address = spare.address if release else 0
                if release:
                    spare.address = 0
            if release:
                shm_map.unmap_later(address, spare.size)
                return
            if not ok:
                return  # written, not copied into, beyond ``ready``

    # ------------------------------------------------------------------ dropping
    def _drop_locked(self, spares: Sequence[Spare]) -> None:
        for spare in list(spares):
            spare.taken = True
            if spare.address and spare.busy:
                spare.release_by_populator = True
            elif spare.address:
                shm_map.unmap_later(spare.address, spare.size)
                spare.address = 0
            os.close(spare.fd)
            self._remove(spare.name)
            if spare in self._files:
                self._files.remove(spare)

    def _forget(self) -> None:
        """In a forked child: the spares are the parent's (their mappings were not inherited);
        close the descriptors, which would keep their pages alive. No lock: another thread of
        the parent may have held it at the fork."""
        for spare in self._files:
            try:
                os.close(spare.fd)
            except OSError:
                pass
        self._files = []
        self._wanted = []
        self._pid = 0
        self._allocating = []
        self._lock = threading.Lock()  # a copy of a lock held at the fork stays held
        self._wake = threading.Condition(self._lock)
        self._allocated = threading.Condition(self._lock)


def buffer_address(view: memoryview) -> int | None:
    """The address of a writable contiguous buffer's bytes (None for a read-only one)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(view))
    except (TypeError, ValueError):
        return None
