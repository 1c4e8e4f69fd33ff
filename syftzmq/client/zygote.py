"""Local workers forked from a template process instead of started afresh.

A fresh ``python -m syftzmq.worker`` imports torch: a second or two and about 150 MiB of private
memory per worker. This client starts one template process (:mod:`syftzmq.worker.template`)
at its first :class:`~syftzmq.client.handles.VirtualWorker`; every later worker is forked from
it in milliseconds and shares the template's pages copy-on-write.

A forked worker behaves as a spawned one: the same command line and ready line, tied to this
process by a pipe only this process writes to (so it ends when this process ends, ``kill -9``
included), signalled and awaited through a pidfd (it is the template's child, not ours: a pidfd
cannot hit a reused pid), its exit code reported by the template, which reaps it.

The template is not used — the worker is spawned as before, and the log says why — when
``SYFTZMQ_ZYGOTE=0``, when this platform cannot fork or has no pidfds, when the template failed
(then not again in this process), or when an environment variable that a process reads while
it starts (``SYFTZMQ_*``, ``OMP_*``, ``PYTHON*``, ...) changed since the template started: a
forked worker could not honour it.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from typing import Any, Callable, Mapping, Sequence

from ..settings import SETTINGS
from .launcher import WorkerProcess, _read_ready_line, spawn_worker, worker_arguments

log = logging.getLogger(__name__)

TEMPLATE_MODULE = "syftzmq.worker.template"
START_TIMEOUT = 60.0   # the template imports torch: slow on a loaded machine
REQUEST_TIMEOUT = 10.0  # a fork or a status request; the template answers at once
TITLE_ROOM = 1024      # bytes of command line a forked worker may show (see template.py)
MAX_REPLY = 1 << 16
#: Set in the template only (a worker gets this process's environment): OpenBLAS, loaded with
#: numpy, would otherwise start a thread pool, and a process with threads must not fork.
TEMPLATE_ONLY_VARIABLES = {"OPENBLAS_NUM_THREADS": "1"}
#: ``returncode`` of a forked worker whose exit code nobody could tell (its template is gone).
EXIT_UNKNOWN = 255
#: Variables read while a process starts (by Python, torch, OpenMP, syftzmq's settings): a
#: worker forked from a template started under other values would not see the new ones.
STARTUP_VARIABLES = ("SYFTZMQ_", "PYTHON", "OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_",
                     "TORCH_", "PYTORCH_", "CUDA_", "LD_", "MALLOC_")


class TemplateUnavailable(Exception):
    """The worker template cannot start this worker; the caller spawns it instead."""


def fork_supported() -> str | None:
    """Why this platform cannot fork workers from a template, or ``None`` if it can."""
    if not sys.platform.startswith("linux"):
        return f"forking workers needs Linux (pidfds, /proc), this is {sys.platform}"
    for owner, name in ((os, "fork"), (os, "pidfd_open"), (signal, "pidfd_send_signal"),
                        (socket, "send_fds"), (socket, "SOCK_SEQPACKET")):
        if not hasattr(owner, name):
            return f"this Python has no {owner.__name__}.{name}"
    return None


class ForkedProcess:
    """The part of :class:`subprocess.Popen` a :class:`WorkerProcess` uses, for a worker that
    is the template's child: signals go through its pidfd, waiting polls the pidfd, and the
    exit code comes from the template that reaped it."""

    def __init__(self, pid: int, pidfd: int, template: "WorkerTemplate") -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.stdout: Any = None  # the ready pipe while the worker starts
        self._pidfd = pidfd
        self._template = template

    def _exited(self, timeout: float | None) -> bool:
        readable, _, _ = select.select([self._pidfd], [], [], timeout)
        return bool(readable)

    def _learn_exit_code(self) -> None:
        code = self._template.exit_code(self.pid)
        self.returncode = EXIT_UNKNOWN if code is None else code
        os.close(self._pidfd)
        self._pidfd = -1

    def poll(self) -> int | None:
        if self.returncode is None and self._exited(0):
            self._learn_exit_code()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not self._exited(timeout):
                raise subprocess.TimeoutExpired(f"worker (pid {self.pid})", timeout)
            self._learn_exit_code()
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            try:
                signal.pidfd_send_signal(self._pidfd, signum)
            except ProcessLookupError:  # exited, not yet noticed
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def __repr__(self) -> str:
        return f"<ForkedProcess pid={self.pid} returncode={self.returncode}>"

    def __del__(self) -> None:
        if getattr(self, "_pidfd", -1) >= 0:
            os.close(self._pidfd)


class WorkerTemplate:
    """One template process and the socket to it. Thread-safe: one request at a time."""

    def __init__(self, timeout: float = START_TIMEOUT,
                 while_starting: Callable[[], None] | None = None) -> None:
        self.environment = dict(os.environ)
        self.owner_pid = os.getpid()
        self.closed = False
        self.failure: str | None = None  # why the template stopped serving, if it failed
        self._lock = threading.Lock()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        lifeline_r, self._lifeline = os.pipe()  # only this process holds the write end
        command = [sys.executable, "-m", TEMPLATE_MODULE, "--control-fd", str(theirs.fileno()),
                   "--parent-fd", str(lifeline_r), "--title-room", " " * TITLE_ROOM]
        try:
            self.popen = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL,
                                          pass_fds=(theirs.fileno(), lifeline_r),
                                          env={**self.environment, **TEMPLATE_ONLY_VARIABLES})
        except OSError as exc:
            ours.close()
            os.close(self._lifeline)
            raise TemplateUnavailable(f"could not start the template: {exc}") from None
        finally:
            theirs.close()
            os.close(lifeline_r)
        self._control = ours
        try:
            _run_meanwhile(while_starting)
            ready, _ = self._receive(timeout)
            if ready.get("op") != "ready":
                raise TemplateUnavailable(f"the template said {ready!r} instead of ready")
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return not self.closed and self.popen.poll() is None

    def changed_variables(self, environ: Mapping[str, str]) -> list[str]:
        """Start-up variables whose value differs between ``environ`` and the template's."""
        names = {name for name in (*environ, *self.environment) if name.startswith(STARTUP_VARIABLES)}
        return sorted(name for name in names if environ.get(name) != self.environment.get(name))

    # ------------------------------------------------------------------ requests
    def _receive(self, timeout: float) -> tuple[dict, list[int]]:
        readable, _, _ = select.select([self._control], [], [], timeout)
        if not readable:
            raise TemplateUnavailable(f"the template did not answer within {timeout:.0f} s")
        try:
            payload, fds, _, _ = socket.recv_fds(self._control, MAX_REPLY, 1)
        except OSError as exc:
            raise TemplateUnavailable(f"the template's socket failed: {exc}") from None
        if not payload:
            raise TemplateUnavailable(f"the template exited (code {self.popen.poll()})")
        return json.loads(payload), fds

    def _request(self, message: dict, fds: Sequence[int] = (),
                 timeout: float = REQUEST_TIMEOUT) -> tuple[dict, list[int]]:
        with self._lock:
            if self.closed:
                raise TemplateUnavailable("the template was stopped")
            try:
                try:
                    socket.send_fds(self._control, [json.dumps(message).encode()], list(fds))
                except OSError as exc:
                    raise TemplateUnavailable(f"the template's socket failed: {exc}") from None
                return self._receive(timeout)
            except TemplateUnavailable as exc:
                # A late answer would be taken for the next request's: end the conversation.
                code = self.popen.poll()
                self.failure = (str(exc) if code is None else
                                f"the template (pid {self.pid}) exited with code {code}")
                self._end_locked(timeout=0)
                raise TemplateUnavailable(self.failure) from None

    def fork_worker(self, worker_id: str, args: list[str], timeout: float,
                    while_starting: Callable[[], None] | None = None) -> WorkerProcess:
        """Fork a worker running ``python -m syftzmq.worker *args`` and wait for its ready
        line. Raises :class:`TemplateUnavailable` if the template cannot fork (nothing was
        started), :class:`~syftzmq.errors.WorkerUnavailable` if the forked worker failed to
        start."""
        ready_r, ready_w = os.pipe()
        stderr = _stderr_fd()
        request = {"op": "fork", "args": args, "env": dict(os.environ), "cwd": os.getcwd()}
        try:
            reply, fds = self._request(request, [ready_w, stderr])
        except BaseException:
            os.close(ready_r)
            raise
        finally:
            os.close(ready_w)
            if stderr != 2:
                os.close(stderr)
        if reply.get("op") != "forked" or len(fds) != 1:
            os.close(ready_r)
            for fd in fds:
                os.close(fd)
            raise TemplateUnavailable(reply.get("error") or f"unexpected answer {reply!r}")
        forked = ForkedProcess(int(reply["pid"]), fds[0], self)
        forked.stdout = os.fdopen(ready_r, "rb", buffering=0)
        process = WorkerProcess(worker_id, "", "", forked)
        try:
            _run_meanwhile(while_starting)
            info = _read_ready_line(forked, timeout)
        except BaseException:
            process.stop()
            raise
        finally:
            forked.stdout.close()
            forked.stdout = None
        process.endpoint, process.incarnation = info["endpoint"], info["incarnation"]
        return process

    def exit_code(self, pid: int) -> int | None:
        """The exit code of a child that has exited; ``None`` if the template cannot tell."""
        try:
            reply, _ = self._request({"op": "status", "pid": pid})
        except TemplateUnavailable:
            return None
        return reply.get("code")

    # ------------------------------------------------------------------ end of life
    def stop(self, timeout: float = 3.0) -> None:
        """End the template (its workers are stopped on their own: they do not depend on it
        while they run) and close the lifeline, which ends any worker still tied to it."""
        self.abandon(timeout)
        if self._lifeline >= 0:
            os.close(self._lifeline)
            self._lifeline = -1

    def abandon(self, timeout: float = 3.0) -> None:
        """Close the socket and reap the template, keeping the lifeline: workers it forked
        keep running, tied to this process."""
        with self._lock:
            self._end_locked(timeout)

    def _end_locked(self, timeout: float) -> None:
        if self.closed:
            return
        self.closed = True
        self._control.close()  # end-of-file: the template exits
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def _run_meanwhile(while_starting: Callable[[], None] | None) -> None:
    if while_starting is not None:
        try:
            while_starting()
        except Exception:  # an optimisation only; the process's start is what matters
            pass


