"""Lease renewal while the user's code is idle: a daemon thread with sockets of its own.

Workers free the objects of an owner they have not heard from for a lease (see
:mod:`syftzmq.worker.leases`). Every message renews the lease, but a notebook can sit idle for
an hour. This thread sends a small ``RENEW`` to each connected worker every third of the
shortest lease. ZMQ sockets belong to one thread, so it never touches the session's sockets: it
owns one DEALER per worker, created and closed on this thread, carrying the session's process
id (incarnation) in its routing identity — that is what the worker renews.

A heartbeat that stops is worse than a crash: leases expire silently and the user's objects
vanish an idle while later. So nothing here is allowed to end it quietly. A renewal that fails
(other than a full queue, which only means the worker is gone or swamped) closes that socket,
to be reopened next round, and is logged with its stack, without costing other workers
their renewals; an error in a whole round is logged
and the round starts over on fresh sockets; and if the thread dies anyway (an exception that
is not an ``Exception``), the session's next observation finds it dead and starts a new one
(:meth:`Heartbeat.ensure_running`), with a warning.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import zmq

from ..core.messages import ADDRESSED_TO, RENEW, message
from ..wire.dealer import open_dealer
from ..wire import Signer, dumps, pack

log = logging.getLogger("syftzmq.client")


@dataclass(frozen=True)
class _Target:
    address: str
    key: bytes | None
    curve: Any
    lease: float


class Heartbeat:
    """Renews this client's leases at every watched worker until stopped."""

    def __init__(self, context: zmq.Context, incarnation: str, default_lease: float) -> None:
        self._context = context
        self._incarnation = incarnation
        self._default_lease = default_lease
        self._targets: dict[str, _Target] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # a new target may need a shorter interval: look now
        self._thread: threading.Thread | None = None
        self._ended = False  # the thread ran and ended (set by the thread itself)
        self.renewals = 0
        self.failures = 0  # rounds or renewals that raised (each one logged)
        self.restarts = 0  # times a dead thread was started again
        # Failures that repeat (the last round, or the last renewal at a target, failed too)
        # are logged at debug level: the first one's warning has said it.
        self._failing = False
        self._failing_targets: set[str] = set()

    def watch(self, incarnation: str, address: str, key: bytes | None, curve: Any,
              lease: float | None) -> None:
        with self._lock:
            known = self._targets.get(incarnation)
            if lease is None and known is not None:
                lease = known.lease  # a reconnect without news keeps what the worker told us
            self._targets[incarnation] = _Target(address, key, curve, lease or self._default_lease)
        self._wake.set()
        if self._thread is None:
            self._start()

    def forget(self, incarnation: str) -> None:
        with self._lock:
            self._targets.pop(incarnation, None)
            self._failing_targets.discard(incarnation)

    def interval(self) -> float:
        with self._lock:
            leases = [t.lease for t in self._targets.values()] or [self._default_lease]
        return max(0.05, min(30.0, min(leases) / 3))

    def ensure_running(self) -> None:
        """Start the thread again if it died: called before every observation, so a dead
        heartbeat is noticed (and logged) while the leases it should renew are still valid."""
        if not self._ended:  # a plain flag: asking the thread costs a lock per observation
            return
        thread = self._thread
        if thread is None or thread.is_alive() or self._stop.is_set():
            return
        self.restarts += 1
        log.warning("the lease heartbeat thread had died (see the error logged before); "
                    "started it again so the workers keep this client's objects")
        self._start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _start(self) -> None:
        self._ended = False
        self._thread = threading.Thread(target=self._run, name="syftzmq-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """Rounds until stopped; however the thread ends, it says so (``_ended``)."""
        try:
            self._rounds()
        finally:
            if threading.current_thread() is self._thread:
                self._ended = True

    def _rounds(self) -> None:
        """Rounds until stopped; a round that raises is logged and the next starts afresh."""
        while not self._stop.is_set():
            sockets: dict[str, tuple[zmq.Socket, Signer]] = {}
            try:
                self._beat(sockets)
            except Exception:
                if self._stop.is_set():  # the context was terminated under us: closing
                    log.debug("heartbeat stopped while closing", exc_info=True)
                    return
                self.failures += 1
                (log.debug if self._failing else log.warning)(
                    "the lease heartbeat failed; it starts over on new sockets", exc_info=True)
                self._failing = True  # no extra wait: the next round waits its interval first
            finally:
                for sock, _ in sockets.values():
                    sock.close(linger=0)

    def _beat(self, sockets: dict[str, tuple[zmq.Socket, Signer]]) -> None:
        """Renew at every target each interval, on ``sockets`` (opened and closed here)."""
        while True:
            self._wake.wait(self.interval())
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._lock:
                targets = dict(self._targets)
            for incarnation in [n for n in sockets if n not in targets]:
                sockets.pop(incarnation)[0].close(linger=0)
            for incarnation, target in targets.items():
                self._renew_at(incarnation, target, sockets)
            if self._failing:
                self._failing = False
                log.warning("the lease heartbeat works again")

    def _renew_at(self, incarnation: str, target: _Target,
                  sockets: dict[str, tuple[zmq.Socket, Signer]]) -> None:
        """Renew at one target; a failure there is logged and its socket reopened next round,
        so one unreachable worker never costs the others their renewals."""
        try:
            if incarnation not in sockets:
                sockets[incarnation] = (self._open(target), Signer(target.key))
            self._renew(incarnation, *sockets[incarnation])
            self._failing_targets.discard(incarnation)
        except Exception:
            if self._stop.is_set():
                raise
            self.failures += 1
            (log.debug if incarnation in self._failing_targets else log.warning)(
                "renewing the lease at %s failed; its socket is reopened next round",
                incarnation, exc_info=True)
            self._failing_targets.add(incarnation)
            failed = sockets.pop(incarnation, None)
            if failed is not None:
                failed[0].close(linger=0)

    def _renew(self, incarnation: str, sock: zmq.Socket, signer: Signer) -> None:
        """Send one ``RENEW``; a full queue only means the worker is gone or swamped (next
        round tries again), any other socket error raises."""
        msg = message(RENEW, origin=self._incarnation, **{ADDRESSED_TO: incarnation})
        try:
            sock.send_multipart(pack(signer, *dumps(msg)), zmq.NOBLOCK)
        except zmq.Again:
            return
        self.renewals += 1

    def _open(self, target: _Target) -> zmq.Socket:
        return open_dealer(self._context, self._incarnation, target.address, send_hwm=4,
                           curve=target.curve, linger_ms=0)
