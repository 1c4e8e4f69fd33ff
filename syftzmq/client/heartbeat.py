"""Lease renewal while the user's code is idle: a daemon thread with sockets of its own.

Workers free the objects of an owner they have not heard from for a lease (see
:mod:`syftzmq.worker.leases`). Every message renews the lease, but a notebook can sit idle for
an hour. This thread sends a small ``RENEW`` to each connected worker every third of the
shortest lease. ZMQ sockets belong to one thread, so it never touches the session's sockets: it
owns one DEALER per worker, created and closed on this thread, carrying the session's process
id (incarnation) in its routing identity — that is what the worker renews.
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
        self._node = incarnation
        self._default_lease = default_lease
        self._targets: dict[str, _Target] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # a new target may need a shorter interval: look now
        self._thread: threading.Thread | None = None
        self.renewals = 0

    def watch(self, incarnation: str, address: str, key: bytes | None, curve: Any,
              lease: float | None) -> None:
        with self._lock:
            known = self._targets.get(incarnation)
            if lease is None and known is not None:
                lease = known.lease  # a reconnect without news keeps what the worker told us
            self._targets[incarnation] = _Target(address, key, curve, lease or self._default_lease)
        self._wake.set()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="syftzmq-heartbeat", daemon=True)
            self._thread.start()

    def forget(self, incarnation: str) -> None:
        with self._lock:
            self._targets.pop(incarnation, None)

    def interval(self) -> float:
        with self._lock:
            leases = [t.lease for t in self._targets.values()] or [self._default_lease]
        return max(0.05, min(30.0, min(leases) / 3))

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        sockets: dict[str, tuple[zmq.Socket, Signer]] = {}
        try:
            while True:
                self._wake.wait(self.interval())
                self._wake.clear()
                if self._stop.is_set():
                    break
                with self._lock:
                    targets = dict(self._targets)
                for incarnation in [n for n in sockets if n not in targets]:
                    sockets.pop(incarnation)[0].close(linger=0)
                for incarnation, target in targets.items():
                    if incarnation not in sockets:
                        sockets[incarnation] = (self._open(target), Signer(target.key))
                    sock, signer = sockets[incarnation]
                    msg = message(RENEW, origin=self._node, **{ADDRESSED_TO: incarnation})
                    try:
                        sock.send_multipart(pack(signer, *dumps(msg)), zmq.NOBLOCK)
                        self.renewals += 1
                    except zmq.ZMQError:  # queue full: the worker is gone or swamped; try later
                        pass
        except Exception:  # the context was terminated under us: the session is closing
            log.debug("heartbeat stopped", exc_info=True)
        finally:
            for sock, _ in sockets.values():
                sock.close(linger=0)

    def _open(self, target: _Target) -> zmq.Socket:
        return open_dealer(self._context, self._node, target.address, send_hwm=4,
                           curve=target.curve, linger_ms=0)
