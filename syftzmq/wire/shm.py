"""Bulk bytes between processes on one host through ``/dev/shm``, with ZMQ carrying the rest.

Over loopback TCP a 256 MiB frame crosses the kernel twice and is signed twice (HMAC-SHA256
runs at about 1.5 GB/s). Between processes of one user on one host, the sender instead writes
each large buffer into a shared-memory file (several, written at once, for a very large one;
prepared ahead where it can, see :mod:`.shm_spares`) and the signed message names it; the
receiver opens the file, locks it shared, unlinks it, and maps it: the received tensor lives in
those pages, which are freed with it. A worker sending such a tensor on lends the pages instead
of copying them (:mod:`.shm_map`).

Reuse — allocating fresh tmpfs pages is most of what a large send costs (about 80 ms of CPU per
256 MiB here, against 15 ms to copy into pages already mapped), so a large export's segments
stay open and mapped in the sender and are written again by a later export of the same size
once they are free (:mod:`.shm_spares`, "Kept segments"). What makes that safe is on the
receiving side, in :func:`_open`: every receiver takes ``flock(LOCK_SH)`` on its own open file
description first — held as long as it maps the pages or holds the descriptor, and never
released otherwise — and the first one *claims* the segment (announced one page longer than its
data, it truncates it to the data's size). The sender writes again only a claimed segment it
can lock exclusively. Peers that do not follow this rule never share memory with this one: see
:func:`namespace`.

Lifetime — no segment outlives its use, also when a process is killed:

- names carry the creator's pid: ``syftzmq-<pid>-<random>``;
- the receiver unlinks a segment as soon as it has opened (and locked) it, before reading it;
- a segment written again has no name at all (see above): its pages go with the last process
  that holds them;
- the creator unlinks, at exit and after :data:`MAX_AGE` seconds, any segment of its own that
  nobody took (the receiver died, or the message was dropped);
- every segment is recorded with its destination (a *tag*: the routing identity or
  incarnation it was written for) the moment it is created; a message that could not be sent
  discards its segments at once (:func:`syftzmq.wire.envelope.discard_unsent`), and a
  destination known to be gone has its segments discarded (:func:`discard_tagged`; a worker
  looks for requesters that went away on its tick: :func:`pending_tags`);
- whoever reaps a process (the launcher, after ``wait``) removes the segments that process
  created and can no longer remove itself: :func:`sweep_pid`; and a worker's tick removes,
  from time to time, the segments of creators that no longer exist (:func:`sweep_orphans`).

Authenticity: see SECURITY.md ("Shared-memory transfers"). In short, the segment is created
``O_EXCL`` with mode 0600, the receiver checks it is a regular file owned by its own uid with
no group/other permissions and of the announced size, and its name and size travel in the
HMAC-signed frames. Only the same user (or root) can write such a file — and they can read the
cluster key file as well, so signing the bytes would add no protection against them.
"""

from __future__ import annotations

import atexit
import ctypes
import fcntl
import mmap
import os
import re
import secrets
import stat
import threading
import time
from typing import Callable, Sequence


from ..core.processes import pid_namespace, process_exists
from ..errors import ProtocolError
from . import shm_map, shm_spares
from .shm_spares import UNCLAIMED_TAIL
from ..settings import SETTINGS

DIRECTORY = SETTINGS.shm_dir  # a worker's --shm-dir replaces it at start
THRESHOLD = SETTINGS.shm_threshold  # smaller buffers travel as frames
MAX_AGE = SETTINGS.shm_max_age
PREFIX = "syftzmq-"
_NAME = re.compile(r"^syftzmq-(\d+)-[0-9a-f]{32}$")
_SPARE = re.compile(r"^syftzmq-(\d+)-spare-[0-9a-f]{32}$")  # allocated ahead: shm_spares
# see shm_map; ``fdc-``: the lender keeps reading the pages, map them copy-on-write
_LENT = re.compile(r"^fd(?P<copy_on_write>c?)-(?P<pid>\d{1,10})-(?P<fd>\d{1,10})"
                   r"-(?P<inode>\d{1,20})$")
_CHUNK = 1 << 30  # bytes per write call (Linux caps one call below 2 GiB)
# A buffer this large is written as several segments, each by its own thread: tmpfs serializes
# writes to one file (inode lock), and the time goes into allocating pages, not copying bytes,
# so separate files written at once take 0.55-0.75x the time of one when a second core is
# free (256 MiB, micro-benchmark; with every core busy it measured the same as one file).
PARALLEL_MIN = SETTINGS.shm_parallel_min
WRITERS = max(1, min(4, os.cpu_count() or 1))
MAX_PARTS = 64  # per buffer, as received

