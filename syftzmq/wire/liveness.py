"""Liveness probes: "are you alive?" asked of a worker's *liveness endpoint*, apart from its work.

Busy is not dead. A worker inside a 60 s matrix product, a plan that trains for minutes or a
deep queue of bulk stores cannot answer a request until it is done, but a thread of its own
(:mod:`syftzmq.worker.liveness`) answers probes all the while. So whoever waits for a worker —
a client waiting for a reply, a worker waiting for a peer's flush acknowledgement or a move's
store confirmation — waits as long as the worker answers probes, and declares it dead (killed,
frozen by SIGSTOP, unreachable) when probes stop being answered for the *liveness deadline*.
This module is the part both sides share: the message format and :class:`Probe`, one DEALER
to one liveness endpoint with the rule that judges it.

The messages travel in the ordinary signed envelope (:func:`~syftzmq.wire.envelope.pack`, one
frame), but their body is JSON, not a pickle: the liveness thread never unpickles anything, so
even a forged message that passed the signature could not run code there, and it never holds
the GIL for long. A probe ``{"kind": "alive?", "req": N, "to": incarnation, "nonce": ...}``
gets ``{"kind": "reply", "req": N, "value": {"incarnation": ..., "busy_for": s|None,
"handled": n, "awaiting_peers": n}}``; a probe naming another incarnation gets ``{"kind":
"reply", "req": N, "error": text, "incarnation": ...}``: a restarted worker is found at once.
(``busy_for`` is how long the worker's loop has been inside one message: seconds, not a clock
reading, because clocks of two hosts do not compare. It is for diagnostics only.)

**The rule.** An answer to a probe sent at time ``s`` proves the worker was alive after ``s``.
A target is *dead* when two things hold: nothing proves it alive for ``timeout`` seconds
(since the later of the last answered probe's sending and the start of the watch), and the
oldest unanswered probe has waited ``grace`` seconds. The second part keeps a waiter that was
itself busy (a worker's loop inside a long operation, sending no probes) from judging a peer
by silence it caused: it probes first and gives the answer time to come.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import zmq

from ..core.ids import new_id
from ..errors import ProtocolError
from .dealer import open_dealer
from .envelope import Signer, pack, unpack

_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)  # plain ints: enum arithmetic costs calls

ALIVE = "alive?"
MAX_PROBE_BYTES = 4096  # a liveness socket refuses anything larger at the envelope
DEFAULT_INTERVAL = 1.0


def encode(signer: Signer, body: dict) -> list:
    """The frames of one liveness message (a signed one-frame envelope over JSON)."""
    return pack(signer, json.dumps(body, separators=(",", ":")).encode())


def decode(signer: Signer, frames: list) -> dict:
    """The body of a verified liveness message; :class:`ProtocolError` if it is not one."""
    if len(frames) != 1:  # (:func:`encode` makes one frame; never a frames or shared-memory
        raise ProtocolError("a liveness message is one frame")  # envelope, which names segments)
    header = unpack(signer, frames, MAX_PROBE_BYTES)
    try:
        body = json.loads(header[0])
    except (ValueError, RecursionError):  # (JSON nested too deep for the parser: the latter)
        raise ProtocolError("a liveness message is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("kind"), str):
        raise ProtocolError("a liveness message must be a JSON object with a 'kind'")
    return body


def probe_message(req: int, incarnation: str) -> dict:
    # the nonce makes every probe's signature new (the endpoint rejects replays)
    return {"kind": ALIVE, "req": req, "to": incarnation, "nonce": os.urandom(8).hex()}


def timing(timeout: float, interval: float = DEFAULT_INTERVAL) -> tuple[float, float]:
    """``(interval, grace)`` for a liveness deadline: at least three probes fit in one
    deadline, and an unanswered probe is given two intervals (at most the deadline)."""
    interval = min(interval, timeout / 3)
    return interval, min(timeout, 2 * interval)


class Probe:
    """One DEALER to one worker's liveness endpoint, and what its answers prove.

    ``address`` may be ``None`` (a worker that announced no liveness endpoint): nothing is
    sent, and the rule then declares it dead ``timeout`` after the watch began, which is the
    plain deadline on an answer that syftzmq had before liveness existed.

    One owner thread, like every ZMQ socket. Call :meth:`begin` when a wait starts, then
    :meth:`service` whenever the socket is readable or a probe is due (:meth:`next_due`).
    """

    def __init__(self, context: zmq.Context, own_incarnation: str, incarnation: str,
                 address: str | None, key: bytes | None, curve: Any = None) -> None:
        self.incarnation = incarnation
        self.address = address
        self._signer = Signer(key)
        self.socket: zmq.Socket | None = None
        if address:
            # a probe that cannot leave at once is worthless later: never queue many
            self.socket = open_dealer(context, own_incarnation, address, send_hwm=4, curve=curve,
                                      linger_ms=0)
        self._sent: dict[int, float] = {}  # unanswered probes: req -> when sent
        self.started = time.monotonic()
        self.proven_at = self.started  # the worker was alive after this moment
        self.last_sent = float("-inf")
        self._first_due = self.started
        self.answered = 0
        self.stale: str | None = None  # the endpoint is another incarnation's: why
        self.last_answer: dict = {}

    def begin(self, now: float | None = None, first_in: float = DEFAULT_INTERVAL) -> None:
        """A wait starts (at ``now``): the silence before it proves nothing either way, and
        probes of an earlier wait no longer count. The first probe is due ``first_in`` later
        (most waits end before)."""
        self.read()
        self._sent.clear()
        self.started = self.proven_at = time.monotonic() if now is None else now
        self.last_sent = float("-inf")
        self._first_due = self.started + first_in
        self.stale = None

    def next_due(self, interval: float) -> float:
        if self.last_sent < self.started:
            return self._first_due
        return self.last_sent + interval

    def send(self, now: float | None = None) -> None:
        """Send one probe (dropped if the socket's small queue is full: the worker is not
        reading anyway)."""
        now = time.monotonic() if now is None else now
        self.last_sent = now
        if self.socket is None:
            return
        req = new_id()
        try:
            self.socket.send_multipart(encode(self._signer, probe_message(req, self.incarnation)),
                                       zmq.NOBLOCK)
        except zmq.Again:
            pass
        self._sent[req] = now
        if len(self._sent) > 64:  # a silent target: keep the oldest (it decides) and the newest
            oldest = min(self._sent, key=self._sent.__getitem__)
            self._sent = {oldest: self._sent[oldest],
                          **dict(sorted(self._sent.items(), key=lambda kv: kv[1])[-32:])}

    def read(self) -> None:
        """Take every answer waiting on the socket (never blocks). Asking the socket whether
        one waits is cheaper than the exception an empty read raises, and a waiting loop
        reads its probes every turn."""
        if self.socket is None:
            return
        while self.socket.get(_EVENTS) & _POLLIN:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                body = decode(self._signer, frames)
            except ProtocolError:
                continue  # not authentic: proves nothing
            sent = self._sent.get(body.get("req"))
            if sent is None:
                continue  # an answer to a probe of an earlier wait, already accounted for
            if body.get("error"):
                self.stale = str(body["error"])
                continue
            self.answered += 1
            self.last_answer = body.get("value") or {}
            self.proven_at = max(self.proven_at, sent)
            self._sent = {req: at for req, at in self._sent.items() if at > sent}

    def service(self, interval: float, now: float | None = None) -> None:
        """Read answers, then send a probe if one is due."""
        now = time.monotonic() if now is None else now
        self.read()
        if now >= self.next_due(interval):
            self.send(now)

    def dead(self, timeout: float, grace: float, now: float | None = None) -> bool:
        """Whether the target counts as dead by the rule (see the module docstring)."""
        now = time.monotonic() if now is None else now
        if self.stale is not None:
            return True
        if now - self.proven_at < timeout:
            return False
        if self.socket is None:
            return True
        oldest = min(self._sent.values(), default=None)
        return oldest is not None and now - oldest >= grace

    def silence(self, now: float | None = None) -> float:
        """Seconds since the worker was last proven alive."""
        return (time.monotonic() if now is None else now) - self.proven_at

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None
