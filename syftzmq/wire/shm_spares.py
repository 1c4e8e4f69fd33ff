"""Shared-memory segments prepared ahead of the next large export, off its critical path.

Writing into a fresh tmpfs file is mostly the kernel allocating its pages (256 MiB: about
110 ms into fresh pages against 12 ms into allocated ones, on a quiet machine here). After each
large export, a thread of this process prepares segments of the same part sizes for the next
export of those sizes:

- every spare is allocated (``fallocate``), so writing it can never hit a full ``/dev/shm``;
- a spare of at least :data:`MAPPED_MIN` bytes is also mapped here and, once every part is
  allocated, its pages are faulted in, a chunk at a time, by a thread at the lowest priority:
  the export copies into them with a plain ``memcpy`` (which releases the GIL, one thread per
  part), about 0.6x the time of ``pwrite`` into the allocated file; a spare taken before all its
  pages are in is copied into all the same (the copy faults the rest in, about the cost of
  ``pwrite``, and leaves the mapping whole for the export that reuses it, below). Faulting in
  costs more CPU than the copy saves, so it pays only when the process has idle time between
  large exports: measured interleaved in one session against spares that are only allocated
  (loaded 2-core machine), send 64 / 256 MiB 0.88x / 0.92x (up to 0.65x) when the result is used
  between rounds, and 1.03-1.04x (noise) when sends follow each other at once, since the thread
  then rarely runs. 1 MiB exports take no spare at all: measured fastest (1.36-1.51 ms against
  1.5-1.7 ms with a spare of either kind).

The taker of a spare owns its mapping (it keeps it with the segment, below, or unmaps it as
soon as it has copied); the preparing thread stops at the chunk it was faulting in. Mappings are
not inherited by a fork (``MADV_DONTFORK``) and a forked child closes the spares' descriptors
it inherited: it must not keep pages its parent hands over.

Kept segments: in a client (:func:`syftzmq.wire.shm.keep_exports`), a large export's segments
are not handed over for good. This process keeps their descriptors and its mapping (faulted in
by the export's copy) and writes a later export of the same part sizes into one that is free
again (:meth:`Spares.take` with ``recycle``), with one ``memcpy`` per part into pages that are
already allocated and mapped: 15 ms for 256 MiB where fresh pages cost 60-150 ms. Free means:
its receiver claimed it (truncated it to the size announced, see :func:`syftzmq.wire.shm._open`)
and no process holds a shared ``flock`` on it any more, which every receiver takes before it
claims and keeps as long as it maps the pages or holds a descriptor — so the exclusive lock this
process then gets proves nobody sees them, and a segment whose receiver has not opened it yet
(stopped, killed, slow) is never written again. Back to back — the pattern of a loop that sends,
fetches and drops — the segment exported last is usually still mapped by its receiver (a worker
unmaps a fetched copy only after the confirmation reaches it), so :data:`KEEP` (two) are kept
per part: the one before is free. Measured interleaved against spares only (``scripts/bench.py
--cases 3``, loaded 2-core machine): send 256 MiB 27 ms against 95-310 ms. Only the sizes of the
last large export are kept; older ones are dropped (their receivers hold their own descriptors),
and every kept segment is closed at exit, in a forked child, after :data:`IDLE` to twice that
unused once its receiver claimed it (one still in flight is not: its receiver may yet open
it), and when its export turns out not to be taken (unsent, expired, its destination gone)
before its receiver claimed it. A written-again segment has no name, so nothing of it can be left in
``/dev/shm``; spares are made only when an export could not reuse a kept segment.

Lifetime: spares are named by this pid like segments (``syftzmq-<pid>-spare-<random>``, renamed
to a segment's name when used, see :mod:`syftzmq.wire.shm`), so they are swept like segments
if this process is killed; only the sizes of the last large export are kept (others are
dropped when an export of other sizes asks for spares); they are unlinked when nobody used them
for :data:`IDLE` seconds (the thread looks every :data:`IDLE`, so within twice that), and at
exit.
"""

from __future__ import annotations

import collections
import ctypes
import fcntl
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
# A reusable export is announced this many bytes longer than its data; its receiver truncates
# the file to the data's size (holding its lock) before mapping it: its claim (see KEEP).
UNCLAIMED_TAIL = mmap.PAGESIZE
KEEP = 2  # exported segments kept per part for reuse (see the module docstring)


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
    # a kept segment (exported before, see Spares.keep): how its last export named it, how many
    # bytes that export announced (its receiver's claim truncates the file to them), its inode
    reference: str = ""
    exported: int = 0
    inode: int = 0
    recycled: bool = False  # taken from the kept: locked (LOCK_EX) until its taker unlocks it


