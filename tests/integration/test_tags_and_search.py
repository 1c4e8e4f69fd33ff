"""Tags and search on real workers: tags travel with ``send`` and ``move``, the worker indexes
them (and forgets them when the object leaves), ``worker.search`` matches as PySyft documents
(exact tags, AND of terms, ids, empty query) except that a term with no hits empties the
result, and ``sy.PrivateGridNetwork(...).search`` gathers per worker.

Search pointers do not garbage-collect (PySyft's choice), so each test ends with
``clear_objects()`` on the workers it used: the suite checks that every store ends empty.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

import pytest
import torch

import syftzmq as sy
from support.processes import read_lines_until, wait_until
from support.workers import ROOT, started_workers


@pytest.fixture
def clean(workers):
    """Clear every shared worker after the test (search pointers do not delete their objects)."""
    yield
    gc.collect()
    for worker in workers.values():
        worker.clear_objects()


def _ids(pointers) -> list[int]:
    return [pointer.id_at_location for pointer in pointers]


def test_tags_and_description_travel_with_send_and_search_returns_a_pointer(bob, clean):
    sent = torch.tensor([1.0, 2.0]).tag("#x", "#y").describe("two numbers").send(bob)
    assert bob.ping()["tagged"] == 1
    (found,) = bob.search("#x")
    assert found.id_at_location == sent.id_at_location
    assert found.tags == {"#x", "#y"} and found.description == "two numbers"
    assert found.location == bob and found.owner.id == "me"
    assert found.shape == torch.Size([2]) and found.dtype == torch.float32  # no round trip
    assert found.garbage_collection is False
    assert torch.equal((found * 3).get(), torch.tensor([3.0, 6.0]))  # computes where it lives
    assert torch.equal(found.get(), torch.tensor([1.0, 2.0]))
    assert bob.object_count() == 0 and bob.search("#x") == []
    assert bob.ping()["tagged"] == 0  # a get drops the object from the index


def test_tags_match_exactly(bob, clean):
    sent = torch.tensor([1]).tag("#fun").send(bob)
    assert bob.search("fun") == [] and bob.search("#Fun") == [] and bob.search("#fu") == []
    assert _ids(bob.search("#fun")) == [sent.id_at_location]


def test_a_list_or_tuple_is_an_and_and_a_missing_term_empties_the_result(bob, clean):
    both = torch.tensor([1]).tag("#x", "#y").send(bob)
    only_x = torch.tensor([2]).tag("#x").send(bob)
    only_y = torch.tensor([3]).tag("#y").send(bob)
    untagged = torch.tensor([4]).send(bob)
    assert _ids(bob.search(["#x", "#y"])) == [both.id_at_location]
    assert _ids(bob.search(("#y", "#x"))) == [both.id_at_location]
    assert _ids(bob.search("#x")) == [both.id_at_location, only_x.id_at_location]
    # PySyft skipped a term without hits, returning the #x objects here: AND means AND
    assert bob.search(["#missing", "#x"]) == [] and bob.search(["#x", "#missing"]) == []
    everything = bob.search([])
    assert _ids(everything) == [both.id_at_location, only_x.id_at_location, only_y.id_at_location]
    assert untagged.id_at_location not in _ids(everything)
    assert [p.get().item() for p in everything] == [1, 2, 3]


def test_an_object_id_term_returns_that_object_only(bob, clean):
    tagged = torch.tensor([5.0]).tag("#x").send(bob)
    untagged = torch.tensor([6.0, 7.0]).send(bob)
    (found,) = bob.search(untagged.id_at_location)
    assert found.id_at_location == untagged.id_at_location and found.shape == torch.Size([2])
    assert found.tags == set()
    assert _ids(bob.search([tagged.id_at_location, "#x"])) == [tagged.id_at_location]
    assert bob.search([untagged.id_at_location, "#x"]) == []  # and the other terms still apply
    assert bob.search(12345) == []  # no such object, and an int is never a tag


def test_search_pointers_do_not_delete_but_the_owning_pointer_still_does(bob, clean):
    sent = torch.tensor([1.0]).tag("#x").send(bob)
    found = bob.search("#x")[0]
    del found
    gc.collect()
    assert bob.object_count() == 1  # the search pointer's death deletes nothing
    del sent
    gc.collect()
    assert bob.search("#x") == [] and bob.object_count() == 0
    assert bob.ping()["tagged"] == 0  # a delete drops the object from the index


def test_a_move_carries_the_tags_and_description_to_the_destination(bob, alice, clean):
    ptr = torch.tensor([1.0, 2.0, 3.0]).tag("#moved").describe("on the road").send(bob)
    ptr.move(alice)
    assert bob.search("#moved") == [] and bob.ping()["tagged"] == 0
    (found,) = alice.search("#moved")
    assert found.id_at_location == ptr.id_at_location
    assert found.tags == {"#moved"} and found.description == "on the road"
    found.move(bob)  # a search pointer this client owns can move too
    assert alice.search("#moved") == [] and _ids(bob.search("#moved")) == [found.id_at_location]
    assert torch.equal(found.get(), torch.tensor([1.0, 2.0, 3.0]))
    assert bob.object_count() == 0 and alice.object_count() == 0


def test_tagging_a_pointer_later_stays_local(bob, clean):
    ptr = torch.tensor([1]).send(bob)
    ptr.tag("#late")
    assert ptr.tags == {"#late"}
    assert bob.search("#late") == []  # as in PySyft: the worker indexed what was sent


def test_private_grid_network_search_gathers_per_worker_and_omits_workers_without_hits(
        bob, alice, charlie, clean):
    on_bob = torch.tensor([1]).tag("#x", "#data").send(bob)
    on_alice = torch.tensor([2]).tag("#x").send(alice)
    torch.tensor([3]).tag("#other").send(charlie).disable_gc()
    grid = sy.PrivateGridNetwork(bob, alice, charlie)
    found = grid.search("#x", "#data")
    assert list(found) == ["bob"] and _ids(found["bob"]) == [on_bob.id_at_location]
    found = grid.search("#x")
    assert sorted(found) == ["alice", "bob"]
    assert _ids(found["alice"]) == [on_alice.id_at_location]
    assert found["alice"][0].location == alice
    assert sorted(grid.search()) == ["alice", "bob", "charlie"]  # no terms: everything tagged
    assert grid.search("#nowhere") == {}


@pytest.mark.parametrize("query", [1.5, [None], [["#x"]], {"#x"}, True])
def test_a_malformed_query_raises_before_anything_is_sent(bob, query):
    sent_before = sy.stats().messages_sent
    with pytest.raises(TypeError, match="a search query is"):
        bob.search(query)
    assert sy.stats().messages_sent == sent_before


# ------------------------------------------------------------------ another client's objects

OTHER_CLIENT = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {root!r})
    import syftzmq as sy
    sy.TorchHook(torch)
    key_file, address = sys.argv[1:3]
    shared = sy.Worker(None, id="shared", address=address, key_file=key_file)
    theirs = torch.tensor([10.0, 20.0]).tag("#theirs").send(shared)
    shared.ping()  # stored before READY: the other client's search may come on its heels
    print("READY", flush=True)
    sys.stdin.read()
""")


