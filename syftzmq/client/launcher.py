"""Starting worker processes and stopping them without leaving any behind.

A child gets the read end of a pipe whose write end only this process holds (``--parent-fd``):
when this process exits — normally, by exception or by ``kill -9`` — the pipe reaches
end-of-file and the worker stops. No polling of parent pids, no reliance on signals.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..core.messages import READY_PREFIX
from ..errors import WorkerUnavailable
from ..settings import SETTINGS
from ..wire import shm


def local_worker_threads() -> int:
    """Torch threads for a worker spawned on this host: ``$SYFTZMQ_WORKER_THREADS``, else 1.

    Local workers share this host's cores with each other and with the client; torch's
    default (one thread per core, in every process) oversubscribes them, and small operations
    then cost several times more. One thread each is the right default for several workers;
    a single worker doing large matrix work may want more.
    """
    return SETTINGS.spawned_worker_threads


@dataclass
class WorkerProcess:
    """A running worker process started by this one.

    ``popen`` is the :class:`subprocess.Popen` of a spawned worker, or, for a worker forked
    from a template (:mod:`syftzmq.client.zygote`), an object with the same ``pid``,
    ``returncode``, ``poll``, ``wait``, ``send_signal`` and ``kill``.
    """

    id: str
    endpoint: str
    incarnation: str
    popen: Any  # subprocess.Popen, or zygote.ForkedProcess
    _lifeline: int | None = None
    liveness: str | None = None  # its liveness endpoint (see syftzmq.worker.liveness)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 3.0) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; always reaps the process."""
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.release_lifeline()

    def wait(self, timeout: float) -> bool:
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        self.release_lifeline()
        return True

    def release_lifeline(self) -> None:
        """Called once the process is reaped: also remove shared-memory segments it created
        and, killed, could not remove itself (see :mod:`syftzmq.wire.shm`)."""
        shm.sweep_pid(self.popen.pid)
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None


def worker_arguments(worker_id: str, *, bind: str = "tcp://127.0.0.1:*",
                     key_file: str | None = None, advertise: str | None = None,
                     log_level: str | None = None, extra_args: Sequence[str] = (),
                     threads: int | None = None) -> list[str]:
    """The command line of a local worker (after ``python -m syftzmq.worker``), without
    ``--parent-fd``; ``threads`` defaults to :func:`local_worker_threads`."""
    if threads is None and "--threads" not in extra_args:
        threads = local_worker_threads()
    args = ["--id", worker_id, "--bind", bind, *extra_args]
    if threads is not None:
        args += ["--threads", str(threads)]
    if key_file:
        args += ["--key-file", str(key_file)]
    if advertise:
        args += ["--advertise", advertise]
    if log_level:
        args += ["--log-level", log_level]
    return args


def spawn_worker(worker_id: str, *, bind: str = "tcp://127.0.0.1:*", key_file: str | None = None,
                 advertise: str | None = None, tie_to_parent: bool = True,
                 log_level: str | None = None, stderr=None, timeout: float = 30.0,
                 extra_args: Sequence[str] = (), threads: int | None = None,
                 while_starting: Callable[[], None] | None = None) -> WorkerProcess:
    """Start ``python -m syftzmq.worker`` and wait until it reports its endpoint.

    ``extra_args`` go to the worker's command line (``--safe``, ``--lease-seconds 30``, ...).
    ``threads`` defaults to :func:`local_worker_threads` (the worker runs on this host).
    ``while_starting`` runs here while the worker starts up (its errors are ignored).
    """
    command = [sys.executable, "-m", "syftzmq.worker",
               *worker_arguments(worker_id, bind=bind, key_file=key_file, advertise=advertise,
                                 log_level=log_level, extra_args=extra_args, threads=threads)]
    lifeline = None
    pass_fds: tuple[int, ...] = ()
    if tie_to_parent:
        child_end, lifeline = os.pipe()
        command += ["--parent-fd", str(child_end)]
        pass_fds = (child_end,)
    popen = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, pass_fds=pass_fds)
    if tie_to_parent:
        os.close(pass_fds[0])
    process = WorkerProcess(worker_id, "", "", popen, lifeline)
    try:
        if while_starting is not None:
            try:
                while_starting()
            except Exception:  # an optimisation only; the worker's start is what matters
                pass
        info = _read_ready_line(popen, timeout)
    except BaseException:
        process.stop()
        raise
    process.endpoint, process.incarnation = info["endpoint"], info["incarnation"]
    process.liveness = info.get("liveness")
    popen.stdout.close()
    return process


def _read_ready_line(popen: subprocess.Popen, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    if popen.stdout is None:  # (never: it was started with a pipe; an if, so -O keeps it)
        raise RuntimeError("the worker process was started without a pipe for its ready line")
    fd = popen.stdout.fileno()
    buffered = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WorkerUnavailable("(starting)", None, f"no ready line within {timeout:.0f} s")
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            raise WorkerUnavailable("(starting)", None,
                                    f"worker process exited with code {popen.wait()} before it was ready")
        buffered += chunk
        while b"\n" in buffered:  # only whole lines
            line, buffered = buffered.split(b"\n", 1)
            text = line.decode(errors="replace")
            if text.startswith(READY_PREFIX):
                return json.loads(text[len(READY_PREFIX):])
