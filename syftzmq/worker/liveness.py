"""A worker's liveness: the endpoint that answers probes, and the probes it sends its peers.

**The endpoint.** Every worker binds a second ROUTER, its *liveness socket*, served by a daemon
thread of its own (:class:`LivenessEndpoint`) with its own socket and its own
:class:`~syftzmq.wire.envelope.Signer` (the same key, a separate replay window), CURVE-protected
like the main ROUTER when CURVE is on. The thread never touches the store or the loop's
sockets; it reads a few plain attributes the loop updates (:class:`LoopState`). A torch
operation releases the GIL, so the thread answers during a long matrix product; pure Python
code is made to yield the GIL every few milliseconds (``sys.getswitchinterval``). A worker
frozen by SIGSTOP, or killed, answers nothing: that is what a prober detects. It answers only
signed probes (when the cluster has a key) that name its incarnation; anything else is dropped
unanswered, or, naming another incarnation, answered with an error naming this one, so a
client finds a restarted worker at once. The message format and the judging rule are in
:mod:`syftzmq.wire.liveness`.

Where it binds (:func:`liveness_bind`): for ``tcp://HOST:PORT`` the same interface and a port
the OS chooses; for ``ipc://PATH`` the path ``PATH.live``; ``--liveness-bind`` overrides it.
What it announces (:func:`liveness_address`): the advertised main address with the liveness
port (so ``--advertise`` covers both), announced in the worker's
:class:`~syftzmq.core.refs.WorkerRef` (``liveness``) and in its ready line.

**Peers.** A worker that waits for a peer — a chain hop's flush acknowledgement, a move's store
confirmation on the destination — waits as long as the peer answers probes
(:class:`PeerLiveness`, driven from the loop, never blocking), and fails what waits for it
with :class:`~syftzmq.errors.WorkerUnavailable` naming the peer only when the peer is dead by
that rule. The client learns the chain's liveness through the first hop: the hop is alive,
answering the client's probes, while it waits on a live peer.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable

import zmq

from ..core.refs import WorkerRef, sender_incarnation
from ..errors import ProtocolError
from ..wire.envelope import Signer
from ..wire.liveness import ALIVE, MAX_PROBE_BYTES, Probe, decode, encode, timing

log = logging.getLogger("syftzmq.worker")



@dataclass
class LoopState:
    """What the loop tells the liveness thread, by plain attribute writes (atomic reads)."""

    current_started: float | None = None  # monotonic time the loop entered the current message
    handled: int = 0  # messages the loop has taken so far
    awaiting_peers: int = 0  # replies it awaits from peers


def liveness_bind(bind: str, endpoint: str) -> str:
    """Where the liveness socket binds, derived from the main socket's bound ``endpoint``."""
    if endpoint.startswith("ipc://"):
        return endpoint + ".live"
    if endpoint.startswith("tcp://"):
        host = bind[len("tcp://"):].rpartition(":")[0] or endpoint[len("tcp://"):].rpartition(":")[0]
        return f"tcp://{host}:*"
    raise ValueError(f"no liveness endpoint can be derived from {endpoint!r}; "
                     f"give --liveness-bind")


def liveness_address(advertised: str, bound: str) -> str:
    """The liveness address others use: the advertised host with the bound liveness port."""
    if advertised.startswith("tcp://") and bound.startswith("tcp://"):
        host = advertised[len("tcp://"):].rpartition(":")[0]
        port = bound.rpartition(":")[2]
        return f"tcp://{host}:{port}"
    return bound


