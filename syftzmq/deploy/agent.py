"""The keeper of one worker on its host: started by the supervisor, directly or over SSH.

Standard library only, and never imports syftzmq: it is sent as source over the SSH channel
and run by ``python -c BOOTSTRAP``, so the host needs syftzmq only for the worker itself, and
the keeper costs a bare interpreter (importing syftzmq would import torch a second time).

Its standard input is the lifeline and the only way in:

- line 1: this file's source, as a JSON string (read by :data:`BOOTSTRAP`);
- line 2: a JSON header — the worker's command-line options (``{keys}`` stands for the private
  key directory), the key files to write there (base64), the working directory, extra
  environment variables, the start and stop deadlines;
- then nothing: end-of-file (the supervisor closed it, exited, was killed, or the SSH
  connection dropped) stops the worker.

Its standard output carries two lines for the supervisor: ``SYFTZMQ-READY {json}`` once the
worker serves (the worker's own ready line, with the keeper's pid), and ``SYFTZMQ-EXIT {json}``
when the worker has ended. Everything the worker logs goes to standard error.

Whatever ends the worker (a stop, a crash, ``kill -9``), the keeper leaves nothing behind: it
removes the private key directory, an ``ipc://`` socket file the worker could not remove, and
the worker's shared-memory segments (named ``syftzmq-<pid>-<hex32>``, see syftzmq.wire.shm).
Only a ``kill -9`` of the keeper itself leaves its key directory (the worker still stops: it
is tied to the keeper by a pipe of its own).
"""

import base64
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

BOOTSTRAP = ("import sys,json;exec(compile(json.loads(sys.stdin.buffer.readline()),"
             "'syftzmq-agent','exec'))")
READY = "SYFTZMQ-READY "
EXIT = "SYFTZMQ-EXIT "
KEYS = "{keys}"
_SEGMENT = re.compile(r"^syftzmq-(\d+)-[0-9a-f]{32}$")


def _say(prefix, payload):
    os.write(1, (prefix + json.dumps(payload) + "\n").encode())


def _write_private_files(files, parent):
    """Write ``files`` (relative path -> base64) into a fresh directory only we can read."""
    if parent:
        os.makedirs(parent, exist_ok=True)
    root = tempfile.mkdtemp(prefix=".syftzmq-keys-", dir=parent or None)  # mode 0700
    for relative, encoded in files.items():
        path = os.path.join(root, relative)
        if os.path.relpath(path, root).startswith(".."):
            raise ValueError("key file path %r leaves the key directory" % relative)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(base64.b64decode(encoded))
    return root


def _sweep_segments(pid):
    directory = os.environ.get("SYFTZMQ_SHM_DIR", "/dev/shm")
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        match = _SEGMENT.match(name)
        if match and int(match.group(1)) == pid:
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def _remove_socket_file(endpoint):
    if endpoint and endpoint.startswith("ipc://") and not endpoint.startswith("ipc://@"):
        try:
            os.unlink(endpoint[len("ipc://"):])
        except OSError:
            pass


class Keeper:
    """Starts the worker, relays its ready line, stops it on end-of-file, cleans up."""

    def __init__(self, header):
        self.header = header
        self.keys = None
        self.worker = None
        self.endpoint = None
        self.reason = None  # why we stop the worker; None: it ended by itself
        wake_r, self._wake_w = os.pipe()
        self._wake_r = wake_r
        os.set_blocking(self._wake_w, False)

    def _wake(self, *_):
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _on_signal(self, signum, _frame):
        self.reason = self.reason or signal.Signals(signum).name
        self._wake()

    def run(self):
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        code = 1
        try:
            code = self._run()
        except Exception as exc:  # reported to the supervisor, which names the worker
            self.reason = self.reason or "error"
            _say(EXIT, {"code": None, "error": "%s: %s" % (type(exc).__name__, exc)})
            code = 1
        finally:
            self._clean_up()
        return code

    def _run(self):
        header = self.header
        workdir = header.get("workdir")
        if header.get("files"):
            self.keys = _write_private_files(header["files"], workdir)
        if workdir:
            os.makedirs(workdir, exist_ok=True)
            os.chdir(workdir)
        args = [arg.replace(KEYS, self.keys or "") for arg in header["args"]]
        env = dict(os.environ)
        env.update(header.get("env") or {})
        child_end, lifeline = os.pipe()
        command = [sys.executable, "-m", "syftzmq.worker", *args, "--parent-fd", str(child_end)]
        self.worker = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       env=env, pass_fds=(child_end,))
        os.close(child_end)
        self._lifeline = lifeline
        threading.Thread(target=lambda: (self.worker.wait(), self._wake()), daemon=True).start()
        info = self._read_ready(float(header.get("start_timeout", 120)))
        if info is None:
            return self._finish()
        self.endpoint = info.get("endpoint")
        info["agent_pid"] = os.getpid()
        info["keys_dir"] = self.keys
        _say(READY, info)
        self.worker.stdout.close()
        while self.reason is None and self.worker.poll() is None:
            readable, _, _ = select.select([0, self._wake_r], [], [])
            if 0 in readable and not os.read(0, 4096):
                self.reason = "end of input (supervisor gone or stopping)"
            if self._wake_r in readable:
                os.read(self._wake_r, 64)
        return self._finish()

    def _read_ready(self, timeout):
        """The worker's ready line; None when it exited, we were told to stop, or time ran out."""
        deadline = time.monotonic() + timeout
        fd = self.worker.stdout.fileno()
        buffered = b""
        while self.reason is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.reason = "worker not ready within %.0f s" % timeout
                return None
            readable, _, _ = select.select([fd, 0, self._wake_r], [], [], remaining)
            if 0 in readable and not os.read(0, 4096):
                self.reason = "end of input while starting"
                return None
            if self._wake_r in readable:
                os.read(self._wake_r, 64)
            if fd in readable:
                chunk = os.read(fd, 4096)
                if not chunk:
                    return None  # exited before it was ready (its stderr says why)
                buffered += chunk
                while b"\n" in buffered:
                    line, buffered = buffered.split(b"\n", 1)
                    text = line.decode(errors="replace")
                    if text.startswith(READY):
                        return json.loads(text[len(READY):])
        return None

    def _finish(self):
        """Stop the worker if it still runs; report how it ended."""
        stop_timeout = float(self.header.get("stop_timeout", 5))
        if self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)
            try:
                self.worker.wait(stop_timeout)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
        code = self.worker.returncode
        _say(EXIT, {"code": code, "stopped": self.reason})
        if self.reason is not None and code in (0, -signal.SIGTERM):
            return 0
        return 128 - code if code < 0 else (code or 1)

    def _clean_up(self):
        if self.worker is not None:
            if self.worker.poll() is None:
                self.worker.kill()
                self.worker.wait()
            _sweep_segments(self.worker.pid)
            _remove_socket_file(self.endpoint)
        if self.keys is not None:
            shutil.rmtree(self.keys, ignore_errors=True)


def main():
    header = json.loads(sys.stdin.buffer.readline())
    return Keeper(header).run()


if __name__ == "__main__":
    sys.exit(main())
