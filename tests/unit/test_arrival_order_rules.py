"""The arrival-order rules on their own (the worker loop's use of them is tested with real
workers in tests/integration/test_arrival_order.py)."""

from __future__ import annotations

from syftzmq.core.messages import AFTER, BATCH, BEFORE, CMD, FLUSH, SEQ
from syftzmq.worker.arrival_order import ArrivalOrder

ME = "w#1"


def _order(heard=("client",), lease=60.0, max_waiting=100):
    applied: list[tuple[str, str]] = []
    order = ArrivalOrder(ME, lambda sender, identity, msg: applied.append((sender, msg["name"])),
                         lambda origin: 0.0 if origin in heard else None, lease, {},
                         max_waiting=max_waiting)
    return order, applied


def _forward(name, needed, origin="client", **fields):
    return {"kind": CMD, "origin": origin, "name": name, AFTER: {ME: needed}, **fields}


def test_a_forward_waits_for_the_client_message_it_follows_and_keeps_its_peers_order():
    order, applied = _order()
    order.admit("client", b"c", {"kind": CMD, "origin": "client", "name": "c1", SEQ: 1})
    order.admit("holder", b"h", _forward("f1", 2))
    order.admit("holder", b"h", {"kind": FLUSH, "origin": "client", "name": "flush"})  # behind it
    order.admit("other", b"o", {"kind": FLUSH, "origin": "client", "name": "other"})  # not behind
    assert applied == [("client", "c1"), ("other", "other")] and order.waiting() == 2
    order.admit("client", b"c", {"kind": CMD, "origin": "client", "name": "c2", SEQ: 2})
    assert applied[2:] == [("client", "c2"), ("holder", "f1"), ("holder", "flush")]
    assert not order


def test_a_requirement_inside_a_batch_holds_the_batch():
    order, applied = _order()
    batch = {"kind": BATCH, "origin": "holder", "name": "batch",
             BEFORE: [{"kind": CMD, "origin": "client"}, _forward("inner", 3)]}
    order.admit("holder", b"h", batch)
    assert applied == []
    order.admit("client", b"c", {"kind": CMD, "origin": "client", "name": "c3", SEQ: 3})
    assert applied == [("client", "c3"), ("holder", "batch")]


def test_nothing_waits_for_an_unknown_origin_a_met_number_or_a_lost_message():
    order, applied = _order()
    order.admit("holder", b"h", _forward("stranger", 5, origin="never-heard"))
    order.admit("client", b"c", {"kind": CMD, "origin": "client", "name": "c1", SEQ: 4})
    order.admit("holder", b"h", _forward("met", 4))
    order.lost("client")
    order.admit("holder", b"h", _forward("after a lost one", 9))
    assert [name for _, name in applied] == ["stranger", "c1", "met", "after a lost one"]


def test_a_silent_origin_is_waited_for_one_lease_and_a_backlog_is_bounded():
    order, applied = _order(lease=10.0, max_waiting=2)
    order.admit("holder", b"h", _forward("a", 7))
    order.expire(now=5.0)
    assert applied == []                                   # within the lease
    order.expire(now=1e9)
    assert applied == [("holder", "a")]                    # given up on, and run
    for name in ("b", "c", "d"):
        order.admit("holder", b"h", _forward(name, 7))
    assert [name for _, name in applied] == ["a", "b"]     # beyond the bound the oldest runs
