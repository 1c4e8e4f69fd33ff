"""The supervisor behind ``syftzmq cluster up``: start every worker, keep them running, stop them.

One-for-one, as in Erlang/OTP or ipcluster: a worker that dies is started again, alone, as a
new incarnation at the same address, after a back-off that doubles with each recent restart;
past ``max_restarts`` within ``window`` seconds it is given up (logged) and the others go on.
The others are never touched: their data stays where it was.

Every worker runs under a keeper (:mod:`syftzmq.deploy.agent`) whose standard input is its
lifeline, started directly or over SSH (:mod:`syftzmq.deploy.launch`). The supervisor's loop
waits on the keepers' pipes — a worker's death arrives as end-of-file, no polling — plus a
self-pipe for signals and a timer for restarts and health pings. Stopping closes every
keeper's input and waits for them to finish cleaning up; if this process is killed instead,
the same end-of-file reaches every keeper, locally and across SSH.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from .launch import AgentProcess, launch_for, worker_files
from .spec import Deployment, Placement
from .state import read_state, state_path, write_state


class ClusterAlreadyUp(RuntimeError):
    """Another ``cluster up`` supervises this cluster file."""


class StartupFailed(RuntimeError):
    """A worker did not start, or does not answer a ping, before the deadline."""


@dataclass(frozen=True)
class RestartPolicy:
    max_restarts: int = 5      # restarts of one worker allowed within ``window`` seconds
    window: float = 60.0
    backoff: float = 0.5       # seconds before the first restart; doubles per recent restart
    max_backoff: float = 10.0

    def delay(self, recent: int) -> float:
        return min(self.max_backoff, self.backoff * 2 ** recent)


class StopSignal:
    """A flag that SIGINT/SIGTERM/SIGHUP set, with a pipe that wakes the supervisor's select."""

    def __init__(self) -> None:
        self.fd, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self.reason: str | None = None

    def set(self, reason: str = "stop requested") -> None:
        self.reason = self.reason or reason
        try:
            os.write(self._write, b"x")
        except OSError:
            pass

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, lambda n, _f: self.set(signal.Signals(n).name))

    def drain(self) -> None:
        try:
            os.read(self.fd, 64)
        except BlockingIOError:
            pass


@dataclass
class Slot:
    """One worker of the cluster and its current incarnation."""

    placement: Placement
    bind: str
    address: str
    state: str = "new"  # starting | running | backoff | failed | stopping | stopped
    agent: AgentProcess | None = None
    incarnation: int = 0
    incarnation_id: str | None = None
    pid: int | None = None
    started_at: float | None = None
    start_deadline: float = 0.0
    restart_at: float = 0.0
    restart_times: deque = field(default_factory=deque)
    last_heard: float | None = None
    last_exit: str | None = None
    handle: Any = None

    @property
    def id(self) -> str:
        return self.placement.worker.id

    def record(self) -> dict:
        return {"id": self.id, "host": self.placement.host, "address": self.address,
                "state": self.state, "incarnation": self.incarnation, "incarnation_id": self.incarnation_id,
                "pid": self.pid, "agent_pid": self.agent.pid if self.agent else None,
                "started_at": self.started_at, "restarts": max(0, self.incarnation - 1),
                "last_heard": self.last_heard, "last_exit": self.last_exit}


