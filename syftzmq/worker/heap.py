"""A worker that trains keeps the heap memory its steps free, instead of giving it back each time.

glibc's ``malloc`` serves a large allocation with its own ``mmap`` (from 128 KiB on, a bound it
raises as such blocks are freed) and hands freed memory at the top of the heap back to the
kernel once more than a threshold of it is free. A training step allocates and frees the same
activations and gradients every step (tutorial Part 6's CNN: about 10 MB a batch), and with
those defaults the kernel got the memory back between steps: every step faulted it in again,
500-1,450 page faults a batch, about 2 ms of the worker's 23 ms of CPU (the same loop in one
process: no faults, the heap stays put). :func:`keep_freed_memory` fixes both bounds at the
maxima glibc's own adjustment can reach on 64-bit (``mmap`` from 32 MiB, trimming beyond 64 MiB
free): 1-50 faults a batch. What it costs is memory: up to 64 MiB of freed heap per ``malloc``
arena stays resident until it is reused. Blocks of 32 MiB and more are still mapped on their
own and unmapped when freed, and a tensor received through shared memory is not heap at all.

The setting is made when the worker first runs a ``backward`` (:func:`on_backward`), not at
start: a worker that only stores and computes without training has no recurring step to keep
memory for, and there the higher trim threshold only kept freed top-of-heap memory resident
(about 40 bytes more per stored object in the benchmark's 100,000-tensor store).

``SYFTZMQ_WORKER_KEEP_HEAP=0`` leaves glibc's defaults. Other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import logging

from ..settings import SETTINGS

log = logging.getLogger("syftzmq.worker")

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # what glibc sets along with a raised mmap threshold

_decided = not SETTINGS.worker_keep_heap  # True once set (or refused, or opted out)


def on_backward() -> None:
    """Called by the worker before each ``backward`` it runs: the first one fixes the heap
    thresholds (see the module docstring); the rest cost one global read."""
    global _decided
    if not _decided:
        _decided = True
        keep_freed_memory()


def keep_freed_memory() -> bool:
    """Fix glibc's ``mmap`` and trim thresholds for this process (see the module docstring);
    True if they were set."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # glibc only: another libc's mallopt means something else
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 \
        and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not done:
        log.debug("mallopt refused the heap thresholds; glibc's defaults stay")
    return done
