"""Fast checks of the pure logic behind the worker's defences: the signature covers frame
boundaries and the protocol, argument walks have a budget, destinations are judged, and the
failure record stays per origin and bounded."""

from __future__ import annotations

import time

import pytest
import torch

from syftzmq.core import argtree
from syftzmq.core.failures import Failure
from syftzmq.core.meta import describe
from syftzmq.core.messages import probe_destination
from syftzmq.core.refs import WorkerRef
from syftzmq.errors import ProtocolError
from syftzmq.wire import Signer
from syftzmq.wire.envelope import PROTOCOL, PROTOCOL_SHM, unpack
from syftzmq.worker.addressing import ELSEWHERE, MINE, STALE, WRONG_ID, Addressing
from syftzmq.worker.downstream import Downstream, Waiters
from syftzmq.worker.failures import FailureRecord
from syftzmq.worker.validate import check_metas

KEY = b"k" * 32


def test_moving_bytes_between_frames_breaks_the_signature():
    signer = Signer(KEY)
    signature = signer.sign(PROTOCOL, [b"header", b"buffer"])
    with pytest.raises(ProtocolError, match="bad signature"):
        unpack(Signer(KEY), [PROTOCOL, signature, b"head", b"erbuffer"])
    assert unpack(Signer(KEY), [PROTOCOL, signature, b"header", b"buffer"])[0] == b"header"


def test_the_protocol_frame_is_signed():
    signature = Signer(KEY).sign(PROTOCOL, [b"header", b"[]"])
    with pytest.raises(ProtocolError, match="bad signature"):
        unpack(Signer(KEY), [PROTOCOL_SHM, signature, b"header", b"[]"])


def _shared(levels: int) -> list:
    node: list = [1]
    for _ in range(levels):
        node = [node, node]
    return node


def test_a_self_shared_list_is_refused_at_once():
    started = time.monotonic()
    with pytest.raises(ValueError, match="more than"):
        argtree.check_budget((_shared(64), 1), {})
    assert time.monotonic() - started < 5  # measured once per distinct list, not 2**64 times


def test_small_shared_arguments_pass_and_are_counted_expanded():
    index = [0, 1]
    # the root, the args tuple with the list twice (3 nodes each), the kwargs dict and its value
    assert argtree.check_budget((index, index), {"dim": 0}) == 1 + (1 + 2 * 3) + (1 + 1)
    assert argtree.check_budget((_shared(10),), {}) < 10_000


def test_cycles_and_deep_nesting_are_refused():
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match="contains itself"):
        argtree.check_budget((loop,), {})
    deep: list = []
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(ValueError, match="deeper"):
        argtree.check_budget((deep,), {})


def test_destinations():
    me = WorkerRef("bob", "tcp://10.0.0.5:5555", "bob#1111")
    judge = Addressing(me, "tcp://0.0.0.0:5555").judge
    assert judge(None) == MINE and judge("bob#1111") == MINE
    assert judge("bob#2222") == STALE
    assert judge("alice#1111") == ELSEWHERE
    assert judge(probe_destination("bob", "tcp://anything:1")) == MINE
    assert judge(probe_destination(None, "tcp://localhost:5555")) == MINE
    assert judge(probe_destination(None, "tcp://10.0.0.6:6666")) == ELSEWHERE
    assert judge(probe_destination("alice", "tcp://10.0.0.5:5555")) == WRONG_ID
    assert judge(probe_destination("alice", "tcp://10.0.0.6:6666")) == ELSEWHERE


def test_failure_record_is_per_origin_popped_and_bounded():
    record = FailureRecord("bob", per_origin=3, origins=2)
    failure = Failure("builtins.ValueError", "boom", "", "bob")
    for _ in range(5):
        record.record("a", failure)
    record.record("b", failure)
    assert record.failed_reply(1, "c") is None
    answer = record.failed_reply(7, "a")
    assert answer["req"] == 7 and answer["error"] is failure and len(answer["failures"]) == 2
    assert record.failed_reply(8, "a") is None  # popped
    record.record("c", failure)
    record.record("d", failure)  # two origins at most: the oldest ("b") went
    assert record.failed_reply(9, "b") is None and len(record) == 2


def test_a_worker_keeps_at_most_1024_origins_of_failures_and_of_pending_flushes():
    """SECURITY.md's bound on what messages can make a worker keep, at the defaults a worker
    runs with: 1,024 origins' failures and 1,024 origins' records of what to flush. A flood
    of origins pushes the least recently active out; it never grows the worker."""
    failures = FailureRecord("bob")
    failure = Failure("builtins.ValueError", "boom", "", "bob")
    for n in range(1500):
        failures.record(f"origin-{n}", failure)
    assert len(failures) == 1024
    assert failures.failed_reply(1, "origin-0") is None         # the oldest went
    assert failures.failed_reply(2, "origin-1499") is not None  # the newest stayed

    downstream = Downstream(WorkerRef("bob", None, "bob#1"), peers=None, waiters=Waiters(),
                            failures=failures)
    for n in range(1500):
        downstream.pending(f"origin-{n}")
    assert len(downstream._pending) == 1024
    assert not downstream.has_pending("origin-0") and downstream.has_pending("origin-1499")


def test_a_commands_metas_are_one_readable_description_per_result():
    """A chain holder stores each forwarded result's meta in the hop it makes (answered to
    INFO later): a ``metas`` field that is not one description per result is refused, named."""
    good = [describe(torch.ones(3)), None]
    assert check_metas(good, 2) is good and check_metas(None, 2) is None
    for bad in (5, "metas", [describe(torch.ones(3))], good + [None], [object(), None],
                (describe(torch.ones(3)), None)):
        with pytest.raises(ProtocolError, match="metas"):
            check_metas(bad, 2)