def _stderr_fd() -> int:
    """This process's stderr for the worker, as a spawned worker would inherit it."""
    try:
        os.fstat(2)
        return 2
    except OSError:
        return os.open(os.devnull, os.O_WRONLY)


# ---------------------------------------------------------------------------- this process's
_template: WorkerTemplate | None = None
_given_up: str | None = None  # why this process no longer uses a template
_warned = False  # the first worker spawned for want of a template is logged as a warning
_creating = threading.Lock()


def worker_template(session: Any,
                    while_starting: Callable[[], None] | None = None) -> WorkerTemplate:
    """This process's template, started on first use and stopped when ``session`` closes;
    ``while_starting`` runs here while a new template starts."""
    global _template, _given_up
    with _creating:
        if _given_up is not None:
            raise TemplateUnavailable(_given_up)
        template = _template
        if template is not None and template.owner_pid == os.getpid():  # not a forked copy
            if template.alive():
                return template
            if template.failure or not template.closed:  # not stopped by its session: failed
                template.abandon()
                _given_up = template.failure or (f"the template (pid {template.pid}) exited "
                                                 f"with code {template.popen.returncode}")
                raise TemplateUnavailable(_given_up)
        unsupported = fork_supported()
        if unsupported:
            _given_up = unsupported
            raise TemplateUnavailable(unsupported)
        try:
            _template = WorkerTemplate(while_starting=while_starting)
        except TemplateUnavailable as exc:
            _given_up = str(exc)
            raise
        session.adopt(_template)  # stopped, after the workers it forked, when the session closes
        return _template