@pytest.fixture
def shared_worker(hook):
    with started_workers(hook, "shared", lease_seconds=1.0) as (worker,):
        yield worker


def test_another_clients_objects_are_found_computed_on_but_not_taken_and_leave_the_index(
        shared_worker):
    other = subprocess.Popen([sys.executable, "-c", OTHER_CLIENT.format(root=str(ROOT)),
                              sy.default_session().cluster_key_file(), shared_worker.address],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        read_lines_until(other, "READY", timeout=60)
        mine = torch.tensor([1.0]).tag("#mine").send(shared_worker)
        (theirs,) = shared_worker.search("#theirs")
        assert theirs.tags == {"#theirs"} and theirs.shape == torch.Size([2])
        assert torch.equal((theirs + 1).get(), torch.tensor([11.0, 21.0]))
        with pytest.raises(sy.ObjectGoneError, match="another process owns"):
            theirs.get()
        assert shared_worker.clear_objects() is shared_worker
        assert shared_worker.search("#mine") == []  # mine went
        assert _ids(shared_worker.search([])) == [theirs.id_at_location]  # theirs stayed
        with pytest.raises(sy.ObjectNotFoundError):
            mine.get()
        other.kill()  # no goodbye: its lease runs out and its objects go, tags included
        other.wait(10)
        wait_until(lambda: shared_worker.ping()["tagged"] == 0, 20,
                   "the dead client's tagged object freed and dropped from the index")
        assert shared_worker.search([]) == [] and shared_worker.object_count() == 0
    finally:
        other.kill()
        other.wait(10)
