"""Helpers for tests that start and kill real processes: every wait has a deadline."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from contextlib import contextmanager

# How long a worker may take to exit after SIGTERM before a test calls it hung: a guard against
# a hang, not a timing claim (a loaded machine makes a prompt exit take seconds).
EXIT_DEADLINE = 20.0


def wait_for_exit(pid: int, timeout: float) -> bool:
    """True once process ``pid`` has exited (it need not be our child); False at the deadline."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(fd)


def wait_until(condition, timeout: float, what: str) -> None:
    """Poll an external condition (another process's state) until it holds, or fail naming
    ``what`` at the deadline."""
    import threading
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        threading.Event().wait(0.02)


def read_lines_until(process: subprocess.Popen, marker: str, timeout: float) -> list[str]:
    """Lines of ``process.stdout`` up to and including the first one containing ``marker``.

    Reads the raw pipe (a buffered file object can hold lines that ``select`` cannot see).
    """
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    fd = process.stdout.fileno()
    pending = getattr(process, "_pending_output", b"")
    lines: list[str] = []
    while True:
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            lines.append(line.decode(errors="replace"))
            if marker in lines[-1]:
                process._pending_output = pending  # type: ignore[attr-defined]
                return lines
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no {marker!r} within {timeout} s; got {lines}")
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            raise RuntimeError(f"process exited before {marker!r}; got {lines + [pending.decode()]}")
        pending += chunk


@contextmanager
def spawned_cluster(cluster_file, count: int):
    """Run ``scripts/spawn_workers.py cluster_file``; yields its start-up lines, the worker
    pids and the script's process (to read later lines with :func:`read_lines_until`).

    On leaving, the script gets Ctrl-C (SIGINT), must exit 0, and every worker must be gone,
    including any pid the test appended to the list (a restarted worker).
    """
    import re
    import signal
    import sys
    from pathlib import Path
    script_path = Path(__file__).resolve().parents[2] / "scripts" / "spawn_workers.py"
    script = subprocess.Popen([sys.executable, str(script_path), str(cluster_file),
                               "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        lines = read_lines_until(script, f"all {count} workers ready", timeout=90)
        pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", "\n".join(lines))]
        yield lines, pids, script
    finally:
        script.send_signal(signal.SIGINT)
        assert script.wait(15) == 0
    assert all(wait_for_exit(pid, timeout=5) for pid in pids)


@contextmanager
def frozen(worker):
    """SIGSTOP ``worker``'s process for the block; SIGCONT whatever happens."""
    os.kill(worker.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(worker.process.pid, signal.SIGCONT)


def kill_stopped(worker) -> None:
    """SIGKILL a (possibly SIGSTOPped) worker. SIGKILL ends a stopped process too, and nothing
    may follow it: the template reaps its children at once, so a SIGCONT after it can find the
    pid gone (``ProcessLookupError``) or, worse, reused by another process."""
    os.kill(worker.process.pid, signal.SIGKILL)
