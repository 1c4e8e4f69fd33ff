"""A client sending faster than a worker computes is held back; nothing queues without bound
and nothing is dropped. A blocked send ends the way SECURITY.md says ("Backpressure"): it
blocks while the worker is alive, fails with ``WorkerUnavailable`` once the worker stops
answering liveness probes, and with ``WorkerTimeout`` at the bound the user set — and the call
that gave up changes nothing: its command never runs.

The blocked sends are in-place additions of a 16 KiB tensor to a stored one, each a message of
its own (a tensor operand leaves at once), so the queues fill within a few thousand calls.
Comparing the stored tensor with the number of calls that returned shows exactly which ran."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import cloudpickle
import pytest
import torch
import zmq

import syftzmq as sy
from syftzmq.core.messages import CMD, message
from syftzmq.core.refs import Ref

pytestmark = pytest.mark.timeout(120)

ATTEMPTS = 20_000                       # 20,000 x 16 KiB = 320 MiB if nothing pushed back
ELEMENTS = 4096                         # 16 KiB of float32 per command
MAX_CALLS = 100_000                     # far more than the queues hold (about 1,000 messages each way)
LIVENESS_S = 1.5
BOUND_S = 1.0


def _hold_until(path: str, limit: float) -> None:
    """Runs on the worker: keeps its loop busy until ``path`` exists (or ``limit`` passes)."""
    import os as _os
    import time as _time
    deadline = _time.monotonic() + limit
    while not _os.path.exists(path) and _time.monotonic() < deadline:
        _time.sleep(0.005)


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def test_a_busy_worker_pushes_back_and_loses_nothing(bob, tmp_path):
    session = sy.default_session()
    x = torch.zeros(4096).send(bob)
    ones = torch.ones(4096)                  # 16 KiB: its own frame on the wire
    release = tmp_path / "release"
    rss_before = _rss_bytes(bob.process.pid)
    occupy(bob, str(release))
    accepted = 0
    try:
        while accepted < ATTEMPTS:
            msg = message(CMD, origin=session.ref.incarnation, op=("method", "add_"),
                          args=(Ref(x.id_at_location), ones), kwargs={}, results=[])
            try:
                session._send_now(bob.ref, msg, zmq.NOBLOCK)
            except zmq.Again:
                break                        # the queue is full: the sender is held back
            accepted += 1
        rss_blocked = _rss_bytes(bob.process.pid)
    finally:
        release.touch()
    print(f"accepted {accepted} before blocking; worker RSS +{(rss_blocked - rss_before) >> 20} MiB")
    assert 0 < accepted < ATTEMPTS, accepted
    assert rss_blocked - rss_before < 150 * 2**20, (rss_before, rss_blocked)
    assert torch.equal(x.get(), torch.full((4096,), float(accepted)))   # none lost


@pytest.fixture
def deadlines():
    session = sy.default_session()
    before = session.liveness_timeout, session.timeout
    sy.set_liveness_timeout(LIVENESS_S)
    yield
    sy.set_liveness_timeout(before[0])
    sy.set_timeout(before[1])


def add_until_it_raises(x, error: type) -> tuple[int, Exception]:
    """``x.add_(ones)`` until a call raises ``error``: how many calls returned, and the error."""
    ones = torch.ones(ELEMENTS)
    for returned in range(MAX_CALLS):
        try:
            x.add_(ones)
        except error as exc:
            return returned, exc
    raise AssertionError(f"{MAX_CALLS} sends never blocked")


def occupy(worker, release: str) -> None:
    """One command that keeps ``worker``'s loop busy (its liveness thread still answers)."""
    session = sy.default_session()
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the worker cannot import us
    try:
        session.command(worker.ref, ("func", _hold_until), (release, 50.0), {}, [])
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_a_blocked_send_to_a_frozen_worker_fails_within_the_liveness_deadline(victim, deadlines):
    x = torch.zeros(ELEMENTS).send(victim)
    victim.ping()
    os.kill(victim.process.pid, signal.SIGSTOP)
    try:
        _, caught = add_until_it_raises(x, sy.WorkerUnavailable)
        assert not isinstance(caught, sy.WorkerTimeout)  # frozen, not busy
        assert caught.worker == "victim"
    finally:
        os.kill(victim.process.pid, signal.SIGCONT)


def test_a_blocked_send_to_a_busy_worker_waits_and_a_bounded_one_changes_nothing(
        victim, deadlines, tmp_path):
    """Busy (alive, answering probes) for longer than the liveness deadline: the client keeps
    blocking instead of declaring it dead; with a bound set, the send that runs out raises
    ``WorkerTimeout`` and its command is not sent. Released, the worker applies every command
    that returned, and only those."""
    x = torch.zeros(ELEMENTS).send(victim)
    release = tmp_path / "release"
    occupy(victim, str(release))
    sy.set_timeout(BOUND_S)
    returned, caught = add_until_it_raises(x, sy.WorkerTimeout)
    assert caught.worker == "victim"
    # a second call, bounded too, also gives up while the worker is still busy
    with pytest.raises(sy.WorkerTimeout, match="alive"):
        x.add_(torch.ones(ELEMENTS))
    sy.set_timeout(None)
    release.touch()
    assert torch.equal(x.get(), torch.full((ELEMENTS,), float(returned)))
