"""Received shared-memory segments, mapped into this process, and how their pages are lent on.

A received tensor lives in the pages of the segments it arrived in (see :mod:`syftzmq.wire.shm`).
A :class:`Mapping` owns those pages: the address range they are mapped at and, in a process that
lends (a worker, :func:`keep_for_lending`), the segments' open file descriptors. The segment
files are unlinked, so the descriptors are the only way left to reach the pages: another
process of the same user opens ``/proc/<pid>/fd/<fd>`` and maps the very same pages. That is how
a worker hands a tensor to a peer (a move) or to a client (a get) without copying it: the
sender names its descriptors instead of writing a new segment (:meth:`Mapping.references`),
the receiver checks and maps them like any segment, and the sender drops its own reference
once the receiver has confirmed. Until the last process unmaps them, the pages stay; after, the
kernel frees them — no file is ever left behind, whoever is killed.

Every process that maps a segment holds a shared ``flock`` on its own open file description
(taken when it opened the segment, see :func:`syftzmq.wire.shm._open`); a mapping keeps that
description, so the lock lasts exactly as long as this process maps the pages (closing the
descriptor after mapping keeps it; :meth:`Mapping.make_private` and the unmap end it). That is
what tells the segment's original sender when it may write the pages again (see
:mod:`syftzmq.wire.shm_spares`, "Kept segments"), and why a lender keeps its descriptor, and
so its lock, until its receiver has confirmed: while pages are handed on, some process holds
a lock at every moment.

Lending is decided per message by the worker, which knows whether anything else there shares
the tensor's memory (see :mod:`syftzmq.worker.handover`); a buffer whose memory is not exactly
one whole mapping is never lent. Should something of the lender still see the pages after a
hand-over, :meth:`Mapping.make_private` gives it a private copy first.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import queue
import resource
import threading
import weakref
from typing import Iterator, Sequence

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.mremap.restype = ctypes.c_void_p
_libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int,
                         ctypes.c_void_p]
_MAP_FIXED = 0x10  # Linux (x86, arm, riscv, power, s390); Python's mmap does not export it
_MREMAP_MAYMOVE, _MREMAP_FIXED = 1, 2
_PROT_NONE = 0
_RW = mmap.PROT_READ | mmap.PROT_WRITE
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
_MAP_FAILED = ctypes.c_void_p(-1).value
_MADV_DONTFORK = getattr(mmap, "MADV_DONTFORK", 10)
_MADV_POPULATE_READ, _MADV_POPULATE_WRITE = 22, 23  # Linux 5.14; older kernels: EINVAL
POPULATE_LATER_MIN = 8 << 20  # mappings this large are faulted in on a thread (see Mapping)
_POPULATE_CHUNK = 8 << 20

_lending = False
_kept = 0  # descriptors held open by live mappings
_lent = 0  # buffers handed on by reference instead of being copied
_max_kept = 0
_by_base: "weakref.WeakValueDictionary[int, Mapping]" = weakref.WeakValueDictionary()
_lock = threading.Lock()


def keep_for_lending() -> None:
    """Keep received segments' descriptors open, so that their pages can be lent on.

    For workers: they know every reference to what they store. A client never lends (its
    user's code may hold views), so it closes them at once. Up to half of the descriptor limit
    (raised to its hard limit here) is used; beyond, segments are received as before and are
    copied when sent on.
    """
    global _lending, _max_kept
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    _max_kept = max(0, (soft if soft != resource.RLIM_INFINITY else 1 << 16) // 2 - 64)
    _lending = True


def lending() -> bool:
    return _lending


def _libc_mmap(address: int | None, size: int, prot: int, flags: int, fd: int) -> int:
    """``mmap(2)`` at a chosen address, which Python's :mod:`mmap` cannot do."""
    result = _libc.mmap(address, size, prot, flags, fd, 0)
    if result is None or result == _MAP_FAILED or (address is not None and result != address):
        error = ctypes.get_errno()
        raise OSError(error, f"mmap of {size} bytes failed: {os.strerror(error)}")
    return result


def map_file(fd: int, size: int) -> int:
    """Map ``size`` bytes of the file ``fd`` shared and writable, not inherited by a fork (a
    child must not keep pages this process hands over); returns the address."""
    address = _libc_mmap(None, size, _RW, mmap.MAP_SHARED, fd)
    _libc.madvise(ctypes.c_void_p(address), ctypes.c_size_t(size), _MADV_DONTFORK)
    return address


def populate(address: int, size: int) -> bool:
    """Fault in ``[address, address + size)`` of a shared mapping for writing (the kernel
    allocates and zeroes what a file's pages lack); False if the kernel cannot."""
    return _libc.madvise(ctypes.c_void_p(address), ctypes.c_size_t(size),
                         _MADV_POPULATE_WRITE) == 0


def unmap(address: int, size: int) -> None:
    _libc.munmap(ctypes.c_void_p(address), ctypes.c_size_t(size))


class Mapping:
    """Segments mapped back to back in one reserved address range; unmapped, and their
    descriptors closed, when the last buffer over it is dropped.

    ``parts`` are ``(fd, size, inode)``; the descriptors become this object's (they are closed
    here, at once unless kept for lending). One after the other: ``mmap`` takes the address
    space's lock for writing, so populating from several threads measured no faster.

    A small mapping is populated as it is made (``MAP_POPULATE``); one of
    :data:`POPULATE_LATER_MIN` bytes or more is faulted in on a thread of its own
    (:func:`_populate_soon`), so that the message it arrived in is handled (and answered)
    without waiting for that: 256 MiB take 10-50 ms to fault in here, and the receiver of a
    move or a send may never touch most of them (a move lends them on). Measured interleaved
    (two workers, one session, loaded machine): send 256 MiB 0.7-0.8x, get 256 MiB
    0.05-0.15x; a first full read right after a get 1.2-1.3x (it faults in what the thread
    has not reached yet), the three together 0.9x. The pages show in the process's RSS once
    faulted in.
    """

    def __init__(self, parts: Sequence[tuple[int, int, int]], copy_on_write: bool = False) -> None:
        """``copy_on_write``: pages their lender keeps reading (see
        :mod:`syftzmq.worker.handover`): mapped private, so that a write here copies the page
        instead of reaching the lender; faulted in for reading (``MAP_POPULATE`` would copy
        them all), and never lent on (the file does not have what was written here)."""
        self.size = sum(size for _, size, _ in parts)
        self.base = 0
        self._parts: list[tuple[int, int, int]] = []
        self._populating: _Populating | None = None
        later = self.size >= POPULATE_LATER_MIN
        sharing = mmap.MAP_PRIVATE if copy_on_write else mmap.MAP_SHARED
        populate = 0 if later or copy_on_write else _POPULATE
        try:
            self.base = _libc_mmap(None, self.size, _PROT_NONE,
                                   mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
            offset = 0
            for fd, size, _ in parts:
                _libc_mmap(self.base + offset, size, _RW, sharing | _MAP_FIXED | populate, fd)
                offset += size
        except BaseException:
            for fd, _, _ in parts:
                os.close(fd)
            raise
        if copy_on_write and not later:
            _libc.madvise(ctypes.c_void_p(self.base), ctypes.c_size_t(self.size),
                          _MADV_POPULATE_READ)  # an older kernel refuses: faulted in on use
        self._keep(parts, lendable=not copy_on_write)
        self._populating = _populate_soon(self.base, self.size) if later else None

    def _keep(self, parts: Sequence[tuple[int, int, int]], lendable: bool = True) -> None:
        global _kept
        with _lock:
            keep = lendable and _lending and _kept + len(parts) <= _max_kept
            if keep:
                _kept += len(parts)
                self._parts = list(parts)
                _by_base[self.base] = self
        if not keep:
            for fd, _, _ in parts:
                os.close(fd)

    def buffer(self) -> memoryview:
        """A writable view of the whole range that keeps this mapping alive."""
        raw = (ctypes.c_char * self.size).from_address(self.base)
        raw._owner = self
        return memoryview(raw).cast("B")

    def references(self, copy_on_write: bool = False) -> list[tuple[str, int]] | None:
        """How another process reaches these pages (``fd-<pid>-<fd>-<inode>``, size per part;
        ``fdc-`` with ``copy_on_write``: this process keeps reading them, the receiver maps
        them private), or ``None`` if this mapping no longer holds its descriptors."""
        global _lent
        with _lock:
            parts = list(self._parts)
            if not parts:
                return None
            _lent += 1
        pid = os.getpid()
        kind = "fdc" if copy_on_write else "fd"
        return [(f"{kind}-{pid}-{fd}-{inode}", size) for fd, size, inode in parts]

    def make_private(self) -> None:
        """Replace the shared pages under this range by a private copy, at the same addresses.

        For a lender that still holds something over the pages after handing them on: what it
        keeps must not see the receiver's writes. The copy goes into fresh anonymous memory,
        which is then moved over the range in one ``mremap``; the descriptors are closed.
        """
        copy = _libc_mmap(None, self.size, _RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
        _stop(self._populating, unmapping=False)  # a chunk in flight faults in the copy: harmless
        ctypes.memmove(copy, self.base, self.size)
        moved = _libc.mremap(copy, self.size, self.size, _MREMAP_MAYMOVE | _MREMAP_FIXED,
                             self.base)
        if moved is None or moved == _MAP_FAILED:
            error = ctypes.get_errno()
            _libc.munmap(ctypes.c_void_p(copy), ctypes.c_size_t(self.size))
            raise OSError(error, f"mremap failed: {os.strerror(error)}")
        self._release()

    def _release(self) -> None:
        global _kept
        with _lock:
            parts, self._parts = self._parts, []
            _kept -= len(parts)
            if _by_base.get(self.base) is self:
                del _by_base[self.base]
        for fd, _, _ in parts:
            os.close(fd)

    def __del__(self) -> None:
        self._release()
        if _stop(self._populating, unmapping=True):
            return  # unmapped by the populating thread, within one chunk
        if self.base and _deferring:
            unmap_later(self.base, self.size)
        elif self.base:
            unmap(self.base, self.size)


_deferring = 0


@contextlib.contextmanager
def deferred_unmaps() -> Iterator[None]:
    """Mappings dropped inside unmap on a thread of their own (see :func:`unmap_later`).

    For a worker dropping what another request only ended the life of (a get's held copy when
    its requester confirms, a move's source copy): that request must not wait for the pages to
    be freed. Anything else — a delete, above all — unmaps at once, so the memory is back when
    its answer leaves.
    """
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1


_unmapping: "queue.SimpleQueue[tuple[int, int]]" = queue.SimpleQueue()
_unmapper_pid = 0


def unmap_later(base: int, size: int) -> None:
    """Unmap ``[base, base + size)`` on a thread of its own.

    The last unmap of a segment's pages frees them, which costs tens of ms for 256 MiB: done
    where the tensor died — a worker's loop handling a confirmation that rode on the next
    request — it would delay that request. Even an unmap that frees nothing (a sender's mapping
    of a segment it handed over) costs about 25 ms for 256 MiB on a loaded machine here.
    ``munmap`` releases the GIL (a ctypes call), so the thread frees while the caller goes on.
    """
    global _unmapper_pid
    _unmapping.put((base, size))
    if _unmapper_pid != os.getpid():  # first use in this process (a forked worker has none)
        with _lock:
            if _unmapper_pid != os.getpid():
                threading.Thread(target=_unmap_forever, name="syftzmq-unmap", daemon=True).start()
                _unmapper_pid = os.getpid()


def _unmap_forever() -> None:
    while True:
        base, size = _unmapping.get()
        unmap(base, size)


class _Populating:
    """A mapping's pages being faulted in on the populating thread.

    ``busy`` while a chunk is faulted in (outside the lock: whoever stops the job must not
    wait for it); ``cancelled`` once the mapping is unmapped or replaced; ``unmap`` if it was
    dropped during a chunk: the populating thread unmaps it when the chunk is done (the
    range must not be unmapped, and reused by another mapping, while it is faulted in).
    """

    __slots__ = ("base", "size", "cancelled", "busy", "unmap")

    def __init__(self, base: int, size: int) -> None:
        self.base, self.size = base, size
        self.cancelled = self.busy = self.unmap = False


_populate_lock = threading.Lock()
_populating: "queue.SimpleQueue[_Populating]" = queue.SimpleQueue()
_populator_pid = 0


def _populate_soon(base: int, size: int) -> _Populating:
    """Fault ``[base, base + size)`` in on a thread of its own, a chunk at a time, unless
    cancelled. The thread holds no reference to the mapping: what holds it is what uses it."""
    global _populator_pid
    job = _Populating(base, size)
    _populating.put(job)
    if _populator_pid != os.getpid():
        with _lock:
            if _populator_pid != os.getpid():
                threading.Thread(target=_populate_forever, name="syftzmq-populate",
                                 daemon=True).start()
                _populator_pid = os.getpid()
    return job


def _populate_forever() -> None:
    while True:
        job = _populating.get()
        for done in range(0, job.size, _POPULATE_CHUNK):
            with _populate_lock:
                if job.cancelled:
                    break
                job.busy = True
            _libc.madvise(ctypes.c_void_p(job.base + done),
                          ctypes.c_size_t(min(_POPULATE_CHUNK, job.size - done)),
                          _MADV_POPULATE_READ)
            with _populate_lock:
                job.busy = False
                unmap_now = job.unmap
            if unmap_now:
                unmap(job.base, job.size)
                break


def _stop(job: _Populating | None, unmapping: bool) -> bool:
    """Stop populating ``job``; True if its thread is inside a chunk and, as ``unmapping``
    asks, will unmap the range itself once that chunk is done. Never waits."""
    if job is None:
        return False
    with _populate_lock:
        job.cancelled = True
        job.unmap = unmapping and job.busy
        return job.unmap


def mapping_at(address: int, nbytes: int) -> Mapping | None:
    """The lendable mapping that is exactly ``[address, address + nbytes)``, if any."""
    mapping = _by_base.get(address)
    if mapping is None or mapping.size != nbytes:
        return None
    return mapping


def counts() -> dict:
    """Segment descriptors held open now, and buffers lent so far (a worker's PING answer)."""
    return {"shm_descriptors": _kept, "shm_lent": _lent}
