"""Whether a process still exists, for the sweeps that remove what a killed process left."""

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
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return True
