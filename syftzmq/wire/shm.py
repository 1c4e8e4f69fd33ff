"""Bulk bytes between processes on one host through ``/dev/shm``, with ZMQ carrying the rest.

Over loopback TCP a 256 MiB frame crosses the kernel twice and is signed twice (HMAC-SHA256
runs at about 1.5 GB/s). Between processes of one user on one host, the sender instead writes
each large buffer into a fresh shared-memory file and the signed message names it; the
receiver opens the file, unlinks it at once, and maps it: the received tensor lives in those
pages, which are freed with it.

Lifetime — no segment outlives its use, also when a process is killed:

- names carry the creator's pid: ``syftzmq-<pid>-<random>``;
- the receiver unlinks a segment as soon as it has opened it (before reading it);
- the creator unlinks, at exit and after :data:`MAX_AGE` seconds, any segment of its own that
  nobody took (the receiver died, or the message was dropped);
- whoever reaps a process (the launcher, after ``wait``) removes the segments that process
  created and can no longer remove itself: :func:`sweep_pid`.

Authenticity: see SECURITY.md ("Shared-memory transfers"). In short, the segment is created
``O_EXCL`` with mode 0600, the receiver checks it is a regular file owned by its own uid with
no group/other permissions and of the announced size, and its name and size travel in the
HMAC-signed frames. Only the same user (or root) can write such a file — and they can read the
cluster key file as well, so signing the bytes would add no protection against them.
"""

from __future__ import annotations

import atexit
import mmap
import os
import re
import secrets
import stat
import threading
import time
from typing import Sequence


from ..errors import ProtocolError

DIRECTORY = "/dev/shm"
THRESHOLD = int(os.environ.get("SYFTZMQ_SHM_THRESHOLD", str(1 << 20)))  # smaller: frames
MAX_AGE = float(os.environ.get("SYFTZMQ_SHM_MAX_AGE", "120"))
PREFIX = "syftzmq-"
_NAME = re.compile(r"^syftzmq-(\d+)-[0-9a-f]{32}$")
_CHUNK = 1 << 30  # bytes per write call (Linux caps one call below 2 GiB)

_created: dict[str, tuple[float, str | None]] = {}  # name -> (created, destination tag)
_lock = threading.Lock()


def enabled() -> bool:
    """Shared memory is used unless ``SYFTZMQ_SHM=0`` or there is no ``/dev/shm``."""
    return os.environ.get("SYFTZMQ_SHM", "1") != "0" and os.path.isdir(DIRECTORY)


def _path(name: str) -> str:
    return os.path.join(DIRECTORY, name)


def export(buffer: memoryview, tag: str | None = None) -> tuple[str, int]:
    """Write ``buffer`` into a new segment; returns its name and size.

    ``tag`` names the destination, so that :func:`discard_tagged` can remove what a peer that
    is gone never took.
    """
    expire_own()
    name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(16)}"
    view = buffer.cast("B") if buffer.format != "B" or buffer.ndim != 1 else buffer
    fd = os.open(_path(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    with _lock:
        _created[name] = (time.monotonic(), tag)
    try:
        written = 0
        while written < view.nbytes:
            written += os.write(fd, view[written:written + _CHUNK])
    except BaseException:
        _unlink(name)
        raise
    finally:
        os.close(fd)
    return name, view.nbytes


def take(name: str, size: int) -> memoryview:
    """Open and unlink the segment ``name``; returns its bytes, mapped into this process."""
    if not isinstance(name, str) or not _NAME.match(name) or type(size) is not int or size < 0:
        raise ProtocolError(f"bad shared-memory reference {name!r:.80}")
    try:
        fd = os.open(_path(name), os.O_RDWR | os.O_NOFOLLOW)
    except OSError as exc:
        raise ProtocolError(f"shared-memory segment {name} cannot be opened: {exc.strerror}") from None
    try:
        _unlink(name)  # from here on, no process can leave it behind
        info = os.fstat(fd)
        if (not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid()
                or info.st_mode & 0o077 or info.st_size != size):
            raise ProtocolError(f"shared-memory segment {name} is not a private file of this "
                                f"user with {size} bytes: rejected")
        if size == 0:
            return memoryview(bytearray())
        # Map it rather than copy it: the tensor is rebuilt over these pages (unlinked, so
        # they are freed with the tensor). MAP_POPULATE maps every page now, so the memory
        # shows in this process's RSS like any other received tensor, for a fraction of a copy.
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        return memoryview(mmap.mmap(fd, size, flags=flags,
                                    prot=mmap.PROT_READ | mmap.PROT_WRITE))
    finally:
        os.close(fd)


def discard(name: str) -> None:
    """Unlink a segment named in a message that will not be read (only syftzmq names)."""
    if isinstance(name, str) and _NAME.match(name):
        _unlink(name)


def _unlink(name: str) -> None:
    with _lock:
        _created.pop(name, None)
    try:
        os.unlink(_path(name))
    except FileNotFoundError:
        pass


def expire_own(max_age: float = MAX_AGE, now: float | None = None) -> None:
    """Unlink segments this process made that nobody took within ``max_age`` seconds."""
    now = time.monotonic() if now is None else now
    with _lock:
        stale = [name for name, (born, _) in _created.items() if now - born > max_age]
    for name in stale:
        _unlink(name)


def discard_tagged(tag: str) -> None:
    """Unlink the segments made for ``tag`` that it has not taken (it is gone, or closed)."""
    with _lock:
        names = [name for name, (_, dest) in _created.items() if dest == tag]
    for name in names:
        _unlink(name)


def unlink_own() -> None:
    """Unlink every segment this process made and nobody took (at exit)."""
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
        match = _NAME.match(name)
        if match and int(match.group(1)) == pid:
            try:
                os.unlink(_path(name))
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def segments_of(pids: Sequence[int]) -> list[str]:
    """Names of the segments in ``/dev/shm`` created by ``pids`` (for tests and checks)."""
    wanted = {str(pid) for pid in pids}
    try:
        names = os.listdir(DIRECTORY)
    except OSError:
        return []
    return [n for n in names if (m := _NAME.match(n)) and m.group(1) in wanted]


atexit.register(unlink_own)
