"""Requests whose fields are malformed, from a key holder: each is refused with a reply that
names what was wrong, changes nothing, and the worker serves on.

SECURITY.md promises that a stored chain hop or a move's destination whose address is missing
or not an endpoint, or whose ids and names have the wrong types, "fails the message that brought
it (with a reply naming what was wrong) and is never stored". The fuzz tests only show that a
worker survives such messages; here each malformed field is sent on its own, with a ``req`` (a
reply is owed), and the test checks the three parts of the promise: the reply is an error whose
text names the offending field or value, nothing was stored or moved (both workers' object
counts are unchanged and an object stored before comes back intact), and a normal request
still works afterwards.

Valid-looking requests are built once (:func:`valid_move`, :func:`valid_store`) and each case
spoils one field, so a case that passes shows that this one check works, not that some other
field was wrong too. The move's destination is a real worker: a malformed move that slipped
through would really move the object, and the test would see it.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from support.hostile import RawPeer
from support.workers import started_workers
from syftzmq.core.ids import new_id
from syftzmq.core.messages import CLEAR, FLUSH, GET, INFO, MOVE, MOVE_IN, STORE, message
from syftzmq.core.meta import TensorMeta, describe
from syftzmq.core.refs import ChainRef, Ref, WorkerRef

pytestmark = pytest.mark.timeout(120)

ORIGIN = "malformed#0001"  # the client the raw requests claim to come from
KEPT = torch.arange(6, dtype=torch.float32) * 1.5  # stored before each case, fetched after it
GHOST = WorkerRef("ghost", "tcp://127.0.0.1:1", "ghost#0000")  # well formed, never dialled


@pytest.fixture(scope="module")
def pair(hook):
    """Workers of this module only: a source and a real destination for moves (the session's
    workers fail a test that leaves objects, and a slipped-through case might leave some)."""
    with started_workers(hook, "malformed-src", "malformed-dst") as workers:
        yield workers


@pytest.fixture(scope="module")
def peers(pair):
    """Raw, signed peers to each worker (one identity each: the owner of what they store)."""
    src, dst = pair
    to_src, to_dst = RawPeer(src.address, b"malformed-peer"), RawPeer(dst.address, b"malformed-peer")
    yield to_src, to_dst
    to_src.close()
    to_dst.close()


@pytest.fixture
def kept(peers):
    """The id of a tensor the raw peer stored on the source (owned by it, so a move that
    slipped through would move it); fetched back and compared after the case. Afterwards
    both workers are cleared of the peer's objects: one case that slipped through must not
    fail the cases after it."""
    to_src, _ = peers
    object_id = new_id()
    answer = to_src.ask(message(STORE, req=new_id(), origin=ORIGIN, id=object_id, obj=KEPT.clone()))
    assert answer["error"] is None and answer["value"] is True
    yield object_id
    # whatever a case that slipped through left goes, so the next case starts clean
    for peer in peers:
        assert peer.ask(message(CLEAR, req=new_id(), origin=ORIGIN))["error"] is None


def refused(peer: RawPeer, others: list[RawPeer], msg: dict, *needles: str) -> str:
    """Send ``msg`` and check it is refused, naming each of ``needles``, with no object stored
    or dropped at ``peer`` or at ``others``; returns the error's text."""
    counts = [p.stats()["objects"] for p in (peer, *others)]
    answer = peer.ask(msg)
    assert answer["error"] is not None, \
        f"a malformed {msg['kind']} was answered with success: {answer['value']!r}"
    text = answer["error"].message
    for needle in needles:
        assert needle in text, f"the refusal does not name {needle!r}: {text}"
    assert [p.stats()["objects"] for p in (peer, *others)] == counts, \
        f"a refused {msg['kind']} changed what is stored"
    # the refusal was the reply: nothing is left in the origin's failure record to fail the
    # next observation with
    flushed = peer.ask(message(FLUSH, req=new_id(), origin=ORIGIN))
    assert flushed["error"] is None and flushed["failures"] == []
    return text


def intact_and_serving(peer: RawPeer, object_id: int) -> None:
    """The object stored before the case comes back unchanged (a normal request: the worker
    still serves), and taking it leaves the source empty."""
    answer = peer.ask(message(GET, req=new_id(), origin=ORIGIN, refs=[object_id]))
    assert answer["error"] is None, answer["error"]
    assert torch.equal(answer["value"][0], KEPT)
    peer.ask(message(FLUSH, req=new_id(), origin=ORIGIN, confirm=[object_id]))  # drop the held copy
    assert peer.stats()["objects"] == 0


# ---------------------------------------------------------------------------------- MOVE
def valid_move(object_id: int, dest: WorkerRef) -> dict:
    return message(MOVE, req=new_id(), origin=ORIGIN, ids=[object_id], new_ids=[new_id()],
                   dest=dest)


