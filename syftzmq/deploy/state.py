"""The supervisor's state file: how ``cluster status`` and ``cluster down`` find a running ``up``.

It lives next to the cluster file (``.NAME.syftzmq-up.json``), is rewritten atomically on every
change, and is removed when the supervisor exits. It holds no secrets: pids, addresses,
incarnations, restart counts and when each worker was last heard from.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from ..core.processes import process_exists


def state_path(cluster_file: str | os.PathLike) -> Path:
    path = Path(cluster_file).resolve()
    return path.with_name(f".{path.stem}.syftzmq-up.json")


def write_state(path: Path, state: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(temporary, path)


def read_state(path: Path) -> dict[str, Any] | None:
    """The state of a supervisor that is still running, else None (a stale file is removed)."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    pid = state.get("supervisor_pid")
    if not isinstance(pid, int) or not process_exists(pid):
        try:
            path.unlink()
        except OSError:
            pass
        return None
    return state


def stop_supervisor(pid: int, timeout: float) -> bool:
    """SIGTERM the supervisor and wait until it has exited; False at the deadline."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    return wait_for_exit(pid, timeout)


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait for any process (not only a child) to exit, with a pidfd where there is one."""
    import select
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (AttributeError, OSError):  # no pidfd: look now and then
        deadline = time.monotonic() + timeout
        while process_exists(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)
