"""What a round trip remembers (syftzmq/client/round_trip.py), without workers: which workers
an observation must flush first, and which replies answer which request."""

from __future__ import annotations

from syftzmq.client.round_trip import Awaiting, Pending


def test_commands_make_a_worker_dirty_and_an_answer_cleans_it():
    pending = Pending()
    pending.queued("bob")
    pending.sent("alice", "cmd")
    assert pending.to_flush("carol", complete=False) == {"bob", "alice"}
    assert pending.to_flush("bob", complete=False) == {"alice"}   # never itself
    pending.answered("alice")
    assert pending.to_flush("carol", complete=False) == {"bob"}


def test_deletes_only_matter_to_a_complete_flush():
    pending = Pending()
    pending.sent("bob", "del")
    assert pending.to_flush("alice", complete=False) == set()
    assert pending.to_flush("alice", complete=True) == {"bob"}


def test_deletes_carrying_commands_count_as_commands():
    pending = Pending()
    pending.sent("bob", "del", carried=[{"kind": "cmd"}])
    assert pending.to_flush("alice", complete=False) == {"bob"}


def test_a_timeout_marks_the_silent_worker_and_frees_the_others():
    pending = Pending()
    for worker in ("bob", "alice"):
        pending.sent(worker, "cmd")
    pending.timed_out("bob", ["bob", "alice"])
    assert pending.unresponsive == {"bob"}
    assert pending.to_flush("carol", complete=True) == set()
    pending.sent("bob", "del")                   # deletes to a silent worker: nobody waits
    assert pending.to_flush("carol", complete=True) == set()
    pending.answered("bob")                      # it answers again: it counts again
    assert pending.unresponsive == set()
    pending.sent("bob", "del")
    assert pending.to_flush("carol", complete=True) == {"bob"}


def test_forget_clears_every_mark():
    pending = Pending()
    pending.sent("bob", "cmd")
    pending.sent("alice", "del")
    pending.timed_out("bob", ["bob"])
    pending.forget("bob")
    pending.forget("alice")
    assert (pending.dirty, pending.deletes, pending.unresponsive) == (set(), set(), set())


def test_replies_are_matched_to_their_request():
    awaiting = Awaiting()
    bob_req = awaiting.expect("bob")
    alice_req = awaiting.expect("alice")
    assert bob_req != alice_req
    assert not awaiting.offer("bob", None)
    assert not awaiting.offer("bob", {"req": 12345})          # a late answer to an older ask
    assert not awaiting.offer("bob", {"req": alice_req})      # alice's id, from bob's socket
    assert awaiting.missing() == ["bob", "alice"]
    assert awaiting.offer("alice", {"req": alice_req, "value": 2})
    assert not awaiting.complete and awaiting.missing() == ["bob"]
    assert awaiting.offer("bob", {"req": bob_req, "value": 1})
    assert not awaiting.offer("bob", {"req": bob_req, "value": "again"})  # a duplicate
    assert awaiting.complete
    assert {w: m["value"] for w, m in awaiting.replies.items()} == {"bob": 1, "alice": 2}
