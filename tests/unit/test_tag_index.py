"""The worker's tag index on its own: exact-string tags, AND queries, ids, and that an object
leaving the store (by any path) leaves the index too."""

from __future__ import annotations

import pytest

from syftzmq.errors import ProtocolError
from syftzmq.worker.store import ObjectStore
from syftzmq.worker.tags import TagIndex, check_tags, check_terms


def _store() -> ObjectStore:
    store = ObjectStore()
    for object_id, tags in [(1, {"#x", "#data"}), (2, {"#x"}), (3, {"#y"}), (4, set())]:
        store.put(object_id, f"obj{object_id}", "me#1")
        store.tags.add(object_id, tags)
    return store


def _search(store: ObjectStore, terms: list) -> list[int]:
    return store.tags.search(terms, lambda object_id: object_id in store)


def test_a_term_matches_its_tag_exactly_and_a_list_is_an_and():
    store = _store()
    assert _search(store, ["#x"]) == [1, 2]
    assert _search(store, ["#x", "#data"]) == [1]
    assert _search(store, ["#data", "#x"]) == [1]
    assert _search(store, ["x"]) == []  # "#" is part of the tag
    assert _search(store, ["#x", "#y"]) == []


def test_a_term_without_hits_empties_the_result_and_its_position_does_not_matter():
    store = _store()  # PySyft skipped such a term and returned the #x objects
    assert _search(store, ["#missing", "#x"]) == []
    assert _search(store, ["#x", "#missing"]) == []


def test_an_empty_query_returns_every_tagged_object_in_tagging_order():
    store = _store()
    assert _search(store, []) == [1, 2, 3]  # 4 has no tags


def test_an_id_term_names_that_object_only_and_ands_with_tags():
    store = _store()
    assert _search(store, [2]) == [2]
    assert _search(store, [4]) == [4]  # untagged, but named
    assert _search(store, [2, "#x"]) == [2]
    assert _search(store, [2, "#data"]) == []
    assert _search(store, [99]) == []  # no such object: an int is never a tag


@pytest.mark.parametrize("leave", ["delete", "take", "expired"])
def test_an_object_that_leaves_the_store_leaves_the_index(leave):
    store = _store()
    if leave == "delete":
        store.delete(1, "me#1")
    else:  # get, a completed move and lease expiry all take
        store.take(1)
    assert _search(store, ["#x"]) == [2] and _search(store, ["#data"]) == []
    assert store.tags.tags_of(1) == frozenset() and _search(store, []) == [2, 3]
    assert "#data" not in store.tags._ids_by_tag  # no empty entry stays behind


def test_a_delete_by_a_non_owner_waits_and_the_tags_stay_until_it_applies():
    store = _store()
    store.delete(1, "alice#2")  # deferred: alice does not own it (yet)
    assert _search(store, ["#data"]) == [1]
    store.fork(1, "me#1", "alice#2")  # the fork that makes the delete valid
    assert 1 not in store and _search(store, ["#data"]) == []


def test_descriptions_and_labels_carried_by_a_move():
    index = TagIndex()
    index.add(7, {"#a"}, "a description")
    index.add(8, (), "only described")
    assert index.description_of(7) == "a description"
    assert index.labels_of(7) == {"tags": {"#a"}, "description": "a description"}
    assert index.labels_of(8) == {"description": "only described"}
    assert index.labels_of(9) == {} and len(index) == 2
    index.drop(8)
    assert index.description_of(8) is None and len(index) == 1


@pytest.mark.parametrize("bad", ["#x", 3, [1], {"#x": 1}])
def test_malformed_tags_are_refused(bad):
    with pytest.raises(ProtocolError, match="tag"):
        check_tags(bad)


@pytest.mark.parametrize("bad", ["#x", [1.5], [None], [True]])
def test_malformed_queries_are_refused(bad):
    with pytest.raises(ProtocolError, match="search"):
        check_terms(bad)
