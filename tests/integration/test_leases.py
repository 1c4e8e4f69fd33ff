"""Leases: a client that dies without a goodbye loses its objects after the lease; a live but
idle client keeps them, and so do chains (workers renew at the workers they point into)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

import syftzmq as sy
from support.workers import ROOT, started_workers
from support.processes import wait_until
from support.hostile import RawPeer
from support.processes import read_lines_until

LEASE = 1.0

CLIENT = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {root!r})
    import syftzmq as sy
    hook = sy.TorchHook(torch)
    key_file, first, second = sys.argv[1:4]
    w1 = sy.Worker(None, id="lease_one", address=first, key_file=key_file)
    w2 = sy.Worker(None, id="lease_two", address=second, key_file=key_file)
    x = torch.arange(3.0).send(w1)
    chain = torch.ones(2).send(w1).send(w2)
    y = chain * 2
    assert len(w1._objects) == 3 and len(w2._objects) == 2
    print("READY", flush=True)
    sys.stdin.read()
""")


@pytest.fixture(scope="module")
def leased(hook):
    with started_workers(hook, "lease_one", "lease_two", lease_seconds=LEASE) as pair:
        yield pair


def test_objects_of_a_killed_client_are_freed_after_the_lease(leased):
    one, two = leased
    client = subprocess.Popen([sys.executable, "-c", CLIENT.format(root=str(ROOT)),
                               sy.default_session().cluster_key_file(), one.address, two.address],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        read_lines_until(client, "READY", timeout=60)
        assert len(one._objects) == 3 and len(two._objects) == 2
        client.kill()                                   # no goodbye, no deletes
        client.wait(10)
        wait_until(lambda: not one._objects and not two._objects, 20,
                   "a dead client's objects freed, along its chain")
    finally:
        client.kill()
        client.wait(10)
    assert two.ping()["expired_objects"] == 2
    assert one.ping()["expired_objects"] >= 1           # x directly; the chain's data by cascade


def test_an_idle_live_client_keeps_its_objects_and_chains(leased):
    one, two = leased
    expired_before = one.ping()["expired_objects"] + two.ping()["expired_objects"]
    x = torch.arange(4.0).send(one)
    chain = torch.full((2,), 7.0).send(one).send(two)
    watcher = RawPeer(one.address, b"lease-watcher")    # its pings renew nobody else's lease
    try:
        start = watcher.stats()["lease_sweeps"]
        wait_until(lambda: watcher.stats()["lease_sweeps"] >= start + 16, 30,
                   "four leases' worth of sweeps")
    finally:
        watcher.close()
    assert one.ping()["expired_objects"] + two.ping()["expired_objects"] == expired_before
    assert torch.equal(x.get(), torch.arange(4.0))
    assert torch.equal(chain.get().get(), torch.full((2,), 7.0))
    assert one._objects == {} and two._objects == {}

