"""A shut-down worker refuses at once: sending to it, operating on its pointers, observing it
raise a clear error naming it, without waiting for an answer; a second shutdown() is harmless."""

from __future__ import annotations

import time

import pytest
import torch

import syftzmq as sy
from support.processes import wait_for_exit

AT_ONCE = 1.0  # seconds: far below any deadline, so nothing waited for an answer


def test_everything_addressed_to_a_shut_down_worker_raises_at_once(hook):
    gone = sy.VirtualWorker(hook, id="gone")
    x = torch.ones(3).send(gone)
    y = x + 1
    before = sy.stats()
    gone.shutdown()
    assert wait_for_exit(gone.process.pid, 10)
    attempts = {
        "send": lambda: torch.ones(2).send(gone),
        "operation": lambda: x + 1,
        "get": lambda: y.get(),
        "objects": lambda: gone._objects,
        "ping": lambda: gone.ping(),
        "send of a pointer": lambda: x.send(gone),
    }
    for what, attempt in attempts.items():
        start = time.monotonic()
        with pytest.raises(sy.WorkerShutDown) as caught:
            attempt()
        assert time.monotonic() - start < AT_ONCE, what
        assert caught.value.worker == "gone", what
        assert "'gone'" in str(caught.value) and "shut down" in str(caught.value), what
        assert isinstance(caught.value, sy.WorkerUnavailable)
    assert (sy.stats() - before).messages_sent == 1          # the shutdown request only
    start = time.monotonic()
    gone.shutdown()                                          # harmless, and at once
    assert time.monotonic() - start < AT_ONCE
    del x, y


def test_a_shut_down_worker_does_not_disturb_the_others(hook, bob):
    gone = sy.VirtualWorker(hook, id="gone2")
    on_gone = torch.ones(2).send(gone)
    gone.shutdown()
    with pytest.raises(sy.WorkerShutDown):
        on_gone * 2
    assert torch.equal((torch.ones(2).send(bob) * 3).get(), torch.full((2,), 3.0))
    del on_gone
    assert bob._objects == {}