BAD_DESTS = {
    "a str": ("tcp://127.0.0.1:1", "must be a WorkerRef, got str"),
    "an int": (5555, "must be a WorkerRef, got int"),
    "None": (None, "must be a WorkerRef, got NoneType"),
    "a ChainRef": (ChainRef(GHOST, 1, 2), "must be a WorkerRef, got ChainRef"),
    "address None": (replace(GHOST, address=None), "None is not a worker address"),
    "address 'nowhere'": (replace(GHOST, address="nowhere"), "'nowhere' is not a worker address"),
    "address an int": (replace(GHOST, address=5555), "5555 is not a worker address"),
    "address a scheme alone": (replace(GHOST, address="tcp://"), "'tcp://' is not a worker address"),
    "id an int": (replace(GHOST, id=7), "needs a string id and incarnation, got 7"),
    "incarnation None": (replace(GHOST, incarnation=None), "needs a string id and incarnation"),
    "incarnation empty": (replace(GHOST, incarnation=""), "needs a string id and incarnation"),
    "incarnation bytes": (replace(GHOST, incarnation=b"ghost#0000"),
                          "needs a string id and incarnation"),
    "shm an int": (replace(GHOST, shm=3), "shared-memory namespace that is not a string"),
    # dialled by the liveness tick: a bad one made every tick fail, and the move never settled
    "liveness an int": (replace(GHOST, liveness=5), "bad liveness address: 5 is not"),
    "liveness 'nowhere'": (replace(GHOST, liveness="nowhere"), "'nowhere' is not a worker address"),
}


@pytest.mark.parametrize("dest, needle", BAD_DESTS.values(), ids=BAD_DESTS.keys())
def test_a_move_to_a_malformed_destination_is_refused(peers, kept, dest, needle):
    """The destination is checked before anything is offered or sent: the refusal names the
    destination and what is wrong with it."""
    to_src, to_dst = peers
    refused(to_src, [to_dst], {**valid_move(kept, GHOST), "dest": dest},
            "the destination of a move", needle)
    intact_and_serving(to_src, kept)


BAD_IDS = {  # how each field is spoiled, and what the refusal must show
    "ids a str": ("ids", lambda i: str(i), "field 'ids' of message 'move' has type str"),
    "ids an int": ("ids", lambda i: i, "field 'ids' of message 'move' has type int"),
    "ids None": ("ids", lambda i: None, "field 'ids' of message 'move' has type NoneType"),
    "ids a tuple": ("ids", lambda i: (i,), "field 'ids' of message 'move' has type tuple"),
    "ids holding a str": ("ids", lambda i: [i, "7"], "'7'"),
    "ids holding a float": ("ids", lambda i: [float(i)], "non-negative 64-bit ints"),
    "ids holding True": ("ids", lambda i: [True], "[True]"),
    "ids holding -1": ("ids", lambda i: [-1], "[-1]"),
    "ids holding 2**70": ("ids", lambda i: [2 ** 70], str(2 ** 70)),
    "ids holding a list": ("ids", lambda i: [[i]], "non-negative 64-bit ints"),
    "new_ids a str": ("new_ids", lambda i: "x", "field 'new_ids' of message 'move' has type str"),
    "new_ids holding a str": ("new_ids", lambda i: ["x"], "['x']"),
    "new_ids holding -1": ("new_ids", lambda i: [-1], "[-1]"),
    "new_ids holding 2**70": ("new_ids", lambda i: [2 ** 70], str(2 ** 70)),
    "new_ids longer": ("new_ids", lambda i: [new_id(), new_id()], "got 1 and 2"),
    "new_ids empty": ("new_ids", lambda i: [], "got 1 and 0"),
    "ids and new_ids empty": ("both", lambda i: [], "at least one; got 0 and 0"),
    "move_id a str": ("move_id", lambda i: "m1", "['m1']"),
    "move_id -1": ("move_id", lambda i: -1, "[-1]"),
}


@pytest.mark.parametrize("field, spoil, needle", BAD_IDS.values(), ids=BAD_IDS.keys())
def test_a_move_with_malformed_ids_is_refused(pair, peers, kept, field, spoil, needle):
    """The ids are checked before the destination is contacted: the destination is a real,
    reachable worker, so a case that slipped through would move the object there."""
    to_src, to_dst = peers
    msg = valid_move(kept, pair[1].ref)
    if field == "both":
        msg.update(ids=spoil(kept), new_ids=spoil(kept))
    else:
        msg[field] = spoil(kept)
    refused(to_src, [to_dst], msg, needle)
    intact_and_serving(to_src, kept)


