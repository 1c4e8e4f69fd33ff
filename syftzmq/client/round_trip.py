"""Round trips: send one request per worker, wait for every reply, and the bookkeeping of which
workers an observation must flush first.

Commands are fire-and-forget, so the session remembers which workers received something since
they last answered (:class:`Pending`): an observation of W first flushes those others (one
parallel round trip), so its answer reflects every earlier command, along chains too. Several
requests are multiplexed over their sockets (:class:`RoundTrips`); replies are matched to
requests by a fresh ``req`` id (:class:`Awaiting`), so a late answer to an ask that was given up
earlier is recognised and dropped. A round trip waits as long as its workers are alive (see
:mod:`syftzmq.client.liveness`), or up to the bound the user gave.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

import zmq

from ..core.ids import new_id
from ..core.messages import DEL
from ..core.refs import WorkerRef
from ..errors import WorkerTimeout, WorkerUnavailable
from .connections import Connections
from .liveness import ClientLiveness
from .stats import Stats


_NONE: frozenset[str] = frozenset()


class Pending:
    """Which workers have received something since they last answered.

    *dirty*: commands (an observation elsewhere must flush them first); *deletes*: only deletes,
    which change no answer but a store listing (a cascade may reach the observed worker, see
    :func:`syftzmq.core.messages.needs_complete_flush`); *handoffs*: workers that handed one of
    their objects' ownership on to this client (a ``FORK`` to the peer holding it, which the
    worker may hold back for a message to ride on, see :mod:`syftzmq.worker.peers`): a store
    listing flushes them completely first, and only a complete flush clears them;
    *unresponsive*: missed a deadline, so deletes to them do not make every later observation
    wait for them, until they answer again.
    """

    def __init__(self) -> None:
        self.dirty: set[str] = set()
        self.deletes: set[str] = set()
        self.handoffs: set[str] = set()
        self.unresponsive: set[str] = set()

    def queued(self, incarnation: str) -> None:
        """A command for ``incarnation`` waits in the outbox (it counts as sent)."""
        self.dirty.add(incarnation)

    def sent(self, incarnation: str, kind: str, carried: Iterable[dict] = ()) -> None:
        """A message of ``kind`` left for ``incarnation``, carrying ``carried`` queued ones."""
        if kind != DEL or any(m["kind"] != DEL for m in carried):
            self.dirty.add(incarnation)
        elif incarnation not in self.unresponsive:
            self.deletes.add(incarnation)

    def handing_off(self, incarnation: str) -> None:
        """``incarnation`` answered with a pointer whose target it handed over to us."""
        if incarnation not in self.unresponsive:
            self.handoffs.add(incarnation)

    def flushed_completely(self, incarnations: Iterable[str]) -> None:
        """``incarnations`` answered a complete flush: their hand-offs have arrived."""
        self.handoffs.difference_update(incarnations)

    def to_flush(self, incarnation: str, complete: bool) -> "set[str] | frozenset[str]":
        """The other workers an observation of ``incarnation`` must flush first."""
        pending = self.dirty | self.deletes | self.handoffs if complete else self.dirty
        if not pending or (len(pending) == 1 and incarnation in pending):
            return _NONE  # the common case: only the observed worker has work in flight
        return {other for other in pending if other != incarnation}

    def answered(self, incarnation: str) -> None:
        self.dirty.discard(incarnation)
        self.deletes.discard(incarnation)
        self.unresponsive.discard(incarnation)

    def timed_out(self, missing: str, asked: Iterable[str]) -> None:
        """``missing`` did not answer (dead, or the call's bound ran out): nothing asked waits
        for the others any more."""
        self.unresponsive.add(missing)
        for incarnation in asked:
            self.dirty.discard(incarnation)
            self.deletes.discard(incarnation)
            self.handoffs.discard(incarnation)

    def forget(self, incarnation: str) -> None:
        self.answered(incarnation)
        self.handoffs.discard(incarnation)


class Awaiting:
    """The replies one round trip waits for, matched by request id."""

    def __init__(self) -> None:
        self._req: dict[int, str] = {}
        self.replies: dict[str, dict] = {}

    def expect(self, incarnation: str) -> int:
        """A fresh request id for the request to ``incarnation``."""
        req = new_id()
        self.expecting(req, incarnation)
        return req

    def expecting(self, req: int, incarnation: str) -> None:
        """The request to ``incarnation`` has the id ``req``."""
        self._req[req] = incarnation

    def req_of(self, incarnation: str) -> int:
        """The id of the request to ``incarnation``."""
        return next(req for req, asked in self._req.items() if asked == incarnation)

    def offer(self, incarnation: str, msg: dict | None) -> bool:
        """Take ``msg`` received from ``incarnation`` if it answers our request; else it is a
        late answer to an ask that timed out (or nothing): dropped."""
        if msg is None or incarnation in self.replies or self._req.get(msg.get("req")) != incarnation:
            return False
        self.replies[incarnation] = msg
        return True

    def adopt(self, other: "Awaiting") -> None:
        """Also wait for what ``other`` expects (several moves' replies in one wait)."""
        self._req.update(other._req)

    def asked(self) -> list[str]:
        """The workers asked, in order."""
        return list(self._req.values())

    def missing(self) -> list[str]:
        """The workers whose reply has not come, in the order they were asked."""
        return [incarnation for incarnation in self._req.values() if incarnation not in self.replies]

    @property
    def complete(self) -> bool:
        return len(self.replies) == len(self._req)


class RoundTrips:
    """Sends requests through the session's one way out and waits for their replies."""

    def __init__(self, connections: Connections, send: Callable[[WorkerRef, dict], None],
                 pending: Pending, stats: Stats, liveness: ClientLiveness) -> None:
        self._connections = connections
        self._send = send
        self._pending = pending
        self._stats = stats
        self.liveness = liveness

    def run(self, requests: dict[str, dict], refs: dict[str, WorkerRef],
            timeout: float | None) -> dict[str, Any]:
        """Send one request per worker, wait for every reply; raise the first error.

        Waits as long as the workers are alive; raises :class:`WorkerUnavailable` naming the
        first worker found dead, or, if ``timeout`` (seconds, counted from the last send)
        bounds the call, :class:`WorkerTimeout` when it runs out.
        """
        awaiting = self.start(requests, refs, timeout)
        return self._results(self.wait(awaiting, refs, timeout))

    def run_one(self, location: WorkerRef, msg: dict, timeout: float | None) -> Any:
        """:meth:`run` of one request: the value of ``location``'s reply to ``msg``.

        The common case, so it builds nothing per request but the request: the reply is
        received directly; only a wait that lasts past the plain wait builds an
        :class:`Awaiting` and goes on as :meth:`wait` does (probing)."""
        incarnation = location.incarnation
        req = self._prepare(msg, new_id())
        self._send(location, msg)
        self._stats.round_trips += 1
        started = time.monotonic()
        answer = self._receive(incarnation, req, started + self.liveness.first_wait(timeout))
        if answer is None:
            awaiting = Awaiting()
            awaiting.expecting(req, incarnation)
            self._wait_alive(awaiting, {incarnation: location}, [incarnation], started, timeout)
            answer = awaiting.replies[incarnation]
        self._pending.answered(incarnation)  # the answering worker is caught up
        return reply_value(answer)

    def start(self, requests: dict[str, dict], refs: dict[str, WorkerRef],
              timeout: float | None) -> Awaiting:
        """Send one request per worker; their replies are :meth:`wait`-ed for (a move's
        reply is awaited only when something depends on it)."""
        awaiting = Awaiting()
        for incarnation, msg in requests.items():
            self._prepare(msg, awaiting.expect(incarnation))
            self._send(refs[incarnation], msg)
        return awaiting

    def _prepare(self, msg: dict, req: int) -> int:
        """Make ``msg`` the request ``req`` (returned): its id and the liveness deadline (a
        worker judges its peers by it too). The call's bound stays here: a worker waits for
        its peers as long as they are alive, whatever the requester's bound."""
        msg["req"] = req
        msg["liveness"] = self.liveness.timeout
        return req

    def wait(self, awaiting: Awaiting, refs: dict[str, WorkerRef],
             timeout: float | None) -> dict[str, dict]:
        """Wait for the replies ``awaiting`` expects (by the rules of :meth:`run`, ``timeout``
        counted from now); the raw replies, by worker. Remote errors are not raised here."""
        self._stats.round_trips += 1
        asked = awaiting.asked()
        started = time.monotonic()
        plain = started + self.liveness.first_wait(timeout)
        if len(asked) == 1:  # the common case: wait in the receive itself, no poller
            self._wait_one(awaiting, asked[0], plain)
        else:
            self._wait_many(awaiting, asked, plain)
        if len(awaiting.replies) != len(asked):  # not complete
            self._wait_alive(awaiting, refs, asked, started, timeout)
        for incarnation in awaiting.replies:
            self._pending.answered(incarnation)  # every answering worker is caught up
        return awaiting.replies

    def _wait_alive(self, awaiting: Awaiting, refs: dict[str, WorkerRef], asked: list[str],
                    started: float, timeout: float | None) -> None:
        """The wait after the plain one: as long as the workers still owing a reply are alive
        (probing them), or until the call's bound runs out."""
        try:
            self.liveness.wait(refs, awaiting.missing, lambda until, extra: self._wait_many(
                awaiting, awaiting.missing(), until, extra), started, timeout)
        except (WorkerUnavailable, WorkerTimeout) as exc:
            missing = awaiting.missing()
            self._pending.timed_out(next((i for i in missing if refs[i].id == exc.worker),
                                         missing[0]), asked)
            raise

    def _wait_one(self, awaiting: Awaiting, incarnation: str, deadline: float) -> None:
        answer = self._receive(incarnation, awaiting.req_of(incarnation), deadline)
        if answer is not None:
            awaiting.replies[incarnation] = answer

    def _receive(self, incarnation: str, req: int, deadline: float) -> dict | None:
        """The reply to request ``req`` from ``incarnation``, received by ``deadline`` (else
        ``None``); whatever else comes (a late answer to an ask given up earlier) is dropped."""
        connection = self._connections[incarnation]
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            answer = connection.receive(self._stats, int(remaining * 1000) + 1)
            if answer is not None and answer.get("req") == req:
                return answer

    def _wait_many(self, awaiting: Awaiting, incarnations: list[str], deadline: float,
                   extra: list[zmq.Socket] = ()) -> None:
        """Receive replies until all came or ``deadline``, or one of ``extra`` is readable."""
        poller = zmq.Poller()
        for incarnation in incarnations:
            poller.register(self._connections[incarnation].socket, zmq.POLLIN)
        for sock in extra:
            poller.register(sock, zmq.POLLIN)
        while not awaiting.complete:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            ready = dict(poller.poll(int(remaining * 1000) + 1))
            for incarnation in incarnations:
                connection = self._connections[incarnation]
                if connection.socket not in ready:
                    continue
                while incarnation not in awaiting.replies:
                    msg = connection.receive(self._stats)
                    if msg is None:
                        break
                    awaiting.offer(incarnation, msg)
            if any(sock in ready for sock in extra):
                return  # a liveness answer: the caller reads it

    def _results(self, replies: dict[str, dict]) -> dict[str, Any]:
        """The values of ``replies``; the first remote error is raised."""
        return {incarnation: reply_value(msg) for incarnation, msg in replies.items()}


def reply_value(answer: dict) -> Any:
    """The value of one reply; its remote error is raised."""
    if answer.get("error") is not None:
        raise answer["error"].to_exception()
    return answer["value"]