def start_local_worker(session: Any, worker_id: str, *, key_file: str | None = None,
                       extra_args: Sequence[str] = (), threads: int | None = None,
                       log_level: str | None = None, timeout: float = 30.0,
                       while_starting: Callable[[], None] | None = None,
                       use_template: bool | None = None) -> WorkerProcess:
    """Start a worker on this host: forked from the template when it can be
    (``use_template``, default ``SYFTZMQ_ZYGOTE``), else spawned by :func:`spawn_worker`."""
    global _given_up, _warned
    if use_template is None:
        use_template = SETTINGS.zygote
    if use_template:
        try:
            template = worker_template(session, while_starting)
            changed = template.changed_variables(os.environ)
            if changed:
                log.info("spawning worker %s instead of forking it: %s changed since the "
                         "template started", worker_id, ", ".join(changed))
            else:
                args = worker_arguments(worker_id, key_file=key_file, log_level=log_level,
                                        extra_args=extra_args, threads=threads)
                return template.fork_worker(worker_id, args, timeout, while_starting)
        except TemplateUnavailable as exc:
            if _given_up is None:
                _given_up = str(exc)
            log.log(logging.INFO if _warned else logging.WARNING,
                    "spawning worker %s instead of forking it from the template: %s", worker_id, exc)
            _warned = True
    return spawn_worker(worker_id, key_file=key_file, extra_args=extra_args, threads=threads,
                        while_starting=while_starting, log_level=log_level, timeout=timeout)


__all__ = ["ForkedProcess", "TemplateUnavailable", "WorkerTemplate", "start_local_worker",
           "worker_template", "fork_supported"]
