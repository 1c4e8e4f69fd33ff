"""The outbox's queues (syftzmq/client/outbox.py), without workers: order, size and age limits."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

import pytest

import torch

from syftzmq.client.outbox import BUSY_ELEMENTS, BUSY_GAP_SECONDS, Outbox, starts_real_work
from syftzmq.core.meta import TensorMeta
from syftzmq.core.refs import WorkerRef

BOB = WorkerRef("bob", "tcp://127.0.0.1:1", "bob#1")
ALICE = WorkerRef("alice", "tcp://127.0.0.1:2", "alice#1")


class _Owner:
    """Stands in for the session: the outbox holds its flush callback weakly."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.sweeps = 0

    def flush_due(self) -> None:
        self.sweeps += 1


@pytest.fixture
def owner():
    return _Owner()


@contextmanager
def _outbox(owner: _Owner, **options) -> Iterator[Outbox]:
    """An outbox for ``owner``, closed (its sweeper thread stopped) at the end."""
    outbox = Outbox(owner.flush_due, owner.lock, **options)
    try:
        yield outbox
    finally:
        outbox.close()


def _cmd(n: int) -> dict:
    return {"kind": "cmd", "n": n}


def test_take_returns_what_was_added_in_order_and_empties_the_queue(owner):
    with _outbox(owner, linger=60) as outbox:
        for n in range(5):
            assert outbox.add(BOB, _cmd(n)) is False
        outbox.add(ALICE, _cmd(99))
        assert set(outbox.incarnations()) == {"bob#1", "alice#1"}
        assert outbox.ref("bob#1") is BOB
        assert [m["n"] for m in outbox.take("bob#1")] == [0, 1, 2, 3, 4]
        assert "bob#1" not in outbox and outbox.take("bob#1") == []
        assert [m["n"] for m in outbox.take("alice#1")] == [99]
        assert not outbox


def test_a_full_queue_asks_to_leave(owner):
    with _outbox(owner, max_queued=3, linger=60) as outbox:
        assert [outbox.add(BOB, _cmd(n)) for n in range(3)] == [False, False, True]


def test_a_queue_whose_oldest_waited_the_linger_asks_to_leave(owner):
    with _outbox(owner, linger=0.0) as outbox:
        assert outbox.add(BOB, _cmd(0)) is False     # the first of a queue never leaves alone
        assert outbox.add(BOB, _cmd(1)) is True


def _metas(*shapes: tuple) -> list:
    return [TensorMeta(torch.Size(s), torch.float32) for s in shapes]


