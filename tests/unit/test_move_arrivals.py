"""The destination's side of a move in flight (:mod:`syftzmq.worker.move_arrivals`), as logic:
held until the move's MOVE_IN is applied, in order per client, never for what cannot come."""

from __future__ import annotations

from syftzmq.core.messages import BEFORE, DEL, MOVE_IN, MOVES_ABANDONED, MOVES_FIRST, SEQ
from syftzmq.worker.arrival_order import ArrivalOrder


def _order(lease: float = 60.0):
    applied: list[tuple[str, int]] = []
    counters: dict = {}
    order = ArrivalOrder("me#1", lambda sender, identity, msg: applied.append(
        (sender, msg.get(SEQ, msg.get("n")))), lambda origin: 0.0, lease, counters)
    return order, applied, counters


def _client(seq: int, moves=None, **fields) -> dict:
    msg = {"kind": "cmd", SEQ: seq, **fields}
    if moves is not None:
        msg[MOVES_FIRST] = list(moves)
    return msg


def test_a_message_naming_a_move_waits_for_its_move_in_and_later_ones_behind_it():
    order, applied, counters = _order()
    order.admit("client", b"c", _client(1, moves=[7]))
    order.admit("client", b"c", _client(2))                       # names nothing: waits behind
    assert applied == [] and counters["moves_waited"] == 2 and order
    order.admit("src", b"s", {"kind": MOVE_IN, "move_id": 7, "n": 100})
    assert applied == [("src", 100), ("client", 1), ("client", 2)] and not order


def test_a_move_in_that_came_first_or_rode_in_a_batch_holds_nothing():
    order, applied, _ = _order()
    order.admit("src", b"s", {"kind": "batch", "n": 1, BEFORE: [{"kind": MOVE_IN, "move_id": 7}]})
    order.admit("client", b"c", _client(1, moves=[7]))
    assert applied == [("src", 1), ("client", 1)]


def test_an_abandoned_move_releases_what_waits_and_the_abandoning_message_runs_after():
    order, applied, _ = _order()
    order.admit("client", b"c", _client(1, moves=[7]))
    order.admit("client", b"c", {"kind": DEL, SEQ: 2, "ids": [], MOVES_ABANDONED: [7]})
    assert applied == [("client", 1), ("client", 2)]


def test_a_retracted_move_waits_again_for_the_move_that_replaces_it():
    order, applied, _ = _order()
    order.admit("src", b"s", {"kind": MOVE_IN, "move_id": 7, "n": 1})
    order.admit("src", b"s", {"kind": DEL, "ids": [5], "retracts": 7, "n": 2})
    order.admit("client", b"c", _client(1, moves=[7]))
    assert applied == [("src", 1), ("src", 2)]                    # the take-back: waits again
    order.admit("src", b"s", {"kind": MOVE_IN, "move_id": 8, "replaces": [7], "n": 3})
    assert applied[-2:] == [("src", 3), ("client", 1)]


def test_nothing_waits_longer_than_a_lease_and_malformed_names_hold_nothing():
    order, applied, counters = _order(lease=5.0)
    order.admit("client", b"c", _client(1, moves=["not an id"]))
    assert applied == [("client", 1)]
    order.admit("client", b"c", _client(2, moves=[9]))
    due = order.next_due()
    assert due is not None
    order.expire(due - 1.0)
    assert applied == [("client", 1)]
    order.expire(due + 0.1)
    assert applied == [("client", 1), ("client", 2)] and counters["order_gave_up"] == 1
    assert order.next_due() is None
