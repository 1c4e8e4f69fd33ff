"""Clients are isolated: what one client's commands left pending at a worker (a chain hop to
flush, a failure to report) never makes another client's request wait or fail.

Two real client processes share two workers. Client A forwards a command through ``alice`` to
``bob``, and ``bob`` is then frozen (SIGSTOP): alice now owes A a flush of bob that cannot
complete. Client B's unrelated ``get`` and store count at alice must still succeed, and A's own
observation must fail naming bob.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

import syftzmq as sy
from support.processes import read_lines_until
from support.workers import ROOT, started_workers

pytestmark = pytest.mark.timeout(120)

CLIENT = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {root!r})
    import syftzmq as sy
    hook = sy.TorchHook(torch)
    key_file, alice_address, bob_address, role = sys.argv[1:5]
    alice = sy.Worker(hook, id="iso_alice", address=alice_address, key_file=key_file)
    if role == "A":
        bob = sy.Worker(hook, id="iso_bob", address=bob_address, key_file=key_file)
        chain = torch.ones(3).send(bob).send(alice)
        y = chain + 1                 # alice forwards this to bob, and owes A a flush of bob
        alice.ping()                  # same connection: alice has handled the command
        print("FORWARDED", flush=True)
        sys.stdin.readline()          # bob is frozen now
        try:
            y.get()
            print("A GOT A VALUE", flush=True)
        except sy.WorkerUnavailable as exc:
            print("A UNAVAILABLE", exc.worker, flush=True)
    else:
        print("READY", flush=True)
        sys.stdin.readline()          # bob is frozen now
        t = torch.tensor([5, 6, 7]).send(alice)
        count = alice.object_count()
        value = (t * 2).get()
        print("B GOT", value.tolist(), "COUNT", count, flush=True)
""")


# A learns that frozen bob is unavailable after its liveness deadline: 2 s, not the 5 s default
CLIENT_ENV = {**os.environ, "SYFTZMQ_LIVENESS_TIMEOUT": "2"}


def _client(role: str, alice, bob) -> subprocess.Popen:
    key_file = sy.default_session().cluster_key_file()
    return subprocess.Popen([sys.executable, "-c", CLIENT.format(root=str(ROOT)), key_file,
                             alice.address, bob.address, role],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=CLIENT_ENV)


def _go(client: subprocess.Popen) -> None:
    client.stdin.write("go\n")
    client.stdin.flush()


def test_a_frozen_hop_of_one_client_does_not_fail_another(hook):
    with started_workers(hook, "iso_alice", "iso_bob") as (alice, bob):
        a, b = _client("A", alice, bob), _client("B", alice, bob)  # both start at once
        try:
            read_lines_until(a, "FORWARDED", timeout=60)
            read_lines_until(b, "READY", timeout=60)
            os.kill(bob.process.pid, signal.SIGSTOP)
            try:
                _go(b)
                got = read_lines_until(b, "B GOT", timeout=60)[-1]
                assert got.startswith("B GOT [10, 12, 14] COUNT "), got
                _go(a)
                assert read_lines_until(a, "A ", timeout=60)[-1] == "A UNAVAILABLE iso_bob"
            finally:
                os.kill(bob.process.pid, signal.SIGCONT)
            assert b.wait(30) == 0 and a.wait(30) == 0
        finally:
            for process in (a, b):
                if process is not None and process.poll() is None:
                    process.kill()
                    process.wait(10)
        assert torch.equal((torch.ones(2).send(bob) + 1).get(), torch.full((2,), 2.0))
