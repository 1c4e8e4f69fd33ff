"""Lease bookkeeping on its own clock: who expired, who is forgotten, when peers are renewed.
(The end-to-end behaviour, a killed client's objects freed on real workers, is in
tests/integration/test_leases.py.)"""

from __future__ import annotations

import pytest

from syftzmq.worker.leases import Leases, PeerRenewals


def test_lease_bookkeeping():
    leases = Leases(lease_seconds=10)
    leases.touch("a", now=0)
    leases.adopt("b")                       # a new owner gets a full lease from now
    assert leases.expired({"a"}, now=5) == set()
    assert leases.expired({"a"}, now=11) == {"a"}
    assert leases.expired({"a"}, now=12) == set()   # forgotten once expired
    renewals = PeerRenewals()
    assert renewals.due(["p"], now=0) == ["p"]
    assert renewals.due(["p"], now=0.1) == []       # unknown lease: ask again after 0.2 s
    renewals.learn("p", 30)
    renewals.learn("p", "junk")                      # a peer's nonsense is ignored
    assert renewals.shortest() == 30
    assert renewals.due(["p"], now=9) == [] and renewals.due(["p"], now=10.1) == ["p"]


def test_any_message_renews_and_only_silence_longer_than_the_lease_expires():
    leases = Leases(lease_seconds=10)
    leases.touch("a", now=0)
    leases.touch("a", now=8)
    assert leases.expired({"a"}, now=17) == set()   # 9 s since the last message
    assert leases.expired({"a"}, now=18) == set()   # exactly one lease: not yet
    assert leases.expired({"a"}, now=18.01) == {"a"}


def test_an_owner_never_heard_from_gets_a_full_lease_from_the_first_sweep():
    leases = Leases(lease_seconds=10)
    assert leases.expired({"new"}, now=100) == set()
    assert leases.expired({"new"}, now=109) == set()
    assert leases.expired({"new"}, now=111) == {"new"}


def test_adopting_a_known_owner_keeps_its_lease():
    leases = Leases(lease_seconds=10)
    leases.touch("a", now=0)
    leases.adopt("a")                        # must not renew: adopt is not a message from a
    assert leases.expired({"a"}, now=11) == {"a"}


def test_silent_processes_that_own_nothing_are_forgotten_once_their_lease_ran_out():
    leases = Leases(lease_seconds=10)
    leases.touch("idle", now=0)
    leases.touch("owner", now=0)
    leases.expired({"owner"}, now=5)
    assert "idle" in leases._last_seen               # silent for less than a lease: kept
    leases.touch("owner", now=20)
    assert leases.expired({"owner"}, now=20) == set()
    assert set(leases._last_seen) == {"owner"}       # the idle one is gone, and never expired
    assert leases.expired_owners == 0


def test_counters():
    leases = Leases(lease_seconds=1)
    leases.touch("a", now=0)
    leases.touch("b", now=0)
    leases.touch("c", now=1.5)
    assert leases.expired({"a", "b", "c"}, now=2) == {"a", "b"}
    assert leases.expired({"c"}, now=5) == {"c"}
    assert (leases.sweeps, leases.expired_owners) == (2, 3)


@pytest.mark.parametrize("lease,interval", [(120, 5.0), (20, 5.0), (8, 2.0), (1, 0.25),
                                            (0.1, 0.05), (0.01, 0.05)])
def test_sweeps_come_four_times_a_lease_within_bounds(lease, interval):
    assert Leases(lease).sweep_interval() == pytest.approx(interval)


def test_peer_renewals_follow_each_peers_own_lease():
    renewals = PeerRenewals()
    assert renewals.shortest() is None
    assert renewals.due(["p", "q"], now=0) == ["p", "q"]
    renewals.learn("p", 3)                   # p: every second; q: still unknown (every 0.2 s)
    assert renewals.due(["p", "q"], now=0.25) == ["q"]
    assert renewals.due(["p", "q"], now=0.4) == []
    assert renewals.due(["p"], now=0.99) == []
    assert renewals.due(["p", "q"], now=1.0) == ["p", "q"]
    assert renewals.shortest() == 3.0


@pytest.mark.parametrize("nonsense", [0, -5, "30", None, [30]])
def test_a_peers_nonsense_lease_is_ignored(nonsense):
    renewals = PeerRenewals()
    renewals.learn("p", nonsense)
    assert renewals.shortest() is None
