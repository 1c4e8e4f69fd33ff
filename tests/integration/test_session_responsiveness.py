"""The client's deadlines reach every socket, and showing a worker never waits on it."""

from __future__ import annotations

import os
import signal
import time

import torch
import zmq

import syftzmq as sy
from support.processes import wait_until


def _send_timeout_ms(worker) -> int:
    connection = sy.default_session()._connections[worker.ref.incarnation]
    return connection.socket.getsockopt(zmq.SNDTIMEO)


def test_set_timeout_reaches_connections_already_open(bob):
    session = sy.default_session()
    before = session.timeout
    bob.ping()                                   # the connection is open
    try:
        sy.set_timeout(3.5)
        assert session.timeout == 3.5 and _send_timeout_ms(bob) == 3500
        session.timeout = 1.25                   # the attribute is the same setting
        assert _send_timeout_ms(bob) == 1250
    finally:
        sy.set_timeout(before)
    assert before is None                        # by default nothing is bounded: then a send
    assert _send_timeout_ms(bob) == int(session.liveness_timeout * 1000)  # checks liveness this often


def test_repr_of_a_stopped_worker_answers_at_once_with_an_unknown_count(victim):
    x = torch.ones(2).send(victim)
    assert repr(victim) == "<Worker id:victim #objects:1>"
    os.kill(victim.process.pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        shown = repr(victim)
        waited = time.monotonic() - start
    finally:
        os.kill(victim.process.pid, signal.SIGCONT)
    assert shown == "<Worker id:victim #objects:?>"
    assert waited < 2.0, waited                  # the 5 s deadline would be a hang here
    wait_until(lambda: repr(victim) == "<Worker id:victim #objects:1>", 10,
               "the count once the worker runs again")
    del x

