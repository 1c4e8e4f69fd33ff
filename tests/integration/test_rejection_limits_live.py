"""The notice limit on a real worker process (SECURITY.md: a sender whose message is dropped at
the envelope gets an unsigned rejection notice, "at most twenty a second per worker"): a flood
of wrongly signed messages gets a trickle of notices, every one of them is still counted, and
the worker goes on serving.

A worker of its own (``victim``), not a shared session worker: the notice allowance is per
worker, and another test that just made a shared worker reject messages would have spent it.
"""

from __future__ import annotations

import time

import pytest
import torch

from support.hostile import RawPeer
from syftzmq.core.messages import PING, message
from syftzmq.wire import Signer, dumps, pack

pytestmark = pytest.mark.timeout(120)

PER_PEER = 100  # wrongly signed messages from each of two connections: 200 in all
RATE = 20       # notices a second per worker, as documented


def test_a_flood_of_wrongly_signed_messages_gets_at_most_twenty_notices_a_second(victim):
    """Two connections send 100 wrongly signed messages each, then one authentic PING each.

    One connection keeps order both ways, so a peer's PING reply comes after the worker has
    rejected all of that peer's flood, and after every notice it sent that peer: the notices
    read before the replies are all there are. The worker sent them between the first send
    (``t0``) and the last reply (``t1``), from an allowance of twenty that refills at twenty a
    second, so at most ``20 + 20 * (t1 - t0)`` of the 200 were answered, whatever the machine's
    speed; at least one was, or the test would prove nothing. Two connections, because the
    limit is the worker's, not each sender's.
    """
    peers = [RawPeer(victim.address, b"notice-flood-%d" % n) for n in range(2)]
    try:
        before = max((peer.stats() for peer in peers), key=lambda s: s["rejected"])
        for peer in peers:
            peer.notices.clear()  # (none are expected: the stats asks were authentic)
        wrong = Signer(b"not the cluster key")
        t0 = time.monotonic()
        for i in range(PER_PEER):
            for n, peer in enumerate(peers):
                peer.send_frames(pack(wrong, *dumps(message(PING, req=10_000 * (n + 1) + i))))
        for n, peer in enumerate(peers):
            peer.send(message(PING, req=n + 1))
        after = [_reply_to(peer, n + 1) for n, peer in enumerate(peers)]
        t1 = time.monotonic()
        notices = [notice for peer in peers for notice in peer.notices]
    finally:
        for peer in peers:
            peer.close()

    elapsed = t1 - t0
    assert notices, "no rejection notice arrived: a client with a wrong key would not be told"
    assert {notice["reason"] for notice in notices} == {"bad_signature"}
    assert len(notices) <= RATE + RATE * elapsed + 1, \
        f"{len(notices)} notices for {2 * PER_PEER} bad messages within {elapsed:.2f} s"
    # every rejection is counted, answered or not (the later PING has seen both floods)
    stats = max((answer["value"] for answer in after), key=lambda s: s["rejected"])
    gained = {reason: count - before["rejected_by_reason"].get(reason, 0)
              for reason, count in stats["rejected_by_reason"].items()}
    assert stats["rejected"] - before["rejected"] == 2 * PER_PEER
    assert gained == {**{reason: 0 for reason in gained}, "bad_signature": 2 * PER_PEER}
    # and the worker serves as before
    assert victim.ping()["ref"].id == "victim"
    assert torch.equal((torch.ones(2).send(victim) + 1).get(), torch.full((2,), 2.0))


def _reply_to(peer: RawPeer, req: int) -> dict:
    """The reply to ``req`` (already sent), within the peer's answer deadline; the notices met
    on the way are kept in ``peer.notices``."""
    while True:
        answer = peer.reply()
        assert answer is not None, f"no reply to PING {req}"
        if answer.get("req") == req:
            return answer