class Supervisor:
    """Runs a :class:`Deployment` until :class:`StopSignal` is set."""

    def __init__(self, deployment: Deployment, *, log_level: str = "INFO",
                 threads: int | None = None, policy: RestartPolicy = RestartPolicy(),
                 start_timeout: float = 120.0, ping_timeout: float = 10.0,
                 health_interval: float = 5.0, say: Callable[[str], None] | None = None,
                 relay_log: Callable[[str, str], None] | None = None) -> None:
        self.deployment = deployment
        self.log_level = log_level
        self.threads = threads
        self.policy = policy
        self.start_timeout = start_timeout
        self.ping_timeout = ping_timeout
        self.health_interval = health_interval
        self.say = say or (lambda text: print(text, flush=True))
        self.relay_log = relay_log or (lambda wid, line: print(f"[{wid}] {line}", file=sys.stderr,
                                                               flush=True))
        self.slots = [Slot(p, p.worker.bind, p.worker.address) for p in deployment.placements]
        self.state_file = state_path(deployment.path)
        self.started_at = time.time()
        self._files = worker_files(deployment) if deployment.remote else {}
        self._serving = False
        self._next_health = 0.0

    # ------------------------------------------------------------------ the whole run
    def run(self, stop: StopSignal) -> int:
        """Start, supervise until ``stop``, stop. 0: stopped on request; 1: did not start, or
        every worker was given up."""
        if read_state(self.state_file) is not None:
            raise ClusterAlreadyUp(f"{self.deployment.path} is already up (state in "
                                   f"{self.state_file}); run `syftzmq cluster down` first")
        self._write_state()
        try:
            try:
                self._start_all(stop)
            except StartupFailed as exc:
                self.say(f"cluster did not start: {exc}")
                return 1
            if stop.reason is not None:
                self.say(f"interrupted ({stop.reason}) before every worker was ready")
                return 1
            self._serving = True
            self.say(f"all {len(self.slots)} workers ready; Ctrl-C stops them")
            return self._supervise(stop)
        finally:
            self._stop_all()
            try:
                self.state_file.unlink()
            except FileNotFoundError:
                pass
            self.say("all workers stopped")

    def _start_all(self, stop: StopSignal) -> None:
        for slot in self.slots:
            self._start(slot)
        deadline = time.monotonic() + self.start_timeout + 15
        while stop.reason is None and any(s.state == "starting" for s in self.slots):
            if time.monotonic() > deadline:
                late = [s.id for s in self.slots if s.state == "starting"]
                raise StartupFailed(f"not ready within {self.start_timeout:.0f} s: "
                                    f"{', '.join(late)}")
            self._wait(stop, deadline - time.monotonic())
        for slot in self.slots:
            if stop.reason is not None:
                return
            self._connect(slot)
            pid = f" (pid {slot.pid})" + (f" on {slot.placement.host}" if slot.placement.host else "")
            self.say(f"worker {slot.id} ready at {slot.address}{pid}")
        self._write_state()

    def _supervise(self, stop: StopSignal) -> int:
        self._next_health = time.monotonic() + self.health_interval
        while stop.reason is None:
            now = time.monotonic()
            for slot in self.slots:
                if slot.state == "backoff" and now >= slot.restart_at:
                    slot.restart_times.append(now)
                    self._start(slot)
                elif slot.state == "starting" and now > slot.start_deadline:
                    self.say(f"worker {slot.id} not ready within {self.start_timeout:.0f} s; "
                             f"stopping that attempt")
                    slot.agent.stop()
                    slot.start_deadline = float("inf")
            if now >= self._next_health:
                self._check_health()
                self._next_health = now + self.health_interval
            if all(slot.state == "failed" for slot in self.slots):
                self.say("every worker was given up; stopping")
                return 1
            self._wait(stop, self._next_timer() - time.monotonic())
        return 0

    # ------------------------------------------------------------------ one worker
    def _start(self, slot: Slot) -> None:
        launch = launch_for(self.deployment, slot.placement, slot.bind, slot.address,
                            log_level=self.log_level, threads=self.threads,
                            start_timeout=self.start_timeout, files=self._files)
        slot.incarnation += 1
        slot.state = "starting"
        slot.start_deadline = time.monotonic() + self.start_timeout + 15
        slot.incarnation_id = slot.pid = None
        try:
            slot.agent = AgentProcess(launch)
        except OSError as exc:
            slot.agent = None
            what = "ssh" if slot.placement.host else slot.placement.python
            self._died(slot, f"could not run {what}: {exc}")
        self._write_state()

    def _on_ready(self, slot: Slot, info: dict) -> None:
        slot.incarnation_id, slot.pid = info.get("incarnation"), info.get("pid")
        slot.started_at = time.time()
        endpoint = info.get("endpoint", "")
        if slot.bind.endswith(":*"):  # the next incarnation must come back at the same address
            slot.bind = endpoint
        if slot.address.endswith(":*"):
            slot.address = endpoint
        slot.state = "running"
        if self._serving:
            try:
                self._connect(slot)
            except StartupFailed as exc:
                self.say(f"worker {slot.id} restarted but {exc}")
            self.say(f"worker {slot.id} restarted at {slot.address} (pid {slot.pid}, "
                     f"incarnation {slot.incarnation})")
        self._write_state()

    def _connect(self, slot: Slot) -> None:
        """A PING through the client API: proves the worker answers from here, keys and all."""
        from ..client.handles import Worker
        from ..errors import SyftZmqError
        spec = self.deployment.cluster
        try:
            slot.handle = Worker(None, slot.id, slot.address, key_file=spec.key_file,
                                 curve_dir=spec.curve_dir, timeout=self.ping_timeout)
        except (SyftZmqError, ValueError, OSError) as exc:
            raise StartupFailed(f"worker {slot.id} runs on {slot.placement.where} but does not "
                                f"answer at {slot.address} from here within "
                                f"{self.ping_timeout:.0f} s ({exc}); check that the address is "
                                f"reachable from this host and that the keys match") from exc
        slot.last_heard = time.time()

    def _on_finished(self, slot: Slot) -> None:
        agent = slot.agent
        code = agent.reap(10.0)
        slot.agent = None
        if slot.state in ("stopping", "stopped"):
            slot.state = "stopped"
            return
        reason = slot.last_exit or _describe_exit(slot, code, agent.stderr_tail)
        self._died(slot, reason, agent.stderr_tail)

    def _died(self, slot: Slot, reason: str, stderr_tail: list[str] = ()) -> None:
        slot.last_exit = reason
        if not self._serving:
            slot.state = "failed"
            tail = "\n  ".join(stderr_tail[-5:])
            raise StartupFailed(f"worker {slot.id} on {slot.placement.where}: {reason}"
                                + (f"\n  {tail}" if tail else ""))
        now = time.monotonic()
        while slot.restart_times and now - slot.restart_times[0] > self.policy.window:
            slot.restart_times.popleft()
        recent = len(slot.restart_times)
        if recent >= self.policy.max_restarts:
            slot.state = "failed"
            self.say(f"worker {slot.id} {reason}; given up after {recent} restarts within "
                     f"{self.policy.window:.0f} s (the other workers keep running)")
        else:
            delay = self.policy.delay(recent)
            slot.state, slot.restart_at = "backoff", now + delay
            self.say(f"worker {slot.id} {reason}; restarting in {delay:.1f} s "
                     f"(restart {recent + 1} of at most {self.policy.max_restarts} within "
                     f"{self.policy.window:.0f} s)")
        self._write_state()

    def _check_health(self) -> None:
        """Ping every running worker: ``last heard`` for ``cluster status``."""
        changed = False
        for slot in self.slots:
            if slot.state == "running" and slot.handle is not None:
                try:
                    slot.handle.ping(timeout=min(2.0, self.health_interval))
                    slot.last_heard = time.time()
                    changed = True
                except Exception:  # busy or frozen: status shows how long ago it answered
                    pass
        if changed:
            self._write_state()

    # ------------------------------------------------------------------ the loop
    def _next_timer(self) -> float:
        times = [self._next_health]
        times += [s.restart_at for s in self.slots if s.state == "backoff"]
        times += [s.start_deadline for s in self.slots if s.state == "starting"]
        return min(times)

    def _wait(self, stop: StopSignal | None, timeout: float) -> None:
        """Wait for keeper output (or a stop) up to ``timeout``; handle what arrived."""
        owners: dict[int, Slot] = {}
        for slot in self.slots:
            if slot.agent is not None:
                for fd in slot.agent.fds():
                    owners[fd] = slot
        fds = list(owners) + ([stop.fd] if stop is not None else [])
        try:
            readable, _, _ = select.select(fds, [], [], max(0.0, min(timeout, 3600)))
        except InterruptedError:
            return
        for fd in readable:
            if stop is not None and fd == stop.fd:
                stop.drain()
                continue
            slot = owners[fd]
            events, lines = slot.agent.read_ready(fd)
            for line in lines:
                self.relay_log(slot.id, line)
            for kind, payload in events:
                if kind == "ready" and slot.state == "starting":
                    self._on_ready(slot, payload)
                elif kind == "exit":
                    slot.last_exit = _describe_worker_exit(payload)
            if slot.agent is not None and slot.agent.finished:
                self._on_finished(slot)

    def _stop_all(self, timeout: float = 20.0) -> None:
        for slot in self.slots:
            if slot.agent is not None:
                slot.state = "stopping"
                slot.agent.stop()
            elif slot.state != "failed":
                slot.state = "stopped"
        deadline = time.monotonic() + timeout
        while any(s.agent is not None for s in self.slots) and time.monotonic() < deadline:
            self._wait(None, deadline - time.monotonic())
        for slot in self.slots:  # past the deadline: kill what is left (its worker follows)
            if slot.agent is not None:
                slot.agent.reap(0)
                slot.agent = None
                slot.state = "stopped"
        if self._serving:
            from ..client.handles import default_session
            session = default_session()
            for slot in self.slots:
                if slot.handle is not None:
                    session.forget(slot.handle.ref)

    def _write_state(self) -> None:
        write_state(self.state_file, {
            "supervisor_pid": os.getpid(), "started_at": self.started_at,
            "cluster_file": str(self.deployment.path.resolve()),
            "workers": {slot.id: slot.record() for slot in self.slots}})


def _describe_worker_exit(payload: dict) -> str:
    if payload.get("error"):
        return f"could not be started: {payload['error']}"
    code = payload.get("code")
    if code is None:
        return "exited"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _describe_exit(slot: Slot, code: int, stderr_tail: list[str]) -> str:
    """Why a keeper ended without telling us (ssh failed, or the keeper itself was killed)."""
    last = next((line for line in reversed(stderr_tail) if line.strip()), "")
    if slot.placement.host and code == 255:
        return f"ssh to {slot.placement.host} failed or dropped" + (f": {last}" if last else "")
    return f"ended with its keeper (exit code {code})" + (f": {last}" if last else "")
