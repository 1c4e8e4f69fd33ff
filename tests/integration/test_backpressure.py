"""A client sending faster than a worker computes is held back; nothing queues without bound
and nothing is dropped."""

from __future__ import annotations

import sys
from pathlib import Path

import cloudpickle
import torch
import zmq

import syftzmq as sy
from syftzmq.core.messages import CMD, message
from syftzmq.core.refs import Ref

ATTEMPTS = 20_000                       # 20,000 x 16 KiB = 320 MiB if nothing pushed back


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
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the worker cannot import us
    try:
        session.command(bob.ref, ("func", _hold_until), (str(release), 50.0), {}, [])
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
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
