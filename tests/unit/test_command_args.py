"""Positional object ids in a command (``ids_at``): resolved where named, values elsewhere,
and a malformed list refused before anything runs."""

from __future__ import annotations

import pytest
import torch

from syftzmq.core.failures import Failure
from syftzmq.core.refs import Ref
from syftzmq.errors import ObjectNotFoundError, ProtocolError
from syftzmq.worker.execute import DependencyFailed, _resolve
from syftzmq.worker.store import ObjectStore


def _store() -> ObjectStore:
    store = ObjectStore()
    store.put(7, torch.ones(2), "me#1")
    store.put(8, torch.full((2,), 3.0), "me#1")
    store.put(9, Ref(7), "me#1")  # a stored object that happens to be a Ref stays one
    return store


def test_ids_at_named_positions_resolve_and_other_ints_stay_values():
    store = _store()
    (args, kwargs), stored = _resolve(store, ((7, 8, 8), {"alpha": 2}), [0, 2])
    assert torch.equal(args[0], torch.ones(2)) and args[1] == 8
    assert torch.equal(args[2], torch.full((2,), 3.0)) and kwargs == {"alpha": 2}
    assert [obj is store.get(i) for obj, i in zip(stored, (7, 8))] == [True, True]


def test_ids_at_and_refs_mix_and_a_resolved_ref_is_not_resolved_again():
    store = _store()
    (args, _), stored = _resolve(store, ((9, Ref(8)), {}), [0])
    assert args[0] == Ref(7) and torch.equal(args[1], torch.full((2,), 3.0))
    assert len(stored) == 2


def test_a_stored_failure_at_an_id_position_fails_the_command():
    store = _store()
    failure = Failure("ValueError", "earlier", "", "w")
    store.put(5, failure, "me#1")
    with pytest.raises(DependencyFailed):
        _resolve(store, ((5,), {}), [0])
    with pytest.raises(ObjectNotFoundError):
        _resolve(store, ((6,), {}), [0])


@pytest.mark.parametrize("ids_at, args", [
    ((0,), (7,)),             # not a list
    ([1], (7,)),              # out of range
    ([-1], (7,)),
    (["0"], (7,)),
    ([0], ("7",)),            # the argument there is no id
    ([0], (7.0,)),
])
def test_malformed_ids_at_is_refused(ids_at, args):
    with pytest.raises(ProtocolError):
        _resolve(_store(), (args, {}), ids_at)


def test_ids_at_with_nested_arguments_is_refused():
    with pytest.raises(ProtocolError):
        _resolve(_store(), ((7, [Ref(8)]), {}), [0])
