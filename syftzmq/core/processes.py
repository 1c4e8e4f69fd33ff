"""Whether a process still exists, for the sweeps that remove what a killed process left."""

from __future__ import annotations

import os


def process_exists(pid: int) -> bool:
    """Whether ``pid`` names a process that has not exited: another user's counts (it exists),
    a zombie does not (it has exited; only its parent has not reaped it yet)."""
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