def _pages(size: int) -> int:
    return -(-size // mmap.PAGESIZE)


def _claimed(spare: Spare) -> bool:
    """Whether the receiver of a kept segment's last export claimed it: truncated it to the
    size announced (see :func:`syftzmq.wire.shm._open`)."""
    try:
        return os.fstat(spare.fd).st_size == spare.exported
    except OSError:
        return False


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
        self._kept: list[Spare] = []  # exported segments, oldest first (see keep)
        self._wanted: list[int] = []
        self._used = time.monotonic()
        self._wake = threading.Condition(self._lock)
        self._allocating: list[int] = []  # sizes the preparing thread is allocating now
        self._allocated = threading.Condition(self._lock)
        self._to_populate: "queue.SimpleQueue[Spare]" = queue.SimpleQueue()
        self._pid = 0
        os.register_at_fork(after_in_child=self._forget)

    def take(self, size: int, recycle: bool = False) -> Spare | None:
        """A spare of ``size`` (the same number of pages), taken out of the pool, or None.

        With ``recycle``, a kept segment that is free again comes first (``recycled``: the
        caller holds its lock, writes it through its mapping, unlocks it and keeps it again or
        drops it, see :meth:`keep`). Otherwise the caller owns the spare's file from here on
        (renames, truncates, closes or keeps). If ``address`` is set, it copies into the
        mapping, else writes with ``pwrite``, and then calls :meth:`release` (or keeps it).

        If the preparing thread is allocating a spare of that size, waits for it (up to
        :data:`WAIT` seconds): allocating another one here at the same time would take
        longer, and use the memory twice."""
        deadline = time.monotonic() + WAIT
        with self._lock:
            if self._pid != os.getpid():
                return None
            kept = self._free_kept(size) if recycle else None
            if kept is not None:
                self._used = time.monotonic()
                return kept
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

    def _free_kept(self, size: int) -> Spare | None:
        """The oldest kept segment of ``size``'s pages whose receiver claimed it and that no
        process maps any more, locked (``LOCK_EX``) and taken out of the kept; or None.

        Every receiver takes ``LOCK_SH`` on its own open file description before it claims
        (see :func:`syftzmq.wire.shm._open`), and keeps it as long as it maps the pages; so the
        exclusive lock, taken after the claim, proves that nobody sees them."""
        for spare in self._kept:
            if _pages(spare.size) != _pages(size):
                continue
            # The claim first, without locking: an exclusive lock taken on a segment not claimed
            # yet, however briefly, would make its receiver, opening it at that moment, refuse
            # it as a stale reference (an 8 x 64 MiB queue of sends lost one that way).
            if not _claimed(spare):  # its receiver has not opened it yet (or never will)
                continue
            try:
                fcntl.flock(spare.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # mapped somewhere
            self._kept.remove(spare)
            spare.recycled = True
            return spare
        return None

    def keep(self, spare: Spare, exported: int, reference: str, sizes: Sequence[int]) -> None:
        """Keep ``spare``, just exported as ``reference`` with ``exported`` bytes, to write it
        again once its receiver is done with it (:meth:`take` with ``recycle``).

        Only the part sizes of the last export (``sizes``) are kept, :data:`KEEP` per part:
        back to back, the segment exported last is usually still mapped by its receiver (a
        worker unmaps a fetched copy only once the confirmation reached it), the one before
        is free. The older ones are dropped (their receiver holds its own descriptor)."""
        with self._lock:
            self._start_locked()
            spare.taken, spare.recycled = True, False
            spare.exported, spare.reference = exported, reference
            self._kept.append(spare)
            self._used = time.monotonic()
            allowed = collections.Counter({pages: count * KEEP for pages, count in
                                           collections.Counter(map(_pages, sizes)).items()})
            stale = []
            for kept in reversed(self._kept):  # the newest are kept
                if not _claimed(kept):
                    continue  # in flight: its receiver has yet to open it (see _drop_claimed)
                if allowed[_pages(kept.size)] > 0:
                    allowed[_pages(kept.size)] -= 1
                else:
                    stale.append(kept)
            self._drop_locked(stale)

    def _drop_claimed_locked(self) -> None:
        """Drop the kept segments their receivers claimed (idle). One not claimed yet is in
        flight — its receiver may still open it, as the export named it — and goes only when
        that export is given up (:meth:`discard_kept`, :func:`syftzmq.wire.shm.expire_own`)
        or at exit."""
        self._drop_locked([kept for kept in self._kept if _claimed(kept)])

    def discard_kept(self, reference: str) -> None:
        """The export that named a kept segment ``reference`` will not be taken (unsent,
        expired, its destination gone): unless its receiver claimed it, it is dropped."""
        with self._lock:
            for spare in self._kept:
                if spare.reference == reference:
                    if not _claimed(spare):
                        self._drop_locked([spare])
                    return

    def drop_taken(self, spare: Spare) -> None:
        """A recycled segment whose writing failed: dropped (its fd closed, its mapping
        unmapped); nobody was told of it."""
        with self._lock:
            spare.taken = True
            self._drop_locked([spare])

    def kept(self) -> list[str]:
        """The references of the kept segments, oldest first (for tests and checks)."""
        with self._lock:
            return [spare.reference for spare in self._kept]

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
            self._start_locked()
            self._wake.notify()

    def _start_locked(self) -> None:
        """The threads preparing spares (and dropping idle ones), once per process."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._files = []
            self._kept = []
            self._to_populate = queue.SimpleQueue()
            threading.Thread(target=self._prepare_forever, name="syftzmq-spares",
                             daemon=True).start()
            threading.Thread(target=self._populate_forever, name="syftzmq-spares-populate",
                             daemon=True).start()

    def drop(self) -> None:
        """Unlink every spare, and close every kept segment (at exit)."""
        with self._lock:
            self._drop_locked(self._files + self._kept)

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
                        self._drop_claimed_locked()
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
            if spare in self._kept:
                self._kept.remove(spare)

    def _forget(self) -> None:
        """In a forked child: the spares are the parent's (their mappings were not inherited);
        close the descriptors, which would keep their pages alive. No lock: another thread of
        the parent may have held it at the fork."""
        for spare in self._files + self._kept:
            try:
                os.close(spare.fd)
            except OSError:
                pass
        self._files = []
        self._kept = []
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
