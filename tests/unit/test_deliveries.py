"""The records behind "a call that gives up changes nothing", and the rejection notice format."""

from __future__ import annotations

from syftzmq.client.deliveries import Confirmations
from syftzmq.core.refs import WorkerRef
from syftzmq.wire.notice import MAX_NOTICE_BYTES, NOTICE_PREFIX, decode_notice, encode_notice
from syftzmq.worker.deliveries import CANCELLED, DONE, FAILED, MoveLog, Unconfirmed

BOB = WorkerRef("bob", "tcp://127.0.0.1:5555", "bob#1")


def test_unconfirmed_objects_are_found_by_their_requester_only_until_confirmed():
    held = Unconfirmed()
    held.hold("me#1", 7, "tensor")
    assert held.find("me#1", 7) == "tensor" and held.find("other#2", 7) is None
    assert list(held.items()) == [(7, "tensor")] and held.requesters() == {"me#1"}
    assert held.confirm("other#2", [7]) == 0                 # someone else cannot confirm it
    assert held.confirm("me#1", [7, 8, "junk"]) == 1
    assert len(held) == 0 and held.find("me#1", 7) is None


def test_unconfirmed_objects_go_with_their_requesters_lease():
    held = Unconfirmed()
    held.hold("me#1", 1, "a")
    held.hold("me#1", 2, "b")
    held.hold("you#2", 3, "c")
    assert held.drop_requester("me#1") == 2
    assert list(held.items()) == [(3, "c")]


def test_a_move_outcome_is_answered_once_known():
    log = MoveLog()
    answers: list[dict] = []
    assert log.begin(1)
    log.ask(1, answers.append)
    assert answers == []                                     # still waiting for the destination
    log.finish(1, [42])
    assert answers == [{"state": DONE, "new_ids": [42]}]
    log.ask(1, answers.append)
    assert answers[-1]["state"] == DONE
    assert log.begin(2)
    log.finish(2, None)
    log.ask(2, answers.append)
    assert answers[-1] == {"state": FAILED, "new_ids": None}


def test_a_move_asked_about_before_it_arrives_is_cancelled_and_refused():
    log = MoveLog()
    answers: list[dict] = []
    log.ask(5, answers.append)
    assert answers == [{"state": CANCELLED, "new_ids": None}]
    assert not log.begin(5)                                  # the late MOVE is refused
    assert log.begin(6) and not log.begin(6)                 # an id is used once


def test_the_move_log_is_bounded_and_keeps_pending_moves():
    log = MoveLog(limit=3)
    assert log.begin(0)                                      # stays pending throughout
    for move_id in range(1, 10):
        log.begin(move_id)
        log.finish(move_id, [move_id])
    assert len(log) <= 3 and log.state(0) == "pending" and log.state(9) == DONE


def test_confirmations_ride_once_and_can_be_put_back():
    confirmations = Confirmations()
    assert not confirmations
    confirmations.add(BOB, [1, 2])
    assert confirmations.take("bob#1") == [1, 2] and confirmations.take("bob#1") == []
    confirmations.put_back(BOB, [1, 2])
    assert confirmations.take_all() == [(BOB, [1, 2])] and not confirmations


def test_a_notice_round_trips_and_nothing_else_is_taken_for_one():
    frame = encode_notice("bad_signature", "bad signature: message rejected")
    assert frame.startswith(NOTICE_PREFIX) and len(frame) <= MAX_NOTICE_BYTES
    assert decode_notice([frame]) == {"reason": "bad_signature",
                                      "detail": "bad signature: message rejected"}
    assert decode_notice([frame, b"x"]) is None
    assert decode_notice([b"syftzmq/2c" + b"\0" * 10]) is None
    assert decode_notice([NOTICE_PREFIX + b"not json"]) is None
    assert decode_notice([NOTICE_PREFIX + b"x" * MAX_NOTICE_BYTES]) is None
    assert len(encode_notice("r" * 500, "d" * 5000)) <= MAX_NOTICE_BYTES


def test_a_kept_copy_lives_while_its_confirmation_waits_and_is_recycled_after():
    recycled = []
    confirmations = Confirmations(recycle=recycled.extend)
    confirmations.add(BOB, [1, 2, 3])
    confirmations.keep_copy("bob#1", 2, "copy of 2")
    confirmations.keep_copy("bob#1", 3, "copy of 3")
    confirmations.keep_copy("bob#1", 9, "not fetched")  # nothing waits for 9: not kept
    assert confirmations.copy_of("bob#1", 2) == "copy of 2"
    assert confirmations.copy_of("bob#1", 9) is None
    confirmations.withdraw("bob#1", 2)  # a store of the held copy consumes it instead
    assert recycled == ["copy of 2"] and confirmations.copy_of("bob#1", 2) is None
    assert confirmations.take("bob#1") == [1, 3]
    assert recycled == ["copy of 2", "copy of 3"]
    assert confirmations.copy_of("bob#1", 3) is None and not confirmations


def test_unchanged_means_bitwise_the_same_values_of_a_plain_parameter():
    import torch
    from torch import nn
    from syftzmq.tensor import unchanged

    value = nn.Parameter(torch.tensor([0.0, 1.0, float("nan")]))
    (copy,) = unchanged.copies_of([value])
    assert unchanged.unchanged(value, copy)
    with torch.no_grad():
        value[0] = -0.0  # equal as a number, not as bits
    assert not unchanged.unchanged(value, copy)
    with torch.no_grad():
        value[0] = 0.0
    assert unchanged.unchanged(value, copy)
    value.grad = torch.ones(3)  # a gradient travels with the parameter: sent as it is
    assert not unchanged.unchanged(value, copy)
    assert unchanged.copies_of([torch.ones(2), value.detach()]) == [None, None]  # not parameters
    strided = nn.Parameter(torch.arange(6.0).reshape(2, 3).t())  # compared element by element
    (strided_copy,) = unchanged.copies_of([strided])
    assert unchanged.unchanged(strided, strided_copy)
    assert unchanged.private_data(strided)
    view = strided.data  # shares the memory: a send must not let the worker write into it
    assert not unchanged.private_data(strided)
    del view
    assert unchanged.private_data(strided)
