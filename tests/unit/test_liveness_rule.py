"""The liveness rule (syftzmq.wire.liveness) on explicit clocks, against a real liveness endpoint
(syftzmq.worker.liveness) on an in-process socket: answered probes prove life, silence for the
deadline with a probe out for its grace condemns, and a prober that was itself busy does not
condemn by the silence it caused."""

from __future__ import annotations

import os
import time

import pytest
import zmq

from syftzmq.wire.liveness import Probe, timing
from syftzmq.worker.liveness import LivenessEndpoint, LoopState, liveness_address, liveness_bind

KEY = os.urandom(32)


@pytest.fixture
def context():
    context = zmq.Context()
    yield context
    context.term()


@pytest.fixture
def endpoint(context):
    state = LoopState()
    live = LivenessEndpoint(context, f"inproc://live-{os.getpid()}-{time.monotonic_ns()}",
                            "w#1", KEY, state)
    live.start()
    yield live
    live.stop()


def answered(probe: Probe, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe.socket.poll(50):
            probe.read()
            if probe.answered:
                return True
    return False


def test_timing_fits_three_probes_in_a_deadline_and_gives_two_intervals_of_grace():
    assert timing(5.0) == (1.0, 2.0)
    assert timing(0.9) == pytest.approx((0.3, 0.6))


def test_an_answered_probe_proves_life_and_a_wrong_incarnation_is_stale(context, endpoint):
    probe = Probe(context, "me#1", "w#1", endpoint.endpoint, KEY)
    stale = Probe(context, "me#1", "w#0", endpoint.endpoint, KEY)
    try:
        for p in (probe, stale):
            p.begin(100.0, 0.0)
            p.send(100.5)
        assert answered(probe)
        assert probe.proven_at == 100.5 and not probe.dead(5.0, 2.0, now=105.4)
        assert probe.last_answer["incarnation"] == "w#1" and probe.last_answer["busy_for"] is None
        deadline = time.monotonic() + 5
        while stale.stale is None and time.monotonic() < deadline:
            stale.socket.poll(50)
            stale.read()
        assert stale.stale is not None and "'w#1'" in stale.stale and stale.dead(5.0, 2.0, 100.6)
    finally:
        probe.close()
        stale.close()


def test_a_wrong_key_gets_no_answer(context, endpoint):
    probe = Probe(context, "me#1", "w#1", endpoint.endpoint, os.urandom(32))
    try:
        probe.begin(0.0, 0.0)
        probe.send(0.0)
        assert not answered(probe, timeout=0.5)
        assert endpoint.rejected >= 1
    finally:
        probe.close()


def test_silence_condemns_only_after_the_deadline_and_the_grace(context):
    probe = Probe(context, "me#1", "w#1", "inproc://nobody-listens-here", KEY)
    try:
        probe.begin(0.0, 1.0)
        assert probe.next_due(1.0) == 1.0
        probe.send(1.0)
        probe.send(2.0)
        assert not probe.dead(5.0, 2.0, now=4.9)         # within the deadline
        assert probe.dead(5.0, 2.0, now=5.0)              # silent 5 s, a probe out 4 s
    finally:
        probe.close()


def test_a_prober_that_was_busy_probes_before_it_condemns(context):
    """The waiter sent nothing for a minute (its own loop was busy): silence it caused is no
    evidence, so the verdict waits for a probe sent now to go unanswered for its grace."""
    probe = Probe(context, "me#1", "w#1", "inproc://nobody-listens-here-either", KEY)
    try:
        probe.begin(0.0, 1.0)
        assert not probe.dead(5.0, 2.0, now=60.0)         # no probe out: no verdict
        probe.send(60.0)
        assert not probe.dead(5.0, 2.0, now=61.9)
        assert probe.dead(5.0, 2.0, now=62.0)
    finally:
        probe.close()


def test_without_a_liveness_endpoint_the_old_deadline_applies(context):
    probe = Probe(context, "me#1", "w#1", None, KEY)
    probe.begin(0.0, 1.0)
    probe.send(1.0)
    assert not probe.dead(5.0, 2.0, now=4.9) and probe.dead(5.0, 2.0, now=5.0)


def test_the_liveness_endpoint_is_derived_from_the_main_one():
    assert liveness_bind("tcp://0.0.0.0:5555", "tcp://0.0.0.0:5555") == "tcp://0.0.0.0:*"
    assert liveness_bind("tcp://127.0.0.1:*", "tcp://127.0.0.1:40001") == "tcp://127.0.0.1:*"
    assert liveness_bind("ipc:///tmp/w.sock", "ipc:///tmp/w.sock") == "ipc:///tmp/w.sock.live"
    assert liveness_address("tcp://10.0.0.5:5555", "tcp://0.0.0.0:41234") == "tcp://10.0.0.5:41234"
    assert liveness_address("ipc:///tmp/w.sock", "ipc:///tmp/w.sock.live") == "ipc:///tmp/w.sock.live"