def test_the_valid_move_the_cases_spoil_does_move(pair, peers, kept):
    """The baseline: unspoilt, the request the cases above start from moves the object (so
    their refusals are the spoilt field's doing)."""
    to_src, to_dst = peers
    msg = valid_move(kept, pair[1].ref)
    answer = to_src.ask(msg)
    assert answer["error"] is None and answer["value"] == msg["new_ids"]
    assert to_src.stats()["objects"] == 0
    intact_and_serving(to_dst, msg["new_ids"][0])


# ---------------------------------------------------------------------------------- STORE
def valid_store(obj) -> dict:
    return message(STORE, req=new_id(), origin=ORIGIN, id=new_id(), obj=obj)


def hop(**changes) -> ChainRef:
    """A well-formed chain hop with ``changes`` (``location`` changes applied to GHOST)."""
    location = changes.pop("location", GHOST)
    if isinstance(location, dict):
        location = replace(GHOST, **location)
    return replace(ChainRef(GHOST, new_id(), new_id()), location=location, **changes)


BAD_HOPS = {
    "location a str": (lambda: hop(location="tcp://127.0.0.1:1"), "must be a WorkerRef, got str"),
    "location None": (lambda: hop(location=None), "must be a WorkerRef, got NoneType"),
    "location address None": (lambda: hop(location={"address": None}), "None is not a worker address"),
    "location address 'nowhere'": (lambda: hop(location={"address": "nowhere"}),
                                   "'nowhere' is not a worker address"),
    "location address an int": (lambda: hop(location={"address": 1}), "1 is not a worker address"),
    "location id an int": (lambda: hop(location={"id": 3}), "needs a string id and incarnation"),
    "location incarnation an int": (lambda: hop(location={"incarnation": 3}),
                                    "needs a string id and incarnation"),
    "location shm a list": (lambda: hop(location={"shm": ["x"]}),
                            "shared-memory namespace that is not a string"),
    "id_at_location a str": (lambda: hop(id_at_location="5"), "a stored pointer needs integer ids"),
    "id None": (lambda: hop(id=None), "a stored pointer needs integer ids"),
    "attr an int": (lambda: hop(attr=3), "attribute must be a string"),
    "location liveness an int": (lambda: hop(location={"liveness": 5}), "bad liveness address"),
    # a hop's description reaches clients (an INFO answers its meta; a get of the hop hands
    # its owner to the client's new pointer): what no client can read is never stored
    "owning a str": (lambda: hop(owning="yes"), "a stored pointer's 'owning' must be True or False"),
    "owner a str": (lambda: hop(owner="me#1"), "a stored pointer's owner must be a worker reference"),
    "owner with an int incarnation": (lambda: hop(owner=replace(GHOST, incarnation=1)),
                                      "a stored pointer's owner must be a worker reference"),
    "meta a str": (lambda: hop(meta="4 floats"),
                   "a stored pointer's meta must be a TensorMeta or None, got str"),
    "meta shape of strs": (lambda: hop(meta=TensorMeta(("4",), torch.float32)),
                           "a stored pointer's meta has a shape that is not a tuple of sizes"),
    "meta shape negative": (lambda: hop(meta=TensorMeta(torch.Size([2]) + (-1,), torch.float32)),
                            "a stored pointer's meta has a shape that is not a tuple of sizes"),
    "meta dtype a str": (lambda: hop(meta=TensorMeta(torch.Size([4]), "float32")),
                         "a stored pointer's meta needs a torch dtype"),
    "meta requires_grad an int": (lambda: hop(meta=TensorMeta(torch.Size([4]), torch.float32, 1)),
                                  "a stored pointer's meta needs a torch dtype and a bool"),
    "meta grad a str": (lambda: hop(meta=TensorMeta(torch.Size([4]), torch.float32, True, "g")),
                        "a stored pointer's meta (its grad) must be a TensorMeta"),
    "meta grad with a grad": (lambda: hop(meta=TensorMeta(
        torch.Size([4]), torch.float32, True,
        TensorMeta(torch.Size([4]), torch.float32, False, TensorMeta(torch.Size([4]), torch.float32)))),
        "a gradient has no gradient of its own"),
}


@pytest.mark.parametrize("make, needle", BAD_HOPS.values(), ids=BAD_HOPS.keys())
def test_a_malformed_chain_hop_is_never_stored(peers, kept, make, needle):
    """A hop is used later (lease renewals, cascading deletes, forwarded commands), outside
    the message that brought it: refused on receipt, naming what is wrong, so no later tick
    trips on it."""
    to_src, to_dst = peers
    if needle.startswith("a stored pointer") or "attribute" in needle or "gradient" in needle:
        refused(to_src, [to_dst], valid_store(make()), needle)
    else:
        refused(to_src, [to_dst], valid_store(make()), "the location of a stored pointer", needle)
    intact_and_serving(to_src, kept)


