"""Processes as /proc tells of them: whether one still exists (for the sweeps that remove what
a killed process left), its state, and this process's pid namespace."""

from __future__ import annotations

import os

PID_MAX_LIMIT = 1 << 22  # Linux never hands out a larger pid (pid_max is at most this)


def process_exists(pid: int) -> bool:
    """Whether ``pid`` names a process that has not exited: another user's counts (it exists),
    a zombie does not (it has exited; only its parent has not reaped it yet). A number no
    process can have (read from a file name anyone can make) is no process: never an error."""
    if not 0 < pid <= PID_MAX_LIMIT:  # (0 and negatives would signal process groups)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, someone else's
        return True
    return process_state(pid) != "Z"


def process_state(pid: int) -> str | None:
    """The state letter ``/proc`` gives ``pid`` (``T``: stopped by a signal, ``Z``: exited,
    not reaped yet), or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return None


def pid_namespace() -> int | None:
    """This process's pid namespace (its inode), or None without ``/proc``: pids name the
    same processes only within one."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
