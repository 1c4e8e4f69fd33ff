"""Shared-memory segments prepared ahead of the next large export, off its critical path.

Writing into a fresh tmpfs file is mostly the kernel allocating its pages (256 MiB: about
110 ms into fresh pages against 12 ms into allocated ones, on a quiet machine here). After each
large export, a thread of this process prepares segments of the same part sizes for the next
export of those sizes:

- every spare is allocated (``fallocate``), so writing it can never hit a full ``/dev/shm``;
- a spare of at least :data:`MAPPED_MIN` bytes is then also mapped here and its pages faulted
  in, a chunk at a time: the export copies into it with a plain ``memcpy`` (which releases the
  GIL, one thread per part), about 0.6x the time of ``pwrite`` into the allocated file
  (measured interleaved, 64 and 256 MiB, loaded machine). A spare taken before its pages are
  all in is written with ``pwrite`` like an unmapped one, and the thread preparing it unmaps it.

Ownership of a spare's mapping is decided under the lock: the preparing thread owns it until
the spare is *populated*; afterwards whoever takes the spare (an export, which unmaps it as soon
as it has copied: the receiver owns the pages then) or drops it. Mappings are not inherited by a
fork (``MADV_DONTFORK``) and a forked child closes the spares' descriptors it inherited: it must
not keep pages its parent hands over.

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
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from . import shm_map

MIN = 8 << 20  # exports this large (all parts together) are followed by preparing spares
MAX = 1 << 30
MAPPED_MIN = 8 << 20  # spares this large are mapped and populated here (see the docstring)
IDLE = 30.0
_POPULATE_CHUNK = 8 << 20  # pages faulted in between two looks at whether the spare was taken


@dataclass(eq=False)
class Spare:
    """One prepared segment. ``address`` is nonzero only for the one that may copy into it:
    the exporter that took it populated (see :meth:`Spares.take`)."""

    name: str
    fd: int
    size: int
    address: int = 0
    populated: bool = False
    taken: bool = False


def _pages(size: int) -> int:
    return -(-size // mmap.PAGESIZE)


class Spares:
    """The spares of one process. ``create`` makes a new, empty spare file (name, descriptor);
    ``remove`` unlinks one by name."""

    def __init__(self, create: Callable[[], tuple[str, int]], remove: Callable[[str], None]) -> None:
        self._create = create
        self._remove = remove
        self._lock = threading.Lock()
        self._files: list[Spare] = []
        self._wanted: list[int] = []
        self._used = time.monotonic()
        self._wake = threading.Condition(self._lock)
        self._pid = 0
        os.register_at_fork(after_in_child=self._forget)

    def take(self, size: int) -> Spare | None:
        """A spare of ``size`` (the same number of pages), taken out of the pool, or None.

        Its ``address`` is set if it is populated: the caller then owns that mapping, copies
        into it and must unmap it (:func:`syftzmq.wire.shm_map.unmap_later`). Either way the
        caller owns the file (renames, truncates to ``size`` and closes it)."""
        with self._lock:
            if self._pid != os.getpid():
                return None
            spare = next((f for f in self._files if _pages(f.size) == _pages(size)), None)
            if spare is None:
                return None
            self._files.remove(spare)
            self._used = time.monotonic()
            spare.taken = True
            if not spare.populated:
                spare.address = 0  # still being prepared: its preparer unmaps it
            return spare

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
                threading.Thread(target=self._prepare_forever, name="syftzmq-spares",
                                 daemon=True).start()
            self._wake.notify()

    def drop(self) -> None:
        """Unlink every spare (at exit)."""
        with self._lock:
            self._drop_locked(self._files)

    def sizes(self, populated: bool = False) -> list[int]:
        """The sizes of the spares there are now, or of those mapped and populated (for tests
        and checks)."""
        with self._lock:
            return sorted(f.size for f in self._files if f.populated or not populated)

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
            for size in missing:
                if not self._prepare(size):
                    break

    def _prepare(self, size: int) -> bool:
        try:
            name, fd = self._create()
        except OSError:
            return False
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError:  # /dev/shm full: no spare
            os.close(fd)
            self._remove(name)
            return False
        spare = Spare(name, fd, size)
        if size >= MAPPED_MIN:
            try:
                spare.address = shm_map.map_file(fd, size)
            except OSError:
                pass
        with self._lock:
            if self._pid != os.getpid():  # forked meanwhile: not this process's
                return False
            self._files.append(spare)
        if spare.address:
            self._populate(spare)
        return True

    def _populate(self, spare: Spare) -> None:
        """Fault the spare's pages in, a chunk at a time, until done or taken."""
        address = spare.address
        done = 0
        while done < spare.size:
            with self._lock:
                if spare.taken:
                    break
            chunk = min(_POPULATE_CHUNK, spare.size - done)
            if not shm_map.populate(address + done, chunk):
                break
            done += chunk
        with self._lock:
            if done == spare.size and not spare.taken:
                spare.populated = True  # from here on, its taker owns the mapping
                return
            spare.address = 0
        shm_map.unmap(address, spare.size)

    # ------------------------------------------------------------------ dropping
    def _drop_locked(self, spares: Sequence[Spare]) -> None:
        for spare in list(spares):
            spare.taken = True
            if spare.populated and spare.address:
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
        self._lock = threading.Lock()  # a copy of a lock held at the fork stays held
        self._wake = threading.Condition(self._lock)


def buffer_address(view: memoryview) -> int | None:
    """The address of a writable contiguous buffer's bytes (None for a read-only one)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(view))
    except (TypeError, ValueError):
        return None
