"""The worker template ("zygote"): a process that has imported torch and the worker once, and
forks a new worker on request in milliseconds.

Importing torch afresh costs a second or more and a few hundred MiB per process. A template
pays it once per client; each worker it forks starts with the interpreter, torch and the worker
code already loaded, and shares those pages with the template and its siblings copy-on-write.

Forking is only safe while the forking process has exactly one thread (a thread pool that
existed at the fork is a broken copy in the child). So the template starts no threads, ZMQ
contexts or sockets: it pins torch to one thread before any operation (so that no OpenMP or MKL
pool starts); its client starts it with ``OPENBLAS_NUM_THREADS=1`` (OpenBLAS, loaded with numpy,
starts its pool when it loads; workers compute with torch, not numpy's BLAS); and it checks
``/proc/self/task`` before every fork, refusing to fork otherwise.

The client talks to the template over a ``SOCK_SEQPACKET`` Unix socket (``--control-fd``), one
JSON message per packet, file descriptors passed alongside:

=================================================  ==========================================
client -> template                                 template -> client
=================================================  ==========================================
(on start)                                         ``{"op": "ready", "pid"}``
``{"op": "fork", "args", "env", "cwd"}`` +         ``{"op": "forked", "pid"}`` + [pidfd],
[ready pipe's write end, stderr]                   or ``{"op": "error", "error"}``
``{"op": "status", "pid"}``                        ``{"op": "status", "pid", "code"}``
=================================================  ==========================================

``args`` is a worker command line (see :mod:`syftzmq.worker.cli`), ``--parent-fd`` excepted: the
child inherits the template's own lifeline (``--parent-fd``), whose write end only the client
holds, so a worker ends when its client does, however the client ends. The pidfd lets the
client signal and wait for a process that is not its child without racing pid reuse; the
template reaps its children and keeps their exit codes until the client asks (``status``).
The template ends when the client closes the socket or its lifeline reaches end-of-file.

A forked child, before it runs :func:`syftzmq.worker.cli.main` as ``python -m syftzmq.worker``
would: closes the template's descriptors, restores default signal handling, takes the ready
pipe as stdout and the client's stderr as stderr, takes the client's working directory and
environment, rewrites its command line (``/proc/<pid>/cmdline``) to the worker's, reseeds
torch (the ids of :mod:`syftzmq.core.ids` and Python's ``random`` reseed themselves at fork),
and sets the torch threads it was asked for.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import select
import signal
import socket
import sys
import traceback

import torch

from . import cli  # imports the worker server, the wire, the store: what every worker needs

MAX_PACKET = 1 << 20  # a fork request carries the client's environment
WORKER_MODULE = "syftzmq.worker"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="syftzmq-worker-template",
                                     description="Fork syftzmq workers on request (started by a client).")
    parser.add_argument("--control-fd", type=int, required=True,
                        help="the SOCK_SEQPACKET socket requests arrive on")
    parser.add_argument("--parent-fd", type=int, required=True,
                        help="the client's lifeline: end-of-file means the client is gone")
    parser.add_argument("--title-room", default="",
                        help="blank padding: room for a forked worker's command line")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------ warming up
def warm_up() -> int:
    """Load and run once what every worker needs, without starting a thread; returns torch's
    default thread count (what a worker gets when not told otherwise)."""
    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # before any operation: no intra-op pool may start here
    from ..core.ops import op_from_wire  # noqa: F401
    from ..wire import dumps, loads
    a = torch.ones(4)
    for value in (a + 1, a * a, (a @ a), a.sum(), torch.randn(2, 2).t().contiguous(), a.view(2, 2)):
        header, buffers = dumps({"kind": "store", "value": value})
        loads(header, buffers)
    gc.collect()
    gc.freeze()  # children's collections leave the template's objects (and their pages) alone
    return default_threads


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


# ------------------------------------------------------------------------------ the loop
class Template:
    def __init__(self, control: socket.socket, lifeline: int, default_threads: int) -> None:
        self.control = control
        self.lifeline = lifeline
        self.default_threads = default_threads
        self.children: set[int] = set()
        self.exit_codes: dict[int, int] = {}
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        self.wake_w = wake_w
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # the wakeup fd does the work
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the client; we end with it
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def send(self, message: dict, fds: list[int] = ()) -> None:
        payload = json.dumps(message).encode()
        if fds:
            socket.send_fds(self.control, [payload], list(fds))
        else:
            self.control.send(payload)

    def serve(self) -> int | None:
        """Serve until the client is gone; in a forked child, returns the worker's exit code
        (the child leaves the loop and runs the worker), else ``None``."""
        self.send({"op": "ready", "pid": os.getpid()})
        while True:
            readable, _, _ = select.select([self.control, self.lifeline, self.wake_r], [], [])
            if self.wake_r in readable:
                self._drain_wakeups()
                self._reap()
            if self.lifeline in readable and not os.read(self.lifeline, 64):
                return None  # the client is gone
            if self.control in readable:
                try:
                    payload, fds, flags, _ = socket.recv_fds(self.control, MAX_PACKET, 4)
                except ConnectionResetError:
                    return None
                if not payload:
                    return None  # the client closed the socket
                if flags & socket.MSG_TRUNC or flags & socket.MSG_CTRUNC:
                    _close_all(fds)
                    self.send({"op": "error", "error": "request too large for the template"})
                    continue
                outcome = self._handle(json.loads(payload), fds)
                if outcome is not None:
                    return outcome

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.exit_codes[pid] = os.waitstatus_to_exitcode(status)

    def _handle(self, request: dict, fds: list[int]) -> int | None:
        op = request.get("op")
        if op == "fork":
            return self._fork(request, fds)
        _close_all(fds)
        if op == "status":
            pid = int(request["pid"])
            if pid in self.children:
                self._reap()
            self.send({"op": "status", "pid": pid, "code": self.exit_codes.pop(pid, None)})
        else:
            self.send({"op": "error", "error": f"unknown request {op!r}"})
        return None

    def _fork(self, request: dict, fds: list[int]) -> int | None:
        if len(fds) != 2:
            _close_all(fds)
            self.send({"op": "error", "error": f"a fork request needs 2 descriptors, got {len(fds)}"})
            return None
        threads = thread_count()
        if threads != 1:
            _close_all(fds)
            self.send({"op": "error", "error": f"the template runs {threads} threads; forking "
                                               f"now would copy them broken into the worker"})
            return None
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            return self._become_worker(request, *fds)
        self.children.add(pid)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as exc:  # a kernel without pidfds: the client could not wait for it
            os.kill(pid, signal.SIGKILL)
            _close_all(fds)
            self.send({"op": "error", "error": f"no pidfd for the worker: {exc}"})
            return None
        try:
            self.send({"op": "forked", "pid": pid}, [pidfd])
        finally:
            os.close(pidfd)
            _close_all(fds)
        return None

    # ------------------------------------------------------------------ in the child
    def _become_worker(self, request: dict, ready_w: int, stderr_fd: int) -> int:
        try:
            args = list(request["args"])
            self.control.close()
            signal.set_wakeup_fd(-1)
            os.close(self.wake_r)
            os.close(self.wake_w)
            for signum in (signal.SIGCHLD, signal.SIGTERM):
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            os.dup2(ready_w, 1)
            os.dup2(stderr_fd, 2)
            os.close(ready_w)
            os.close(stderr_fd)
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            args += ["--parent-fd", str(self.lifeline)]
            set_command_line([sys.executable, "-m", WORKER_MODULE, *args])
            sys.argv = [cli.__file__.replace("cli.py", "__main__.py"), *args]
            reseed()
            threads = cli.parse_args(args).threads
            torch.set_num_threads(threads if threads and threads > 0 else self.default_threads)
            return cli.main(args)
        except SystemExit as exc:  # argparse rejected the command line (it printed why)
            return exc.code if isinstance(exc.code, int) else 2
        except BaseException:
            traceback.print_exc()
            return 1


def reseed() -> None:
    """A forked child starts with its template's random state: every worker would draw the
    same ``torch.randn``. Give each its own."""
    torch.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


# ------------------------------------------------------------------------------ process title
def set_command_line(argv: list[str]) -> bool:
    """Make ``/proc/self/cmdline`` (what ``ps`` and process finders read) show ``argv``.

    A forked process keeps its template's command line; without an exec the only way to change
    it is to overwrite the memory the kernel reads it from, the original argument strings
    (``arg_start``..``arg_end`` in ``/proc/self/stat``). The template is started with blank
    room for this (``--title-room``). What does not fit is cut at an argument boundary.
    Returns whether the command line was rewritten.
    """
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # fields 48 and 49 of proc(5)
    except (OSError, IndexError, ValueError):
        return False
    room = end - start
    if room <= 1:
        return False
    encoded, used = [], 0
    for arg in argv:
        item = arg.encode(errors="replace") + b"\0"
        if used + len(item) > room:
            break
        encoded.append(item)
        used += len(item)
    text = b"".join(encoded).ljust(room, b"\0")  # ends in NUL: read as separate arguments
    ctypes.memmove(start, text, room)
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    control = socket.socket(fileno=args.control_fd)
    try:
        default_threads = warm_up()
    except BaseException:
        traceback.print_exc()
        return 1
    outcome = Template(control, args.parent_fd, default_threads).serve()
    return 0 if outcome is None else outcome


if __name__ == "__main__":
    raise SystemExit(main())