_created: dict[str, tuple[float, object]] = {}  # name -> (created, destination tag)
_lock = threading.Lock()


def enabled() -> bool:
    """Shared memory is used unless ``SYFTZMQ_SHM=0`` or there is no ``/dev/shm``."""
    return SETTINGS.shm and os.path.isdir(DIRECTORY)


def namespace() -> str | None:
    """Which shared-memory filesystem this process sees; ``None`` if it uses none.

    Two processes exchange segments only when both see the same one, as the same user.
    Sharing loopback is not enough: containers on one host with host networking reach each
    other on 127.0.0.1 but each has its own ``/dev/shm``. A tmpfs's device number identifies
    its mount system-wide, so equal ``device:inode`` of the directory means the very same
    files; the uid is part of it because :func:`take` refuses another user's segment, and the
    pid namespace because a lent segment is named by its lender's pid (see :mod:`.shm_map`).
    """
    if not enabled():
        return None
    pids = pid_namespace()
    try:
        info = os.stat(DIRECTORY)
    except OSError:
        return None
    if pids is None:
        return None
    # ":claim": receivers lock and claim what they map (see _open); a peer that does not
    # must never get a segment that is written again, so it gets no shared memory at all
    return f"{info.st_dev}:{info.st_ino}:{os.getuid()}:{pids}:claim"


def shared_with(other: str | None) -> bool:
    """Whether a process whose :func:`namespace` is ``other`` sees this process's segments."""
    return other is not None and other == namespace()


def _path(name: str) -> str:
    return os.path.join(DIRECTORY, name)


def export(buffer: memoryview, tag: object = None) -> list[tuple[str, int]]:
    """Write ``buffer`` into segments; returns each one's reference and size, in order.

    A buffer its sender marked lendable that is exactly one mapping of received segments is not
    written: the references returned let the receiver map the same pages (:mod:`.shm_map`).
    Otherwise one segment, unless the buffer is at least :data:`PARALLEL_MIN` bytes: then one per writer
    thread, every part but the last a whole number of pages, so that :func:`take` can map them
    back to back. ``tag`` names the destination, so that :func:`discard_tagged` can remove what
    a peer that is gone never took.

    A large writable buffer (:func:`reusable`) is written into segments that stay mapped here
    and are kept to be written again by a later export once their receiver is done with them
    (:meth:`shm_spares.Spares.keep`): a segment written again is named by its descriptor here
    (``fd-<pid>-<fd>-<inode>``, like a lent one) and announced :data:`UNCLAIMED_TAIL` bytes
    long, which its receiver truncates away (:func:`_open`).
    """
    view = buffer.cast("B") if buffer.format != "B" or buffer.ndim != 1 else buffer
    lent = lent_references(view)
    if lent is not None:
        return lent
    expire_own()
    bounds = _split(view.nbytes, WRITERS if view.nbytes >= PARALLEL_MIN else 1)
    sizes = [end - start for start, end in bounds]
    source = shm_spares.buffer_address(view)
    reuse = reusable(view.nbytes) and source is not None
    files, references = _segments(sizes, tag, reuse)
    try:
        _in_parallel([lambda file=file, start=start, end=end:
                      _write_segment(file, view, start, end, source)
                      for file, (start, end) in zip(files, bounds)])
    except BaseException:
        _give_up(files, references)
        raise
    for file, reference, size in zip(files, references, sizes):
        _unlock(file)  # written: from here on its receiver may lock and map it
        if reuse:
            _spares.keep(file, size, reference, sizes)
        else:
            os.close(file.fd)
            _spares.release(file)  # handed over: the receiver owns these pages now
    if not all(file.recycled for file in files):
        _spares.want(sizes)  # written into new pages: the next export may need new ones too
    return [(reference, size) for reference, size in zip(references, sizes)]


_keeping = False


def keep_exports() -> None:
    """Keep large exports' segments to write them again (see :mod:`.shm_spares`).

    For clients, whose loops send one large tensor after another. A worker does not: its
    large exports are replies to requesters that may vanish at any moment, whose segments its
    housekeeping finds by name (:func:`pending_tags`) — and what it sends on it mostly lends.
    """
    global _keeping
    _keeping = True


def reusable(nbytes: int) -> bool:
    """Whether an export of ``nbytes`` keeps its segments to write them again: this process
    keeps them (:func:`keep_exports`) and the export is large enough that allocating its pages
    is what it costs."""
    return _keeping and shm_spares.MIN <= nbytes <= shm_spares.MAX


