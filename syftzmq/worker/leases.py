"""Leases: objects owned by a process that stopped renewing are freed.

A client that crashes never says goodbye, and torch RPC and PySyft both leak what it owned. Here
every message from a process renews its lease at this worker (clients also send ``RENEW`` from a
background thread while idle; workers renew at the peers their stored pointers point into). An
owner not heard from for ``lease_seconds`` is *expired*: the worker frees everything it owned,
and freeing a stored pointer cascades one hop down its chain like any delete.

:class:`LeaseTicks` is the loop's periodic part of this: expire silent owners, renew our own
leases at peers.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterable

from ..core.ids import new_id
from ..core.messages import RENEW, message
from .downstream import DEFAULT_PEER_TIMEOUT, Downstream
from .failures import FailureRecord
from .store import ObjectStore

log = logging.getLogger("syftzmq.worker")

class Leases:
    """When each owner was last heard from, and which owners have expired."""

    def __init__(self, lease_seconds: float) -> None:
        self.lease_seconds = lease_seconds
        self._last_seen: dict[str, float] = {}
        self.sweeps = 0
        self.expired_owners = 0

    def touch(self, incarnation: str, now: float | None = None) -> None:
        """``incarnation`` is alive (it sent a message, or it just became an owner here)."""
        self._last_seen[incarnation] = time.monotonic() if now is None else now

    def last_heard(self, incarnation: str) -> float | None:
        """When ``incarnation`` was last heard from (``None``: never, or forgotten)."""
        return self._last_seen.get(incarnation)

    def adopt(self, incarnation: str) -> None:
        """A new owner starts with a full lease (it may not have spoken to us yet)."""
        if incarnation not in self._last_seen:
            self.touch(incarnation)

    def expired(self, owners: set[str], now: float | None = None) -> set[str]:
        """The owners among ``owners`` whose lease ran out; forgets owners that own nothing."""
        now = time.monotonic() if now is None else now
        self.sweeps += 1
        for incarnation in [n for n in self._last_seen if n not in owners]:
            if now - self._last_seen[incarnation] > self.lease_seconds:
                del self._last_seen[incarnation]  # owns nothing and is silent: nothing to track
        gone = set()
        for incarnation in owners:
            seen = self._last_seen.setdefault(incarnation, now)
            if now - seen > self.lease_seconds:
                gone.add(incarnation)
                del self._last_seen[incarnation]
        self.expired_owners += len(gone)
        return gone

    def sweep_interval(self) -> float:
        """How often to look for expired owners: often enough to free within ~1.25 leases."""
        return max(0.05, min(5.0, self.lease_seconds / 4))


class PeerRenewals:
    """When this worker renews its own leases at the workers its stored pointers point into.

    A peer's lease is learned from its answer to the first ``RENEW``; until then we renew
    often (every ``UNKNOWN_LEASE / 3`` s), so a peer with a short lease is never missed.
    """

    UNKNOWN_LEASE = 0.6

    def __init__(self) -> None:
        self._leases: dict[str, float] = {}
        self._renewed: dict[str, float] = {}

    def due(self, incarnations: Iterable[str], now: float) -> list[str]:
        """The peers among ``incarnations`` to renew now (and marks them renewed)."""
        wanted = dict.fromkeys(incarnations)  # in the order given (a set's order varies per run)
        for gone in [known for known in self._renewed if known not in wanted]:
            del self._renewed[gone]  # no stored pointer leads there any more
            self._leases.pop(gone, None)
        due = []
        for incarnation in wanted:
            lease = self._leases.get(incarnation, self.UNKNOWN_LEASE)
            if now - self._renewed.get(incarnation, float("-inf")) >= lease / 3:
                self._renewed[incarnation] = now
                due.append(incarnation)
        return due

    def learn(self, incarnation: str, lease: object) -> None:
        if isinstance(lease, (int, float)) and lease > 0:
            self._leases[incarnation] = float(lease)

    def shortest(self) -> float | None:
        return min(self._leases.values(), default=None)


class LeaseTicks:
    """What the loop does for leases when a tick is due: free the objects of owners that went
    silent (cascading down chains), and renew this worker's own leases at its peers."""

    def __init__(self, leases: Leases, store: ObjectStore, failures: FailureRecord,
                 downstream: Downstream, counters: dict, unconfirmed: Any = None) -> None:
        """``unconfirmed`` (a :class:`~syftzmq.worker.deliveries.Unconfirmed`): what gets took
        and their requesters have not confirmed; it counts as theirs."""
        self.unconfirmed = unconfirmed
        self.leases = leases
        self.renewals = PeerRenewals()
        self.store = store
        self.failures = failures
        self.downstream = downstream
        self.counters = counters
        self.next_tick = time.monotonic()

    def tick(self, now: float) -> None:
        """Run if due; sets :attr:`next_tick`."""
        if now < self.next_tick:
            return
        self.expire(now)
        self.renew_at_peers(now)
        interval = self.leases.sweep_interval()
        shortest = self.renewals.shortest()
        if shortest is not None:
            interval = min(interval, shortest / 4)
        self.next_tick = now + max(0.05, interval)

    def expire(self, now: float) -> None:
        """Free what silent owners owned. Each object goes on its own: one whose cascade
        fails is still freed here (the failure is logged), and the others follow."""
        owners = self.store.owners()
        if self.unconfirmed is not None:
            owners |= self.unconfirmed.requesters()
        for incarnation in self.leases.expired(owners, now):
            ids = self.store.owned_by(incarnation)
            held = self.unconfirmed.drop_requester(incarnation) if self.unconfirmed is not None else 0
            log.warning("lease of %s expired: freeing %d objects", incarnation, len(ids) + held)
            self.counters["expired_objects"] += len(ids) + held
            self.failures.forget(incarnation)
            self.downstream.forget(incarnation)
            for object_id in ids:
                self.downstream.cascade([self.store.take(object_id)], incarnation)

    def renew_at_peers(self, now: float) -> None:
        """Keep alive what our stored pointers own on other workers. A peer that cannot be
        reached is logged and skipped; the others are renewed all the same."""
        targets = {obj.location.incarnation: obj.location for obj in self.store.owning_hops()}
        peers, waiters = self.downstream.peers, self.downstream.waiters
        for incarnation in self.renewals.due(targets, now):
            req = new_id()
            try:
                peers.send(targets[incarnation], message(RENEW, req=req,
                                                         origin=self.downstream.me.incarnation))
            except Exception:
                self.counters["errors"] += 1
                log.exception("could not renew our lease at %r", targets[incarnation])
                continue
            waiters.expect(req, now + DEFAULT_PEER_TIMEOUT,
                           lambda answer, incarnation=incarnation:
                           self.renewals.learn(incarnation, answer.get("value")),
                           lambda: None)
