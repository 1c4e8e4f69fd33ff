"""What an operator asks of a running worker: its pid, how long it has run, what it holds.

Part of the PING answer, so ``syftzmq cluster status`` needs no access to the worker's host.
"""

from __future__ import annotations

import os
import time

from ..wire import shm_map

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class Vitals:
    """Started once per worker process; :meth:`snapshot` is cheap enough for every PING."""

    def __init__(self) -> None:
        self.started_at = time.time()  # wall clock: comparable across hosts, roughly
        self._started = time.monotonic()

    def snapshot(self, bytes_stored: int) -> dict:
        """``bytes_stored``: the store's running total (:attr:`ObjectStore.tensor_bytes`)."""
        return {"pid": os.getpid(), "started_at": self.started_at,
                "uptime": time.monotonic() - self._started,
                "bytes_stored": bytes_stored, "rss_bytes": rss_bytes(),
                **shm_map.counts()}


def rss_bytes() -> int | None:
    """Resident memory of this process, from ``/proc`` (None where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None
