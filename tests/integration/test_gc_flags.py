"""Garbage-collection flags on pointers (PySyft 0.2's ``garbage_collection``/``gc``/
``disable_gc``, ``send(..., garbage_collect_data=False)``), and refusing any other attribute.

With GC off, dropping the pointer must leave the remote object alive — checked in the
worker's own store — and each test then deletes it explicitly, so the stores end empty.
"""

from __future__ import annotations

import gc

import pytest
import torch

import syftzmq as sy


def _release(worker, object_id: int) -> None:
    """Delete a remote object nobody points at any more (what GC would have done)."""
    sy.default_session().release(worker.ref, object_id)
    assert worker.object_count() == 0


@pytest.mark.parametrize("flag", ["garbage_collection", "gc"])
def test_gc_off_keeps_the_remote_object_after_the_pointer_dies(bob, flag):
    ptr = torch.tensor([1.0, 2.0]).send(bob)
    assert getattr(ptr, flag) is True
    setattr(ptr, flag, False)
    assert ptr.garbage_collection is False and ptr.gc is False
    object_id = ptr.id_at_location
    del ptr
    gc.collect()
    assert list(bob._objects) == [object_id]  # still there
    assert bob._objects[object_id].tolist() == [1.0, 2.0]
    _release(bob, object_id)


def test_gc_on_again_deletes_as_usual(bob):
    ptr = torch.tensor([3.0]).send(bob)
    ptr.gc = False
    ptr.gc = True
    del ptr
    gc.collect()
    assert bob.object_count() == 0


def test_disable_gc_as_property_and_as_call(bob):
    first = torch.tensor([1]).send(bob)
    assert first.disable_gc is first and first.gc is False  # PySyft's property
    second = torch.tensor([2]).send(bob)
    assert second.disable_gc() is second and second.gc is False  # the call form works too
    ids = {first.id_at_location, second.id_at_location}
    with pytest.raises(TypeError, match="not callable"):
        second(1)
    del first, second
    gc.collect()
    assert set(bob._objects) == ids
    for object_id in ids:
        sy.default_session().release(bob.ref, object_id)
    assert bob.object_count() == 0


def test_send_without_garbage_collection(bob, alice):
    ptr = torch.tensor([5.0]).send(bob, garbage_collect_data=False)
    assert ptr.gc is False
    object_id = ptr.id_at_location
    assert ptr.get().tolist() == [5.0]  # get works as usual and removes the object
    assert bob.object_count() == 0

    kept = torch.tensor([6.0]).send(bob, garbage_collect_data=False)
    object_id = kept.id_at_location
    del kept
    gc.collect()
    assert list(bob._objects) == [object_id]
    _release(bob, object_id)

    multi = torch.tensor([7.0]).send(bob, alice, garbage_collect_data=False)
    assert multi.gc is False
    ids = {name: p.id_at_location for name, p in multi.child.items()}
    del multi
    gc.collect()
    assert list(bob._objects) == [ids["bob"]] and list(alice._objects) == [ids["alice"]]
    sy.default_session().release(bob.ref, ids["bob"])
    sy.default_session().release(alice.ref, ids["alice"])
    assert bob.object_count() == 0 and alice.object_count() == 0


def test_gc_flag_of_a_tensor_sent_in_place(bob):
    x = torch.tensor([8.0])
    x.send_(bob)
    assert x.gc is True
    x.gc = False
    object_id = x.id_at_location
    del x
    gc.collect()
    assert list(bob._objects) == [object_id]
    _release(bob, object_id)


def test_setting_an_unsupported_attribute_raises_and_changes_nothing(bob):
    ptr = torch.tensor([1.0, -1.0], requires_grad=True).send(bob)
    for name in ("garbage_collect_data", "foo", "_private", "location", "shape", "id_at_location"):
        with pytest.raises(AttributeError, match=repr(name)):
            setattr(ptr, name, False)
    assert ptr.gc is True and ptr.location == bob  # nothing was stored or changed
    assert "foo" not in vars(ptr) and "garbage_collect_data" not in vars(ptr)
    ptr.tags = "#one"  # what is supported still works
    ptr.description = "kept on the pointer"
    assert ptr.tags == {"#one"} and ptr.description == "kept on the pointer"
    ptr.requires_grad = False  # a remote attribute: set on bob
    assert ptr.get().requires_grad is False
    with pytest.raises(AttributeError, match="'bar'"):
        sy.combine_pointers(torch.ones(1).send(bob)).bar = 1
    gc.collect()
