"""What an operator asks of a running worker: its pid, how long it has run, what it holds.

Part of the PING answer, so ``syftzmq cluster status`` needs no access to the worker's host.
The bytes stored only when the PING asks for them (``vitals``): see :func:`stored_bytes`.
"""

from __future__ import annotations

import os
import time
from typing import Any, Iterable

import torch

from ..wire import shm_map

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class Vitals:
    """Started once per worker process; :meth:`snapshot` is cheap enough for every PING."""

    def __init__(self) -> None:
        self.started_at = time.time()  # wall clock: comparable across hosts, roughly
        self._started = time.monotonic()

    def snapshot(self) -> dict:
        return {"pid": os.getpid(), "started_at": self.started_at,
                "uptime": time.monotonic() - self._started, "rss_bytes": rss_bytes(),
                **shm_map.counts()}


def stored_bytes(objects: Iterable[Any]) -> int:
    """Bytes of the tensors among ``objects`` (pointers and other values count nothing; two
    stored views of one tensor count twice). A walk over the store: a PING answers it only
    when asked (``vitals``), as ``syftzmq cluster status`` does, since on a worker holding
    100,000 objects it costs 65 ms and a PING is how clients wait for a worker."""
    return sum(obj.nelement() * obj.element_size() for obj in objects
               if isinstance(obj, torch.Tensor) and not obj.is_meta)


def rss_bytes() -> int | None:
    """Resident memory of this process, from ``/proc`` (None where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None