class LivenessEndpoint:
    """The liveness socket and the daemon thread that answers it."""

    def __init__(self, context: zmq.Context, bind: str, incarnation: str, key: bytes | None,
                 state: LoopState, curve: Any = None) -> None:
        self.incarnation = incarnation
        self.state = state
        self._signer = Signer(key)
        self.answered = 0
        self.rejected = 0
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()  # stop() wakes the thread's poll at once
        self.socket = context.socket(zmq.ROUTER)
        try:
            self.socket.setsockopt(zmq.LINGER, 0)
            self.socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
            self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_PROBE_BYTES)
            self.socket.setsockopt(zmq.RCVHWM, 100)
            self.socket.setsockopt(zmq.SNDHWM, 100)
            if curve is not None:  # the main ROUTER's ZAP handler serves this socket too
                self.socket.curve_secretkey = curve.secret
                self.socket.curve_publickey = curve.public
                self.socket.curve_server = True
            self.socket.bind(bind)
        except BaseException:
            self.socket.close(linger=0)
            os.close(self._wake_r)
            os.close(self._wake_w)
            raise
        self.endpoint = self.socket.getsockopt(zmq.LAST_ENDPOINT).decode()
        # the socket is handed to the thread before it starts, and never used here again
        self._thread = threading.Thread(target=self._run, name="syftzmq-liveness", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop answering; the thread closes its socket (before the context terminates)."""
        if self._stop.is_set():
            return
        self._stop.set()
        try:
            os.write(self._wake_w, b"x")
        except BrokenPipeError:  # the thread ended already (it failed), closing the other end
            pass
        if self._thread.is_alive():
            self._thread.join(timeout)
        elif self._thread.ident is None:  # never started: nobody else closes these
            self.socket.close(linger=0)
            os.close(self._wake_r)
        os.close(self._wake_w)
        if self.endpoint.startswith("ipc://") and not self.endpoint.startswith("ipc://@"):
            try:
                os.unlink(self.endpoint[len("ipc://"):])
            except FileNotFoundError:
                pass

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if self.socket in dict(poller.poll()):
                    self._answer_waiting()
        except Exception:
            if not self._stop.is_set():
                log.exception("the liveness endpoint failed; this worker will look dead to "
                              "clients that wait for it")
        finally:
            self.socket.close(linger=0)
            os.close(self._wake_r)

    def _answer_waiting(self) -> None:
        for _ in range(100):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) < 2:
                continue
            try:
                answer = self._answer(frames[0], frames[1:])
            except Exception:  # whatever a probe does to its decoding, it ends no thread
                self.rejected += 1
                log.debug("a liveness probe could not be answered", exc_info=True)
                continue
            if answer is None:
                continue
            try:
                self.socket.send_multipart([frames[0], *encode(self._signer, answer)], zmq.NOBLOCK)
                self.answered += 1
            except zmq.ZMQError:  # the prober went away, or stopped reading
                pass

    def _answer(self, identity: bytes, frames: list) -> dict | None:
        try:
            probe = decode(self._signer, frames)
        except ProtocolError as exc:  # not authentic: nobody is owed an answer
            self.rejected += 1
            log.debug("liveness probe from %r rejected: %s", sender_incarnation(identity), exc)
            return None
        req = probe.get("req")
        if probe.get("kind") != ALIVE or type(req) is not int:
            self.rejected += 1
            return None
        if probe.get("to") != self.incarnation:
            return {"kind": "reply", "req": req, "incarnation": self.incarnation,
                    "error": f"this liveness endpoint answers for {self.incarnation!r}, not "
                             f"{probe.get('to')!r}: the worker was restarted, and the objects "
                             f"of its earlier incarnation are gone"}
        started = self.state.current_started
        return {"kind": "reply", "req": req, "value": {
            "incarnation": self.incarnation,
            "busy_for": None if started is None else round(time.monotonic() - started, 3),
            "handled": self.state.handled, "awaiting_peers": self.state.awaiting_peers}}


class PeerLiveness:
    """Probes of the peers this worker waits for, driven from its loop (never blocking).

    The loop calls :meth:`check` each turn with the peers something waits on; it returns those
    that are dead by the rule of :mod:`syftzmq.wire.liveness`. A peer nothing waits on any more
    is no longer probed (its socket stays open for the next wait).
    """

    def __init__(self, context: zmq.Context, own_incarnation: str, key: bytes | None,
                 poller: zmq.Poller, curve: Any = None, timeout: float = 5.0) -> None:
        self._context = context
        self._own = own_incarnation
        self._key = key
        self._poller = poller
        self._curve = curve
        self.timeout = timeout
        self._probes: dict[str, Probe] = {}
        self._watching: set[str] = set()
        self._intervals: dict[str, float] = {}

    def check(self, peers: Iterable[tuple[WorkerRef, float | None]],
              now: float | None = None) -> list[tuple[WorkerRef, float]]:
        """Probe the awaited ``peers``, each judged by its requester's liveness deadline (or
        this worker's own when none was given, and never a longer one); the ones found dead
        (each reported once per wait), with the deadline that condemned them."""
        now = time.monotonic() if now is None else now
        awaited = {peer.incarnation: (peer, min(self.timeout, asked or self.timeout))
                   for peer, asked in peers}
        self._watching &= set(awaited)
        for probe in self._probes.values():
            probe.read()  # late answers too: a readable socket left unread would spin the poll
        dead = []
        self._intervals = {}
        for incarnation, (peer, timeout) in awaited.items():
            interval, grace = timing(timeout)
            self._intervals[incarnation] = interval
            probe = self._probe(peer)
            if incarnation not in self._watching:
                probe.begin(now, interval)
                self._watching.add(incarnation)
            probe.service(interval, now)
            if probe.dead(timeout, grace, now):
                dead.append((peer, timeout))
                self._watching.discard(incarnation)
        return dead

    def detail(self, peer: WorkerRef, timeout: float) -> str:
        """Why ``peer`` counts as dead, for the error that names it."""
        probe = self._probes.get(peer.incarnation)
        if probe is not None and probe.stale:
            return probe.stale
        if peer.liveness is None:
            return f"no answer within {timeout:.1f} s (it announced no liveness endpoint)"
        return f"no liveness answer for {timeout:.1f} s (killed, frozen or unreachable)"

    def __bool__(self) -> bool:
        """Whether :meth:`check` has anything to do (a probe to read, a peer watched)."""
        return bool(self._probes or self._watching)

    def next_due(self) -> float | None:
        """When the loop must look again (the next probe, or a verdict)."""
        if not self._watching:
            return None
        return min(self._probes[i].next_due(self._intervals.get(i, 1.0)) for i in self._watching)

    def _probe(self, peer: WorkerRef) -> Probe:
        probe = self._probes.get(peer.incarnation)
        if probe is None:
            probe = Probe(self._context, self._own, peer.incarnation, peer.liveness, self._key,
                          self._curve)
            self._probes[peer.incarnation] = probe
            if probe.socket is not None:
                self._poller.register(probe.socket, zmq.POLLIN)
        return probe

    def forget(self, incarnation: str) -> None:
        probe = self._probes.pop(incarnation, None)
        self._watching.discard(incarnation)
        if probe is not None:
            if probe.socket is not None:
                self._poller.unregister(probe.socket)
            probe.close()

    def close(self) -> None:
        for incarnation in list(self._probes):
            self.forget(incarnation)
