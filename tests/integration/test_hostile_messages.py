"""Messages meant to kill, stall or flood a worker — each sent to the same worker, which must
then still run the user's walkthrough, with its memory back within a generous bound.

Signed (a key holder): a stored chain hop whose holder has no address, a batch naming 1,100
fake peers, an argument that is a list shared with itself 64 levels deep. Without the key, from
a raw ZMTP peer: eight unfinished 64 MiB frames flagged "more" and 8 MiB of 2-byte frames; and
a connection claiming a connected client's routing identity, and a connect probe captured on
its way to one worker and replayed to another.
"""

from __future__ import annotations

import pytest
import torch
import zmq

import syftzmq as sy
from support.hostile import RawPeer
from support.processes import wait_until
from support.walkthrough import run_walkthrough
from support.zmtp import RawZmtpPeer, frame, long_frame_header
from support.workers import started_workers
from syftzmq.core.ids import new_id
from syftzmq.core.messages import (BATCH, CMD, DEL, FLUSH, GET, PING, STORE, message,
                                   probe_destination)
from syftzmq.core.refs import ChainRef, Ref, WorkerRef
from syftzmq.wire import dumps, pack

pytestmark = pytest.mark.timeout(300)

HOSTILE = "hostile#0001"  # the origin the signed attacks claim: the user's session is another


@pytest.fixture(scope="module")
def pair(hook):
    with started_workers(hook, "target", "bystander") as workers:
        yield workers


@pytest.fixture
def raw(pair):
    peer = RawPeer(pair[0].address, b"hostile-key-holder")
    yield peer
    peer.close()


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def flush_failures(raw: RawPeer) -> list[str]:
    """What the attacker's own origin recorded (an observation on its behalf)."""
    answer = raw.ask(message(FLUSH, req=new_id(), origin=HOSTILE, timeout=0.5), timeout_ms=20000)
    errors = [answer["error"], *answer["failures"]] if answer["error"] else []
    return [error.message for error in errors]


def test_every_hostile_message_then_the_walkthrough(hook, pair, raw):
    target, bystander = pair
    pid = target.process.pid
    raw.stats()
    before = rss_mib(pid)

    store_a_hop_without_address(raw)
    name_1100_fake_peers(raw)
    send_a_self_shared_list(raw)
    frames_flagged_more_never_finished(target)
    eight_mib_of_two_byte_frames(target, raw)
    claim_a_connected_identity(target)
    replay_a_probe(target, bystander)

    assert target.ping()["ref"].id == "target"
    assert target._objects == {} and bystander._objects == {}
    run_walkthrough(target, bystander)
    after = rss_mib(pid)
    assert after - before < 300, f"worker RSS went from {before:.0f} to {after:.0f} MiB"


def store_a_hop_without_address(raw: RawPeer) -> None:
    """Refused on receipt, naming the address: nothing is stored that a tick would trip on."""
    ghost = WorkerRef("ghost", None, "ghost#00")
    answer = raw.ask(message(STORE, req=new_id(), origin=HOSTILE, id=new_id(),
                             obj=ChainRef(ghost, 5, new_id())))
    assert "not a worker address" in answer["error"].message
    bad = WorkerRef("ghost", "nowhere", "ghost#00")
    raw.send(message(STORE, origin=HOSTILE, id=new_id(), obj=ChainRef(bad, 5, new_id())))
    assert any("'nowhere' is not a worker address" in text for text in flush_failures(raw))
    assert raw.stats()["objects"] == 0


def name_1100_fake_peers(raw: RawPeer) -> None:
    """1,100 stored hops to fake peers, a command forwarded through each, then deletes that
    cascade to each: at most 256 peer sockets are ever open, the rest are closed."""
    hops = [new_id() for _ in range(1100)]
    stores = [message(STORE, origin=HOSTILE, id=hop,
                      obj=ChainRef(WorkerRef(f"fake{n}", f"tcp://127.0.0.1:{1 + n % 1000}",
                                             f"fake{n}#{n:04x}"), new_id(), new_id()))
              for n, hop in enumerate(hops)]
    commands = [message(CMD, origin=HOSTILE, op=("func", "torch.neg"), args=(Ref(hop),),
                        kwargs={}, results=[new_id()]) for hop in hops]
    raw.send(message(BATCH, origin=HOSTILE, before=stores + commands))
    stats = raw.stats()
    assert stats["objects"] == 2200  # every hop and every forwarded result's hop
    assert stats["peers_open"] <= 256 and stats["peers_evicted"] >= 1100 - 256
    raw.send(message(DEL, origin=HOSTILE, ids=[*hops, *(c["results"][0] for c in commands)]))
    stats = raw.stats()
    assert stats["objects"] == 0 and stats["peers_open"] <= 256


def send_a_self_shared_list(raw: RawPeer) -> None:
    """A 64-level list shared with itself (2**64 leaves, a few hundred bytes) is refused at
    once, as an argument and as a list of references to fetch."""
    shared: list = [1]
    for _ in range(64):
        shared = [shared, shared]
    result = new_id()
    raw.send(message(CMD, origin=HOSTILE, op=("func", "torch.add"), args=(shared, 1),
                     kwargs={}, results=[result]))
    assert any("more than" in text and "refused" in text for text in flush_failures(raw))
    answer = raw.ask(message(GET, req=new_id(), origin=HOSTILE, refs=shared))
    assert answer["error"] is not None
    raw.send(message(DEL, origin=HOSTILE, ids=[result]))  # the stored failure
    assert raw.stats()["objects"] == 0