def test_a_well_described_chain_hop_is_stored_and_its_meta_answered(peers):
    """The valid hop those cases spoil: stored, and an INFO answers its meta as sent."""
    to_src, _ = peers
    meta = describe(torch.ones(2, 3, requires_grad=True))
    store = valid_store(hop(meta=meta, owner=GHOST, owning=False))
    answer = to_src.ask(store)
    assert answer["error"] is None and answer["value"] is True
    info = to_src.ask(message(INFO, req=new_id(), origin=ORIGIN, ref=Ref(store["id"])))
    assert info["error"] is None and info["value"] == meta
    assert to_src.ask(message(CLEAR, req=new_id(), origin=ORIGIN))["error"] is None
    assert to_src.stats()["objects"] == 0


BAD_STORES = {
    "id a str": ({"id": "7"}, "field 'id' of message 'store' has type str"),
    "id None": ({"id": None}, "field 'id' of message 'store' has type NoneType"),
    "id a float": ({"id": 7.0}, "field 'id' of message 'store' has type float"),
    "id True": ({"id": True}, "[True]"),
    "id -1": ({"id": -1}, "[-1]"),
    "id 2**70": ({"id": 2 ** 70}, str(2 ** 70)),
    "owner an int": ({"owner": 5}, "an owner must be an incarnation string, got int"),
    "owner bytes": ({"owner": b"x#1"}, "an owner must be an incarnation string, got bytes"),
    "tags a str": ({"tags": "abc"}, "tags must be a set or list of strings, got str"),
    "tags holding ints": ({"tags": {1, 2}}, "every tag must be a string"),
    "description an int": ({"description": 5}, "a description must be a string, got int"),
}


@pytest.mark.parametrize("fields, needle", BAD_STORES.values(), ids=BAD_STORES.keys())
def test_a_store_with_malformed_fields_is_refused(peers, kept, fields, needle):
    """A store's id and owner are keys of the store and of the leases: junk is refused before
    anything is put under it."""
    to_src, to_dst = peers
    refused(to_src, [to_dst], {**valid_store(torch.ones(2)), **fields}, needle)
    intact_and_serving(to_src, kept)


# ---------------------------------------------------------------------------------- MOVE_IN
def valid_move_in(count: int = 2) -> dict:
    return message(MOVE_IN, req=new_id(), origin=ORIGIN, ids=[new_id() for _ in range(count)],
                   objs=[torch.full((2,), float(n)) for n in range(count)],
                   owners=["malformed-peer"] * count, labels=[{}] * count)


BAD_MOVE_INS = {  # each spoils the *second* object only: the first must not be stored either
    "second id a str": (lambda m: m["ids"].__setitem__(1, "x"), "'x'"),
    "second id -1": (lambda m: m["ids"].__setitem__(1, -1), "[-1]"),
    "second id 2**70": (lambda m: m["ids"].__setitem__(1, 2 ** 70), str(2 ** 70)),
    "ids twice": (lambda m: m["ids"].__setitem__(1, m["ids"][0]), "twice in the move"),
    "second owner an int": (lambda m: m["owners"].__setitem__(1, 9),
                            "an owner must be an incarnation string, got int"),
    "second label not a dict": (lambda m: m["labels"].__setitem__(1, "tags"), "labels (a dict)"),
    "one owner short": (lambda m: m["owners"].pop(), "2 ids, 2 objects, 1 owners and 2 labels"),
    "second obj a malformed hop": (lambda m: m["objs"].__setitem__(1, hop(location={"address": "x"})),
                                   "'x' is not a worker address"),
    "ids a dict": (lambda m: m.__setitem__("ids", {1: 2}),
                   "field 'ids' of message 'move_in' has type dict"),
}


@pytest.mark.parametrize("spoil, needle", BAD_MOVE_INS.values(), ids=BAD_MOVE_INS.keys())
def test_a_malformed_move_in_stores_none_of_its_objects(peers, kept, spoil, needle):
    """A move's objects arrive at its destination in one message: every one is stored, or
    none is (its source keeps its copies only if told so). One spoilt object refuses them all."""
    to_src, to_dst = peers
    msg = valid_move_in()
    spoil(msg)
    refused(to_dst, [to_src], msg, needle)
    intact_and_serving(to_src, kept)


def test_the_valid_move_in_the_cases_spoil_is_stored(peers):
    """The baseline of the cases above: unspoilt, both objects are stored."""
    _, to_dst = peers
    msg = valid_move_in()
    answer = to_dst.ask(msg)
    assert answer["error"] is None and answer["value"] is True
    assert to_dst.stats()["objects"] == 2
    got = to_dst.ask(message(GET, req=new_id(), origin=ORIGIN, refs=msg["ids"]))
    assert got["error"] is None and all(map(torch.equal, got["value"], msg["objs"]))
    to_dst.ask(message(FLUSH, req=new_id(), origin=ORIGIN, confirm=msg["ids"]))
    assert to_dst.stats()["objects"] == 0