def _give_up(files: Sequence[shm_spares.Spare], references: Sequence[str]) -> None:
    """An export that failed: its segments are unlinked, or dropped if kept ones (nobody
    was told of them)."""
    for file, reference in zip(files, references):
        _unlock(file)
        _unlink(reference)
        if file.recycled:
            _spares.drop_taken(file)
        else:
            os.close(file.fd)
            _spares.release(file)


def _unlock(file: shm_spares.Spare) -> None:
    if file.recycled:
        fcntl.flock(file.fd, fcntl.LOCK_UN)


def _split(nbytes: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` page-aligned ``(start, end)`` ranges covering ``nbytes`` (fewer if small)."""
    step = -(-nbytes // parts // mmap.PAGESIZE) * mmap.PAGESIZE or mmap.PAGESIZE
    return [(start, min(start + step, nbytes)) for start in range(0, nbytes, step)] or [(0, 0)]


def _new_segment(kind: str = "") -> tuple[str, int]:
    """A new, empty segment (``kind`` ``"spare-"`` for a spare): its name and a descriptor."""
    name = f"{PREFIX}{os.getpid()}-{kind}{secrets.token_hex(16)}"
    return name, os.open(_path(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)


def _segments(sizes: Sequence[int], tag: object, reuse: bool
              ) -> tuple[list[shm_spares.Spare], list[str]]:
    """A segment for each size and how the receiver reaches it: with ``reuse``, a kept segment
    free again where there is one (named by its descriptor, still locked), else a spare where
    one of that size is ready, else a new one; each recorded with ``tag`` (see
    :func:`discard_tagged`). With ``reuse``, every segment is mapped here (it is written
    through the mapping, now and when it is reused) and announced as unclaimed."""
    files: list[shm_spares.Spare] = []
    references: list[str] = []
    try:
        for size in sizes:
            file = _spares.take(size, recycle=reuse)
            if file is None:
                file = shm_spares.Spare(*_new_segment(), size)
            elif not file.recycled:  # a spare becomes a segment like any other, named as one
                name = file.name.replace("-spare-", "-", 1)
                try:
                    os.rename(_path(file.name), _path(name))
                except OSError:
                    os.close(file.fd)
                    _spares.release(file)
                    _unlink_file(file.name)
                    raise
                file.name = name
            files.append(file)
            reference = f"fd-{os.getpid()}-{file.fd}-{file.inode}" if file.recycled else file.name
            references.append(reference)
            with _lock:
                _created[reference] = (time.monotonic(), tag)
            if reuse:
                os.ftruncate(file.fd, size + UNCLAIMED_TAIL)
                if not file.inode:
                    file.inode = os.fstat(file.fd).st_ino
                if not file.address and file.recycled:  # its pages exist: no SIGBUS
                    file.address = shm_map.map_file(file.fd, file.size)
            elif file.size != size:  # a spare of as many pages: the last one's tail differs
                os.ftruncate(file.fd, size)
    except BaseException:
        _give_up(files, references)
        for file in files[len(references):]:
            os.close(file.fd)
            _spares.release(file)
            _unlink_file(file.name)
        raise
    return files, references


def _write_segment(file: shm_spares.Spare, view: memoryview, start: int, end: int,
                   source: int | None) -> None:
    """Bytes ``[start, end)`` of ``view`` into ``file``: copied into its mapping if it is
    mapped here (a spare, or a kept segment: every page of either is allocated, so the copy
    cannot fault on a full ``/dev/shm``) and ``source`` (the address of ``view``) is known,
    else written."""
    if file.address and source is not None:
        ctypes.memmove(file.address, source + start, end - start)  # releases the GIL
        return
    written = 0
    while start + written < end:
        written += os.pwrite(file.fd, view[start + written:min(end, start + written + _CHUNK)],
                             written)


def _unlink_file(name: str) -> None:
    """Unlink ``name`` in :data:`DIRECTORY` if it is still there (nothing recorded).

    Another user's file (the directory is sticky) cannot be, and is left to its owner: a
    receiver that opened one refuses it on the uid check (:func:`_open`), which must not be
    pre-empted by a :class:`PermissionError` here."""
    try:
        os.unlink(_path(name))
    except (FileNotFoundError, PermissionError):
        pass


_spares = shm_spares.Spares(lambda: _new_segment("spare-"), _unlink_file)


def _in_parallel(calls: Sequence[Callable[[], object]]) -> None:
    """Run ``calls`` at once, the first in this thread; raise the first error once all ended.

    The calls are system calls that release the GIL (``write``), so they use as many
    cores as there are calls, whatever torch's thread setting (workers run torch on one).
    """
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException as exc:
            errors.append(exc)

    helpers = [threading.Thread(target=run, args=(call,), daemon=True) for call in calls[1:]]
    for helper in helpers:
        helper.start()
    run(calls[0])
    for helper in helpers:
        helper.join()  # a write or mmap call: it ends
    if errors:
        raise errors[0]


def take(parts: Sequence[tuple[str, int]]) -> memoryview:
    """Open the segments ``parts`` (name, size) — unlinking named ones — and return their
    bytes, mapped into this process back to back, as one buffer.

    A part is a segment's name in :data:`DIRECTORY`, or a segment another process lends:
    ``fd-<pid>-<fd>-<inode>`` (see :mod:`syftzmq.wire.shm_map`)."""
    if not isinstance(parts, (list, tuple)) or not 1 <= len(parts) <= MAX_PARTS:
        raise ProtocolError(f"bad shared-memory reference {parts!r:.80}")
    sizes = [size for _, size in parts]
    if not all(type(size) is int and size >= 0 for size in sizes):
        raise ProtocolError(f"bad shared-memory sizes {sizes!r:.80}")
    if any(size % mmap.PAGESIZE or size == 0 for size in sizes[:-1]):
        raise ProtocolError("shared-memory parts are not whole pages")
    opened: list[tuple[int, int, int]] = []
    try:
        for name, size in parts:
            opened.append(_open(name, size))
    except BaseException:
        for fd, _, _ in opened:
            os.close(fd)
        raise
    if sum(sizes) == 0:
        for fd, _, _ in opened:
            os.close(fd)
        return memoryview(bytearray())
    # Mapped rather than copied: the tensor is rebuilt over these pages (unlinked, so they are
    # freed with it); a large mapping's pages are faulted in on a thread (see shm_map.Mapping).
    # Pages their lender keeps reading are mapped copy-on-write: writes here stay here.
    copy_on_write = any(name.startswith("fdc-") for name, _ in parts)  # (names checked above)
    return shm_map.Mapping(opened, copy_on_write=copy_on_write).buffer()


def _open(name: str, size: int) -> tuple[int, int, int]:
    """Open the segment ``name``, lock it shared, unlink it, check that it is ours to read,
    and claim it if it is announced unclaimed; returns its fd, size and inode.

    The shared lock (``flock``) belongs to the open file description, which the mapping made
    of it keeps: it lasts exactly as long as this process maps the pages or holds the
    descriptor, also through ``kill -9``. The exporter writes a kept segment again only once
    it was claimed and no such lock is left (:mod:`.shm_spares`); so the lock is taken before
    the claim, and a segment locked exclusively (its exporter is writing it again: this
    reference is stale) is refused."""
    if not isinstance(name, str) or type(size) is not int or size < 0:
        raise ProtocolError(f"bad shared-memory reference {name!r:.80}")
    lent = _LENT.match(name)
    if not lent and not _NAME.match(name):
        raise ProtocolError(f"bad shared-memory reference {name!r:.80}")
    path = f"/proc/{lent['pid']}/fd/{lent['fd']}" if lent else _path(name)
    try:  # a lent descriptor is a link to an unlinked file: it must be followed
        fd = os.open(path, os.O_RDWR if lent else os.O_RDWR | os.O_NOFOLLOW)
    except OSError as exc:
        raise ProtocolError(f"shared-memory segment {name} cannot be opened: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            raise ProtocolError(f"shared-memory segment {name} is being written again by its "
                                f"owner (a stale reference): rejected") from None
        if not lent:
            _unlink_file(name)  # from here on, no process can leave it behind
        info = os.fstat(fd)
        unclaimed = info.st_size == size + UNCLAIMED_TAIL
        if (not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid()
                or info.st_mode & 0o077 or (info.st_size != size and not unclaimed)):
            raise ProtocolError(f"shared-memory segment {name} is not a private file of this "
                                f"user with {size} bytes: rejected")
        if lent and (info.st_nlink != 0 or info.st_ino != int(lent['inode'])
                     or info.st_dev != _device()):
            raise ProtocolError(f"lent shared-memory segment {name} is not an unlinked segment "
                                f"of {DIRECTORY} with that inode: rejected")
        if unclaimed:
            os.ftruncate(fd, size)  # the claim: its exporter may reuse it once we unlock
    except BaseException:
        os.close(fd)
        raise
    return fd, size, info.st_ino


def _device() -> int:
    return os.stat(DIRECTORY).st_dev


def lent_references(buffer: memoryview) -> list[tuple[str, int]] | None:
    """How the receiver maps ``buffer`` without a copy, if its sender marked it lendable
    (:func:`syftzmq.wire.serde.lend`) and it is exactly one mapping of received segments."""
    exporter = buffer
    while isinstance(exporter, memoryview):
        exporter = exporter.obj
    if not getattr(exporter, "_lend", False):
        return None
    mapping = shm_map.mapping_at(ctypes.addressof(exporter), buffer.nbytes)
    return None if mapping is None else mapping.references(
        copy_on_write=getattr(exporter, "_lender_keeps", False))


def discard(name: str) -> None:
    """Unlink a segment named in a message that will not be read (only syftzmq names, and
    this process's own descriptors)."""
    if isinstance(name, str) and (_NAME.match(name) or _own_descriptor(name)):
        _unlink(name)


def _own_descriptor(name: str) -> bool:
    lent = _LENT.match(name)
    return lent is not None and int(lent['pid']) == os.getpid()


def _unlink(name: str) -> None:
    """Unlink a segment this process created (a kept one not claimed yet is dropped: see
    :meth:`shm_spares.Spares.discard_kept`), and forget it."""
    with _lock:
        _created.pop(name, None)
    _spares.discard_kept(name)
    if not _LENT.match(name):
        _unlink_file(name)


def expire_own(max_age: float = MAX_AGE, now: float | None = None) -> None:
    """Unlink segments this process made that nobody took within ``max_age`` seconds."""
    now = time.monotonic() if now is None else now
    with _lock:
        stale = [name for name, (born, _) in _created.items() if now - born > max_age]
    for name in stale:
        _unlink(name)


def pending_tags(older_than: float, now: float | None = None) -> set:
    """The destinations of segments this process made more than ``older_than`` seconds ago
    that are still untaken (their receiver is slow, or gone)."""
    now = time.monotonic() if now is None else now
    with _lock:
        return {dest for born, dest in _created.values()
                if dest is not None and now - born > older_than}


def sweep_orphans(min_age: float = 10.0) -> int:
    """Remove segments whose creator process no longer exists, written ``min_age`` seconds
    ago or more (a live creator removes its own); returns how many.

    A creator killed while writing, or before it sent the message naming its segments,
    leaves them behind with nobody to take them. ``min_age`` keeps this away from segments in
    flight: a process in another pid namespace that shares this directory looks dead here.
    """
    try:
        names = os.listdir(DIRECTORY)
    except OSError:
        return 0
    removed = 0
    now = time.time()
    for name in names:
        match = _NAME.match(name) or _SPARE.match(name)
        if not match or process_exists(int(match.group(1))):
            continue
        try:
            if now - os.stat(_path(name), follow_symlinks=False).st_mtime >= min_age:
                os.unlink(_path(name))
                removed += 1
        except OSError:  # gone meanwhile, or another user's (the directory is sticky)
            pass
    return removed


def discard_tagged(tag: object) -> None:
    """Unlink the segments made for ``tag`` that it has not taken (it is gone, or closed)."""
    with _lock:
        names = [name for name, (_, dest) in _created.items() if dest == tag]
    for name in names:
        _unlink(name)


def unlink_own() -> None:
    """Unlink every segment this process made and nobody took, spares too (at exit)."""
    _spares.drop()
    with _lock:
        names = list(_created)
    for name in names:
        _unlink(name)


def sweep_pid(pid: int) -> int:
    """Remove segments created by ``pid``, a process that has exited; returns how many."""
    removed = 0
    try:
        names = os.listdir(DIRECTORY)
    except OSError:
        return 0
    for name in names:
        match = _NAME.match(name) or _SPARE.match(name)
        if match and int(match.group(1)) == pid:
            try:
                os.unlink(_path(name))
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def segments_of(pids: Sequence[int], spares: bool = False) -> list[str]:
    """Names of the segments in ``/dev/shm`` created by ``pids`` (for tests and checks); with
    ``spares``, of their spares too (see :mod:`.shm_spares`)."""
    wanted = {str(pid) for pid in pids}
    try:
        names = os.listdir(DIRECTORY)
    except OSError:
        return []
    return [n for n in names if (m := _NAME.match(n) or (spares and _SPARE.match(n)))
            and m.group(1) in wanted]


atexit.register(unlink_own)
