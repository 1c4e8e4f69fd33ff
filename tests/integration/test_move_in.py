"""What a move's destination does with the objects it is sent (``MOVE_IN``, one message for
all of them): it stores every one, with its tags, or none — so the source, which deletes its
copies only after a success, never loses an object that was refused here."""

from __future__ import annotations

import pytest
import torch

from support.hostile import RawPeer
from support.workers import started_workers
from syftzmq.core.ids import new_id
from syftzmq.core.messages import MOVE_IN, OBJECTS, SEARCH, STORE, message

pytestmark = pytest.mark.timeout(120)

SOURCE = "move-source#0001"  # the origin the hand-made moves claim


def _ask(raw: RawPeer, kind: str, **fields) -> dict:
    return raw.ask(message(kind, req=new_id(), origin=SOURCE, **fields), timeout_ms=20000)


def _stored(raw: RawPeer, *ids: int) -> dict:
    return _ask(raw, OBJECTS, ids=list(ids))["value"]


def test_a_moves_objects_are_stored_all_or_none(hook):
    with started_workers(hook, "dest") as (dest,):
        raw = RawPeer(dest.address, b"move-source")
        try:
            taken, first, second = new_id(), new_id(), new_id()
            assert _ask(raw, STORE, id=taken, obj=torch.ones(2))["error"] is None

            refused = _ask(raw, MOVE_IN, ids=[first, taken], objs=[torch.zeros(3), torch.zeros(2)],
                           owners=[SOURCE, SOURCE], labels=[{"tags": {"#moved"}}, {}])
            assert refused["error"] is not None and "already used" in refused["error"].message
            assert set(_stored(raw, first, taken)) == {taken}  # the first was not kept either
            assert torch.equal(_stored(raw, taken)[taken], torch.ones(2))

            malformed = _ask(raw, MOVE_IN, ids=[first, second], objs=[torch.zeros(3)],
                             owners=[SOURCE, SOURCE], labels=[{}, {}])
            assert malformed["error"] is not None and "per id" in malformed["error"].message
            assert _stored(raw, first, second) == {}

            stored = _ask(raw, MOVE_IN, ids=[first, second],
                          objs=[torch.full((3,), 7.0), torch.arange(4.0)],
                          owners=[SOURCE, SOURCE], labels=[{"tags": {"#moved"}}, {}])
            assert stored["error"] is None and stored["value"] is True
            found = _stored(raw, first, second)
            assert torch.equal(found[first], torch.full((3,), 7.0))
            assert torch.equal(found[second], torch.arange(4.0))
            assert [record["id"] for record in _ask(raw, SEARCH, query=["#moved"])["value"]] == [first]
        finally:
            raw.close()
