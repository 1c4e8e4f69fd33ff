"""Helpers for tests that start and kill real processes: every wait has a deadline."""

from __future__ import annotations

import os
import select
import subprocess
import time


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
