"""Waiting as long as the worker is alive: the client's liveness probes.

A round trip (:mod:`syftzmq.client.round_trip`) first waits for its replies the plain way, for
one probe interval (1 s, or half the user's bound if that is shorter): nearly every reply
comes in that time, and costs nothing extra. A wait that lasts longer goes on here, with no
deadline of its own: every interval, each worker still owing a reply is probed at its liveness
endpoint (:mod:`syftzmq.worker.liveness`, answered by a thread of the worker's own while it
computes), and the wait ends only

- with the replies;
- with :class:`~syftzmq.errors.WorkerUnavailable` for a worker that answered no probe for the
  *liveness deadline* (default 5 s, ``SYFTZMQ_LIVENESS_TIMEOUT``, ``sy.set_liveness_timeout``):
  killed, frozen or unreachable, judged by the rule in :mod:`syftzmq.wire.liveness`;
- or, if the user bounded the call (``ptr.get(timeout=s)``, ``sy.set_timeout(s)``), with
  :class:`~syftzmq.errors.WorkerTimeout` when the bound runs out, saying whether the worker
  was seen alive meanwhile.

A worker further down a chain is covered by the first hop: it probes its peers the same way
while it waits for their acknowledgements, and answers with the dead peer's name.

The probe sockets (one DEALER per worker liveness endpoint) belong to the waiting thread: they
are used only inside a round trip, under the session's lock, never by the heartbeat thread.
They stay open between waits (a connection, and with CURVE a handshake, per wait would cost
more than the probes) and close when the worker is forgotten or the session closes. A worker
that announced no liveness endpoint (the handshake's provisional connection, before the
worker has said who it is) is given the old rule: no answer within the liveness deadline
means unavailable.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import zmq

from ..core.refs import WorkerRef
from ..errors import WorkerTimeout, WorkerUnavailable
from ..wire.liveness import Probe, timing

# (key, curve) that opened the connection to a worker: its liveness socket wants the same
Credentials = Callable[[WorkerRef], tuple[bytes | None, Any]]
# wait for replies until a deadline, or until one of the extra sockets is readable
Receive = Callable[[float, list], None]


class ClientLiveness:
    """The probes of one client session, by worker incarnation."""

    def __init__(self, context: zmq.Context, own_incarnation: str, credentials: Credentials,
                 timeout: float = 5.0, interval: float = 1.0, stats: Any = None) -> None:
        self._context = context
        self._own = own_incarnation
        self._credentials = credentials
        self._probes: dict[str, Probe] = {}
        self.interval = interval
        self.timeout = timeout
        self._timed: tuple[float, float] | None = None  # (timeout, interval) behind:
        self._first_interval = interval                  # ... timing()'s interval of them
        self.set_timeout(timeout)
        self._stats = stats  # a Stats: liveness_probes, liveness_answers

    def set_timeout(self, seconds: float) -> None:
        """The liveness deadline: a worker silent this long is reported dead."""
        if not (isinstance(seconds, (int, float)) and 0 < seconds < float("inf")):
            raise ValueError(f"the liveness timeout must be a positive number of seconds, "
                             f"got {seconds!r}")
        self.timeout = float(seconds)

    def first_wait(self, bound: float | None) -> float:
        """How long a round trip waits plainly before probing: one interval, or half its
        bound (so a bounded call has been probed when its bound runs out)."""
        if self._timed != (self.timeout, self.interval):  # asked per round trip: remembered
            self._timed = (self.timeout, self.interval)
            self._first_interval = timing(self.timeout, self.interval)[0]
        interval = self._first_interval
        return interval if bound is None else min(interval, bound / 2)

    def wait(self, refs: dict[str, WorkerRef], missing: Callable[[], list[str]],
             receive: Receive, started: float, bound: float | None) -> None:
        """Wait, probing, until ``missing()`` is empty; raise for a dead worker or a bound that
        ran out (``bound`` is the call's bound in seconds from ``started``, or ``None``)."""
        interval, grace = timing(self.timeout, self.interval)
        first_in = self.first_wait(bound)
        probes = {}
        for incarnation in missing():
            probe = self._probe(refs[incarnation])
            probe.begin(started, first_in)
            probes[incarnation] = probe
        ends = None if bound is None else started + bound
        while True:
            waiting = [incarnation for incarnation in missing() if incarnation in probes]
            if not waiting:
                return
            now = time.monotonic()
            for incarnation in waiting:
                self._service(probes[incarnation], interval, now)
            for incarnation in waiting:
                if probes[incarnation].dead(self.timeout, grace, now):
                    raise self._unavailable(refs[incarnation], probes[incarnation])
            if ends is not None and now >= ends:
                raise self._timed_out(refs[waiting[0]], probes[waiting[0]], bound, now)
            wake = min(min(probes[i].next_due(interval), probes[i].proven_at + self.timeout)
                       for i in waiting)
            if ends is not None:
                wake = min(wake, ends)
            receive(max(wake, now + 0.001), [probes[i].socket for i in waiting
                                             if probes[i].socket is not None])

    def check_alive(self, ref: WorkerRef, within: float | None = None) -> bool:
        """Probe ``ref`` now until it answers (True) or is dead by the rule (raises
        :class:`WorkerUnavailable`). False if it announced no liveness endpoint.

        ``within``: a worker already found silent for a deadline (by a peer) is dead unless it
        answers within this many seconds (a frozen worker that was thawed answers at once)."""
        if not ref.liveness:
            return False
        interval, grace = timing(self.timeout, self.interval)
        probe = self._probe(ref)
        probe.begin(time.monotonic(), 0.0)
        ends = None if within is None else probe.started + within
        while True:
            now = time.monotonic()
            self._service(probe, interval, now)
            if probe.proven_at > probe.started:
                return True
            if probe.dead(self.timeout, grace, now) or (ends is not None and now >= ends):
                raise self._unavailable(ref, probe)
            wake = min(probe.next_due(interval), probe.proven_at + self.timeout)
            if ends is not None:
                wake = min(wake, ends)
            probe.socket.poll(max(1, int((wake - now) * 1000) + 1))

    def _service(self, probe: Probe, interval: float, now: float) -> None:
        sent, answered = probe.last_sent, probe.answered
        probe.service(interval, now)
        if self._stats is not None:
            self._stats.liveness_probes += probe.last_sent != sent and probe.socket is not None
            self._stats.liveness_answers += probe.answered - answered

    def _unavailable(self, ref: WorkerRef, probe: Probe) -> WorkerUnavailable:
        if probe.stale is not None:
            return WorkerUnavailable(ref.id, ref.address, probe.stale)
        if probe.socket is None:
            return WorkerUnavailable(ref.id, ref.address, f"no answer within {self.timeout:.1f} s")
        return WorkerUnavailable(ref.id, ref.address, f"no liveness answer for "
                                 f"{self.timeout:.1f} s (killed, frozen or unreachable)")

    def _timed_out(self, ref: WorkerRef, probe: Probe, bound: float,
                   now: float) -> Exception:
        if probe.socket is None:  # nothing tells us it is alive: the old verdict
            return WorkerUnavailable(ref.id, ref.address, f"no answer within {bound:.1f} s")
        if probe.answered and probe.proven_at > probe.started:
            busy = probe.last_answer.get("busy_for")
            doing = f" (busy with one message for {busy:.1f} s)" if isinstance(busy, (int, float)) else ""
            return WorkerTimeout(ref.id, ref.address, bound,
                                 f"the worker is alive and still working on it{doing}; the "
                                 f"bound was set with timeout= or sy.set_timeout()")
        return WorkerTimeout(ref.id, ref.address, bound,
                             f"it did not answer a liveness probe in that time either (it may be "
                             f"dead or unreachable; without a bound a dead worker is reported "
                             f"after {self.timeout:.1f} s of silence)")

    def _probe(self, ref: WorkerRef) -> Probe:
        if not ref.liveness:  # nothing to probe (and nothing worth keeping)
            return Probe(self._context, self._own, ref.incarnation, None, None)
        probe = self._probes.get(ref.incarnation)
        if probe is not None and probe.address != ref.liveness:
            self.forget(ref.incarnation)
            probe = None
        if probe is None:
            key, curve = self._credentials(ref)
            probe = Probe(self._context, self._own, ref.incarnation, ref.liveness, key, curve)
            self._probes[ref.incarnation] = probe
        return probe

    def forget(self, incarnation: str) -> None:
        probe = self._probes.pop(incarnation, None)
        if probe is not None:
            probe.close()

    def close(self) -> None:
        for incarnation in list(self._probes):
            self.forget(incarnation)
