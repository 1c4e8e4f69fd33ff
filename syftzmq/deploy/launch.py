"""Starting one worker's keeper (:mod:`syftzmq.deploy.agent`): on this host, or over SSH.

SSH is the system's OpenSSH client, so the user's keys, agent and ``~/.ssh/config`` apply. It
runs with ``BatchMode`` (never a password prompt: a supervisor has no terminal to ask on), a
connect timeout, and keep-alives, so a host that vanishes ends the connection, which the
supervisor sees as the worker's death. Key material travels inside the SSH channel, on the
keeper's standard input, never on a command line; a host gets only the files it needs.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import agent
from .spec import Deployment, Placement

SSH = os.environ.get("SYFTZMQ_SSH", "ssh")
CONNECT_TIMEOUT = 10
_AGENT_SOURCE = Path(agent.__file__).read_text()


@dataclass(frozen=True)
class Launch:
    """Everything needed to start one incarnation of a worker."""

    command: list[str]
    header: dict


def worker_files(deployment: Deployment) -> dict[str, bytes]:
    """What a worker's host needs: the cluster key and the workers' CURVE files.

    Never a client's secret key: workers authenticate clients by their public keys in
    ``authorized/``. (All workers share one server key pair, so every worker host gets it.)
    """
    files: dict[str, bytes] = {}
    spec = deployment.cluster
    if spec.key_file is not None:
        files["cluster.key"] = spec.key_file.read_bytes()
    if spec.curve_dir is not None:
        curve = spec.curve_dir
        for name in ("server.key", "server.key_secret"):
            files[f"curve/{name}"] = (curve / name).read_bytes()
        for public in sorted((curve / "authorized").glob("*.key")):
            files[f"curve/authorized/{public.name}"] = public.read_bytes()
    return files


def worker_args(deployment: Deployment, placement: Placement, bind: str, address: str,
                log_level: str, threads: int | None) -> list[str]:
    """The worker's command line; on a remote host, key paths point into ``{keys}``."""
    from dataclasses import replace
    worker, spec = placement.worker, deployment.cluster
    args = ["--id", worker.id, "--bind", bind, "--log-level", log_level]
    if not address.endswith(":*"):
        args += ["--advertise", address]
    args += worker.options(replace(spec, curve_dir=None))  # --safe, --lease-seconds
    remote = placement.host is not None
    if spec.key_file is not None:
        args += ["--key-file", f"{agent.KEYS}/cluster.key" if remote else str(spec.key_file)]
    if spec.curve_dir is not None:
        args += ["--curve-dir", f"{agent.KEYS}/curve" if remote else str(spec.curve_dir)]
    threads = placement.threads or threads
    if threads is None and not remote:  # workers of one host share its cores (see launcher)
        from ..client.launcher import local_worker_threads
        threads = local_worker_threads()
    if threads is not None:
        args += ["--threads", str(threads)]
    return args


def launch_for(deployment: Deployment, placement: Placement, bind: str, address: str, *,
               log_level: str = "INFO", threads: int | None = None,
               start_timeout: float = 120.0, stop_timeout: float = 5.0,
               files: dict[str, bytes] | None = None) -> Launch:
    header = {"args": worker_args(deployment, placement, bind, address, log_level, threads),
              "workdir": placement.workdir, "env": placement.env,
              "start_timeout": start_timeout, "stop_timeout": stop_timeout, "files": {}}
    if placement.host is None:
        return Launch([placement.python, "-c", agent.BOOTSTRAP], header)
    if files is None:
        files = worker_files(deployment)
    header["files"] = {name: base64.b64encode(data).decode() for name, data in files.items()}
    return Launch(ssh_command(placement.host, deployment.ssh_options,
                              f"{shlex.quote(placement.python)} -c {shlex.quote(agent.BOOTSTRAP)}"),
                  header)


def ssh_command(host: str, options: tuple[str, ...], remote_command: str,
                connect_timeout: int = CONNECT_TIMEOUT) -> list[str]:
    """``ssh`` without a terminal or prompts; the user's ``options`` come first, so they win
    (ssh keeps the first value it is given for an option)."""
    return [SSH, *options, "-T", "-x", "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={connect_timeout}", "-o", "ServerAliveInterval=5",
            "-o", "ServerAliveCountMax=3", "--", host, remote_command]


class AgentProcess:
    """A running keeper: its ready and exit lines on stdout, its log (and ssh's) on stderr.

    Started in a session of its own, so a Ctrl-C at the terminal reaches the supervisor only,
    which then stops every worker in order.
    """

    def __init__(self, launch: Launch, env: dict[str, str] | None = None) -> None:
        self.popen = subprocess.Popen(launch.command, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      start_new_session=True, env=env)
        self._out = b""
        self._err = b""
        self.stderr_tail: list[str] = []
        self.out_closed = False
        self.err_closed = False
        assert self.popen.stdin is not None
        try:
            self.popen.stdin.write(json.dumps(_AGENT_SOURCE).encode() + b"\n")
            self.popen.stdin.write(json.dumps(launch.header).encode() + b"\n")
            self.popen.stdin.flush()
        except BrokenPipeError:  # ssh already gave up; its exit and stderr say why
            pass

    @property
    def pid(self) -> int:
        return self.popen.pid

    def fds(self) -> list[int]:
        fds = []
        if not self.out_closed:
            fds.append(self.popen.stdout.fileno())
        if not self.err_closed:
            fds.append(self.popen.stderr.fileno())
        return fds

    def read_ready(self, fd: int) -> tuple[list[tuple[str, dict]], list[str]]:
        """Read what ``fd`` (one of :meth:`fds`) has: (events, log lines)."""
        chunk = os.read(fd, 65536)
        if fd == self.popen.stdout.fileno():
            if not chunk:
                self.out_closed = True
            self._out, lines = _lines(self._out + chunk, final=not chunk)
            return [event for event in map(_event, lines) if event is not None], []
        if not chunk:
            self.err_closed = True
        self._err, lines = _lines(self._err + chunk, final=not chunk)
        self.stderr_tail = (self.stderr_tail + lines)[-20:]
        return [], lines

    @property
    def finished(self) -> bool:
        """Both pipes at end-of-file: the keeper (or ssh) has exited, or is about to."""
        return self.out_closed and self.err_closed

    def stop(self) -> None:
        """Close the keeper's standard input: it stops its worker and cleans up."""
        if self.popen.stdin is not None and not self.popen.stdin.closed:
            try:
                self.popen.stdin.close()
            except BrokenPipeError:
                pass

    def reap(self, timeout: float) -> int:
        """Wait for the keeper (or ssh) to exit; killed at the deadline. Its exit code."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.send_signal(signal.SIGKILL)
            return self.popen.wait()
        finally:
            for pipe in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
                try:
                    if pipe is not None:
                        pipe.close()
                except OSError:
                    pass


def _lines(buffered: bytes, final: bool) -> tuple[bytes, list[str]]:
    *lines, rest = buffered.split(b"\n")
    if final and rest:
        lines, rest = lines + [rest], b""
    return rest, [line.decode(errors="replace") for line in lines]


def _event(line: str) -> tuple[str, dict] | None:
    for prefix, kind in ((agent.READY, "ready"), (agent.EXIT, "exit")):
        if line.startswith(prefix):
            try:
                return kind, json.loads(line[len(prefix):])
            except ValueError:
                return None
    return None
