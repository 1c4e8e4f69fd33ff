"""Every setting syftzmq reads from the environment, with its default, in one place.

The environment is read once, when syftzmq is imported (:data:`SETTINGS`); the client session
and the worker are given a :class:`Settings` and read nothing else. A test or a script that
wants other values builds its own with :meth:`Settings.replace` instead of changing the
environment. Command-line options of ``syftzmq-worker`` take their defaults from here.

=============================  =========================================================
variable                       meaning (default)
=============================  =========================================================
``SYFTZMQ_TIMEOUT``            bound, in seconds, on every observation (none: an
                               observation waits as long as its worker is alive)
``SYFTZMQ_LIVENESS_TIMEOUT``   a worker that answers no liveness probe for this many
                               seconds is reported dead (5)
``SYFTZMQ_LIVENESS_INTERVAL``  seconds between liveness probes while waiting (1)
``SYFTZMQ_KEY_FILE``           the cluster key file, for clients and workers (none)
``SYFTZMQ_CURVE_DIR``          CURVE key directory: encrypt and authenticate (none)
``SYFTZMQ_LOG_LEVEL``          log level of worker processes (``INFO``; ``WARNING`` for
                               workers a client spawns)
``SYFTZMQ_LEASE_SECONDS``      a worker frees a silent owner's objects after this (120)
``SYFTZMQ_WORKER_THREADS``     torch threads of a worker (1 for workers spawned here)
``SYFTZMQ_BATCH``              commands (or held deletes) queued per worker before they
                               leave (64)
``SYFTZMQ_LINGER_MS``          how long a queued command, or a delete or hand-off held for
                               a message to ride on, may wait before it leaves (5)
``SYFTZMQ_SHM``                ``0`` turns off shared memory between local processes (1)
``SYFTZMQ_SHM_DIR``            the shared-memory directory (``/dev/shm``)
``SYFTZMQ_SHM_THRESHOLD``      smallest buffer that goes through shared memory (1 MiB)
``SYFTZMQ_SHM_MAX_AGE``        seconds after which an untaken segment is swept (120)
``SYFTZMQ_SHM_PARALLEL_MIN``   smallest buffer written by several threads (32 MiB)
``SYFTZMQ_SHM_LEND``           ``0``: a worker copies a tensor it received through shared
                               memory when it moves or returns it, instead of handing
                               the pages over (1)
``SYFTZMQ_ZYGOTE``             ``0``: start every local worker as a fresh process instead of
                               forking it from a worker template (1)
=============================  =========================================================
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class Settings:
    timeout: float | None = None
    liveness_timeout: float = 5.0
    liveness_interval: float = 1.0
    key_file: str | None = None
    curve_dir: str | None = None
    log_level: str = "INFO"
    spawned_log_level: str = "WARNING"
    lease_seconds: float = 120.0
    worker_threads: int | None = None
    spawned_worker_threads: int = 1
    batch: int = 64
    linger_seconds: float = 0.005
    shm: bool = True
    shm_dir: str = "/dev/shm"
    shm_threshold: int = 1 << 20
    shm_max_age: float = 120.0
    shm_parallel_min: int = 32 << 20
    shm_lend: bool = True
    zygote: bool = True
    worker_keep_heap: bool = True

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        """Settings from ``SYFTZMQ_*`` variables; a malformed value raises naming it."""
        def read(name: str, convert, default):
            text = environ.get(name)
            if text is None or text == "":
                return default
            try:
                return convert(text)
            except ValueError:
                kind = getattr(convert, "describes", convert.__name__)
                raise ValueError(f"environment variable {name}={text!r} is not a valid "
                                 f"{kind}; unset it or fix its value") from None

        threads = read("SYFTZMQ_WORKER_THREADS", int, None)
        log_level = environ.get("SYFTZMQ_LOG_LEVEL")
        return cls(
            timeout=read("SYFTZMQ_TIMEOUT", optional_seconds, cls.timeout),
            liveness_timeout=read("SYFTZMQ_LIVENESS_TIMEOUT", positive_seconds,
                                  cls.liveness_timeout),
            liveness_interval=read("SYFTZMQ_LIVENESS_INTERVAL", positive_seconds,
                                   cls.liveness_interval),
            key_file=environ.get("SYFTZMQ_KEY_FILE") or None,
            curve_dir=environ.get("SYFTZMQ_CURVE_DIR") or None,
            log_level=log_level or cls.log_level,
            spawned_log_level=log_level or cls.spawned_log_level,
            lease_seconds=read("SYFTZMQ_LEASE_SECONDS", float, cls.lease_seconds),
            worker_threads=threads,
            spawned_worker_threads=threads or cls.spawned_worker_threads,
            batch=read("SYFTZMQ_BATCH", int, cls.batch),
            linger_seconds=read("SYFTZMQ_LINGER_MS", float, cls.linger_seconds * 1000) / 1000,
            shm=environ.get("SYFTZMQ_SHM", "1") != "0",
            shm_dir=environ.get("SYFTZMQ_SHM_DIR") or cls.shm_dir,
            shm_threshold=read("SYFTZMQ_SHM_THRESHOLD", int, cls.shm_threshold),
            shm_max_age=read("SYFTZMQ_SHM_MAX_AGE", float, cls.shm_max_age),
            shm_parallel_min=read("SYFTZMQ_SHM_PARALLEL_MIN", int, cls.shm_parallel_min),
            shm_lend=environ.get("SYFTZMQ_SHM_LEND", "1") != "0",
            zygote=environ.get("SYFTZMQ_ZYGOTE", "1") != "0",
            worker_keep_heap=environ.get("SYFTZMQ_WORKER_KEEP_HEAP", "1") != "0",
        )

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)


def positive_seconds(text: str) -> float:
    """A positive number of seconds (``ValueError`` otherwise)."""
    seconds = float(text)
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(text)
    return seconds


def optional_seconds(text: str) -> float | None:
    """A positive number of seconds, or ``none`` (no bound)."""
    return None if text.strip().lower() in ("none", "inf") else positive_seconds(text)


positive_seconds.describes = "positive number of seconds"  # type: ignore[attr-defined]
optional_seconds.describes = "positive number of seconds, or none"  # type: ignore[attr-defined]

SETTINGS = Settings.from_environ()
