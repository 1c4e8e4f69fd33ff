"""The lease heartbeat never dies quietly: a renewal whose socket fails is logged and the socket
reopened; a thread that dies is started again at the next observation, with a warning; and in
both cases an idle client keeps its objects past several leases."""

from __future__ import annotations

import logging

import pytest
import torch

import syftzmq as sy
from support.hostile import RawPeer
from support.processes import wait_until
from support.workers import started_workers

LEASE = 1.0


class _Fatal(BaseException):
    """Not an ``Exception``: nothing in the heartbeat's loop catches it, so its thread dies."""


@pytest.fixture(scope="module")
def leased(hook):
    with started_workers(hook, "hb_lease", lease_seconds=LEASE) as (worker,):
        yield worker


@pytest.fixture
def heartbeat():
    beat = sy.default_session()._heartbeat
    yield beat
    beat.__dict__.pop("_renew", None)            # the fault injected below, if still there


def _idle_for_leases(worker, leases: int) -> None:
    """Wait, sending nothing from this session, until the worker swept ``leases`` leases'
    worth of times (a raw peer's pings renew nobody else's lease)."""
    watcher = RawPeer(worker.address, b"heartbeat-watcher")
    try:
        start = watcher.stats()["lease_sweeps"]
        wait_until(lambda: watcher.stats()["lease_sweeps"] >= start + 4 * leases, 30,
                   f"{leases} leases' worth of sweeps")
    finally:
        watcher.close()


def test_a_renewal_whose_socket_fails_is_logged_and_the_socket_reopened(leased, heartbeat,
                                                                         caplog):
    x = torch.arange(3.0).send(leased)
    expired = leased.ping()["expired_objects"]
    real_renew = heartbeat._renew
    broken = []

    def renew_on_a_broken_socket(incarnation, sock, signer):
        if not broken:
            broken.append(incarnation)
            sock.close(linger=0)                 # the socket really fails under the send
        return real_renew(incarnation, sock, signer)

    failures, renewals = heartbeat.failures, heartbeat.renewals
    with caplog.at_level(logging.WARNING, logger="syftzmq.client"):
        heartbeat._renew = renew_on_a_broken_socket
        wait_until(lambda: heartbeat.failures > failures, 10, "the broken renewal")
        wait_until(lambda: heartbeat.renewals > renewals + 3, 10, "renewals after it")
    logged = [r for r in caplog.records if "renewing the lease" in r.getMessage()]
    assert logged and logged[0].exc_info is not None      # with its stack
    _idle_for_leases(leased, 3)
    assert leased.ping()["expired_objects"] == expired
    assert torch.equal(x.get(), torch.arange(3.0))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_heartbeat_thread_is_restarted_at_the_next_observation(leased, heartbeat,
                                                                        caplog):
    x = torch.arange(4.0).send(leased)
    expired = leased.ping()["expired_objects"]
    thread = heartbeat._thread

    def die(incarnation, sock, signer):
        raise _Fatal("the heartbeat thread is killed")

    heartbeat._renew = die
    wait_until(lambda: not thread.is_alive(), 10, "the heartbeat thread's death")
    del heartbeat._renew
    restarts = heartbeat.restarts
    with caplog.at_level(logging.WARNING, logger="syftzmq.client"):
        assert leased.object_count() == 1        # an observation notices and restarts it
    assert heartbeat.restarts == restarts + 1 and heartbeat._thread.is_alive()
    assert any("heartbeat thread had died" in r.getMessage() for r in caplog.records)
    renewals = heartbeat.renewals
    wait_until(lambda: heartbeat.renewals > renewals + 3, 10, "renewals by the new thread")
    _idle_for_leases(leased, 3)
    assert leased.ping()["expired_objects"] == expired
    assert torch.equal(x.get(), torch.arange(4.0))