def test_a_command_with_large_results_or_a_backward_starts_real_work():
    big = (BUSY_ELEMENTS // 64, 64)
    assert starts_real_work(("func", "torch.conv2d"), _metas(big))
    assert starts_real_work(("func", "torch.max"), _metas((4,), (BUSY_ELEMENTS,)))
    assert starts_real_work(("method", "backward"), None)
    assert not starts_real_work(("func", "torch.add"), _metas((4,)))
    assert not starts_real_work(("func", "torch.add"), _metas((BUSY_ELEMENTS - 1,)))
    assert not starts_real_work(("method", "add_"), None)


def test_a_command_that_starts_real_work_asks_to_leave_at_once(owner):
    """The first of its queue too: the worker works while the client issues the next ones."""
    with _outbox(owner, linger=60) as outbox:
        assert outbox.add(BOB, {"kind": "cmd", "op": ("func", "torch.conv2d")}, True) is True
        assert [m["op"] for m in outbox.take("bob#1")] == [("func", "torch.conv2d")]
        assert outbox.add(ALICE, {"kind": "cmd", "op": ("method", "backward")}, True) is True
        assert outbox.add(ALICE, _cmd(1)) is False   # not real work: it waits with the queue


def test_real_work_right_after_real_work_waits_the_gap(owner):
    """The worker is still on the first: the second joins the queue, and leaves by the usual
    rules or as real work once the gap has passed."""
    backward = {"kind": "cmd", "op": ("method", "backward")}
    with _outbox(owner, linger=60) as outbox:
        assert outbox.add(BOB, {"kind": "cmd", "op": ("func", "torch.conv2d")}, True) is True
        outbox.take("bob#1")
        started = time.monotonic()
        second = outbox.add(BOB, dict(backward), True)
        if time.monotonic() - started < BUSY_GAP_SECONDS:  # (a slow machine may take longer)
            assert second is False
            assert outbox.add(BOB, _cmd(1)) is False
            deadline = time.monotonic() + 10
            while time.monotonic() - started < BUSY_GAP_SECONDS and time.monotonic() < deadline:
                time.sleep(BUSY_GAP_SECONDS / 4)  # the gap is the condition waited on
            assert outbox.add(BOB, dict(backward), True) is True


def test_put_back_goes_before_what_was_queued_since(owner):
    with _outbox(owner, linger=60) as outbox:
        outbox.add(BOB, _cmd(0))
        outbox.add(BOB, _cmd(1))
        taken = outbox.take("bob#1")
        outbox.add(BOB, _cmd(2))                     # queued while the send failed
        outbox.put_back("bob#1", BOB, taken)
        assert [m["n"] for m in outbox.take("bob#1")] == [0, 1, 2]
        outbox.put_back("bob#1", BOB, [])            # nothing to put back: no queue appears
        assert "bob#1" not in outbox


def test_due_lists_queues_by_the_age_of_their_oldest_command(owner):
    with _outbox(owner, linger=10.0) as outbox:
        start = time.monotonic()
        outbox.add(BOB, _cmd(0))
        outbox.add(ALICE, _cmd(1))
        assert outbox.due(start) == []
        assert sorted(outbox.due(start + 11.0)) == ["alice#1", "bob#1"]
        outbox.take("alice#1")
        assert outbox.due(start + 11.0) == ["bob#1"]
        outbox.add(BOB, _cmd(2))                     # a newer command does not make it younger
        assert outbox.due(start + 11.0) == ["bob#1"]


def test_discard_drops_a_workers_queue_only(owner):
    with _outbox(owner, linger=60) as outbox:
        outbox.add(BOB, _cmd(0))
        outbox.add(ALICE, _cmd(1))
        outbox.discard("bob#1")
        assert outbox.incarnations() == ["alice#1"]


def test_the_sweeper_calls_flush_due_while_work_is_due(owner):
    with _outbox(owner, linger=0.0) as outbox:
        outbox.add(BOB, _cmd(0))
        deadline = time.monotonic() + 10
        while owner.sweeps == 0 and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        assert owner.sweeps > 0


def test_a_failing_flush_does_not_stop_the_sweeper(owner, caplog):
    calls = []

    class Failing(_Owner):
        def flush_due(self) -> None:
            calls.append(1)
            raise RuntimeError("flush exploded")

    failing = Failing()
    with _outbox(failing, linger=0.0) as outbox:
        with caplog.at_level("WARNING", logger="syftzmq.client"):
            outbox.add(BOB, _cmd(0))
            deadline = time.monotonic() + 10
            while len(calls) < 3 and time.monotonic() < deadline:
                threading.Event().wait(0.01)
        assert len(calls) >= 3                       # it kept sweeping after the first failure
        failures = [r for r in caplog.records if "background flush failed" in r.getMessage()]
        assert failures and failures[0].exc_info[0] is RuntimeError


def test_the_sweeper_leaves_a_queue_that_is_not_due_alone(owner):
    """A look that finds nothing due takes neither the session's lock nor calls flush_due."""
    with _outbox(owner, linger=60) as outbox:
        with owner.lock:  # held: a sweeper that took it now would block here, not return
            outbox.add(BOB, _cmd(0))
            deadline = time.monotonic() + 0.2
            while time.monotonic() < deadline:  # several looks of the sweeper
                threading.Event().wait(0.01)
        assert owner.sweeps == 0