def frames_flagged_more_never_finished(target) -> None:
    """Eight 64 MiB frames that never end a message, from a raw ZMTP peer (libzmq's own
    sockets never send part of a message). libzmq holds them while that connection stays open
    (it hands the worker only whole messages); the worker serves others meanwhile, and the
    memory is freed when the connection closes."""
    pid = target.process.pid
    before = rss_mib(pid)
    peer = RawZmtpPeer(target.address)
    body = memoryview(bytes(64 << 20))
    try:
        for _ in range(8):
            peer.send_raw(long_frame_header(body.nbytes))
            peer.send_raw(body)
        assert torch.equal((torch.ones(3).send(target) + 1).get(), torch.full((3,), 2.0))
    finally:
        peer.close()
    wait_until(lambda: rss_mib(pid) < before + 128, 30, "the unfinished frames freed")


def eight_mib_of_two_byte_frames(target, raw: RawPeer) -> None:
    """One message of 2 Mi two-byte frames (8 MiB on the wire), from a raw ZMTP peer: read
    frame by frame, dropped past 65,536 frames without keeping any, counted as rejected."""
    before = oversized(raw)
    peer = RawZmtpPeer(target.address)
    try:
        peer.send_raw(frame(b"ab", more=True) * ((2 << 20) - 1) + frame(b"ab"))
        # libzmq hands the flood over once its last frame is in; the worker then drains it
        wait_until(lambda: oversized(raw) > before, 120, "the flood counted as rejected")
        assert oversized(raw) == before + 1
    finally:
        peer.close()


def oversized(raw: RawPeer) -> int:
    """How many messages the worker dropped unread (its answer may wait behind a flood)."""
    stats = raw.ask(message(PING, req=new_id()), timeout_ms=60_000)["value"]
    return stats["rejected_by_reason"].get("oversized", 0)


def claim_a_connected_identity(target) -> None:
    """A stranger connecting with the routing identity of the user's connection does not get
    its replies: the worker refuses the second connection (no ROUTER_HANDOVER)."""
    session = sy.default_session()
    x = torch.arange(4).send(target)
    identity = session._connections[target.ref.incarnation].socket.getsockopt(zmq.IDENTITY)
    thief = zmq.Context.instance().socket(zmq.DEALER)
    thief.setsockopt(zmq.LINGER, 0)
    thief.setsockopt(zmq.IDENTITY, identity)
    thief.connect(target.address)
    try:
        thief.send(b"hello")  # makes sure the connection is attempted
        assert torch.equal((x * 2).get(), torch.arange(4) * 2)
        assert target.ping()["ref"].id == "target"
        assert not thief.poll(500), "the stranger received a reply meant for the client"
    finally:
        thief.close()
    del x


def replay_a_probe(target, bystander) -> None:
    """A connect probe as a client sends it to ``target``, replayed to ``bystander``: never
    answered there (the bystander's replay window never saw it); answered by ``target``."""
    to_bystander = RawPeer(bystander.address, b"replayer")
    to_target = RawPeer(target.address, b"prober")
    try:
        before = to_bystander.stats()["rejected_by_reason"].get("misaddressed", 0)
        probe = pack(to_target.signer, *dumps(message(
            PING, req=new_id(), to=probe_destination("target", target.address))))
        to_bystander.send_frames(probe)
        addressed = pack(to_target.signer, *dumps(message(PING, req=new_id(),
                                                          to=target.ref.incarnation)))
        to_bystander.send_frames(addressed)
        assert to_bystander.reply(1000) is None
        assert to_bystander.stats()["rejected_by_reason"]["misaddressed"] == before + 2
        to_target.send_frames(probe)
        answer = to_target.reply(5000)
        assert answer is not None and answer["value"]["ref"] == target.ref
        no_id = pack(to_target.signer, *dumps(message(
            PING, req=new_id(), to=probe_destination(None, target.address))))
        to_bystander.send_frames(no_id)
        assert to_bystander.reply(1000) is None
    finally:
        to_bystander.close()
        to_target.close()


def test_a_liveness_probe_at_the_main_socket_is_not_held_against_its_sender(bob):
    """A probe socket that reconnects to a port a new worker now holds delivers signed JSON to
    that worker's main socket: dropped there as misaddressed, and the sender's next observation
    is not failed for it (the probe's sender is the client itself)."""
    peer = RawPeer(bob.address, b"stale-probe")
    try:
        before = peer.stats()["rejected_by_reason"].get("misaddressed", 0)
        peer.send_frames(pack(peer.signer, b'{"kind": "alive?", "req": 1}', []))
        stats = peer.stats()  # answered, not failed with "cannot deserialize"
        assert stats["rejected_by_reason"].get("misaddressed", 0) == before + 1
    finally:
        peer.close()
