"""PySyft 0.2's worker API on real worker processes: ``clear_objects``, ``data=``,
``object_store`` (``_objects``, ``_tensors``, ``get_obj``), ``_tensors``, ``add_workers``,
``TorchHook(verbose=True)`` and ``local_worker.is_client_worker``."""

from __future__ import annotations

import gc
import warnings

import pytest
import torch

import syftzmq as sy
from support.workers import started_workers


# ------------------------------------------------------------------ clear_objects

def test_clear_objects_empties_the_store_returns_the_worker_and_spent_pointers_say_so(bob):
    a = torch.tensor([1.0, 2.0]).send(bob)
    b = torch.tensor([3.0]).tag("#b").send(bob)
    c = a + b
    assert bob.object_count() == 3
    assert bob.clear_objects() is bob
    assert bob.object_count() == 0 and bob.ping()["tagged"] == 0
    with pytest.raises(sy.ObjectNotFoundError, match="no object with id"):
        a.get()
    doubled = c * 2  # a command on a cleared object fails; its error shows at the next get
    with pytest.raises(sy.ObjectNotFoundError):
        doubled.get()
    del doubled  # the failure stored under its result id goes with the pointer
    gc.collect()
    assert bob.object_count() == 0
    assert bob.clear_objects(return_self=False) is None  # PySyft's keyword


def test_clear_objects_on_a_chain_holder_cascades_and_the_data_holder_keeps_what_it_does_not_own(
        bob, alice):
    chain = torch.tensor([4.0, 5.0]).send(bob).send(alice)  # bob's data is owned by alice now
    mine = torch.tensor([6.0]).send(bob)
    bob.clear_objects()
    assert bob.object_count() == 1  # only mine went; alice's pointer still needs the data
    with pytest.raises(sy.ObjectNotFoundError):
        mine.get()
    assert torch.equal((chain + 1).get().get(), torch.tensor([5.0, 6.0]))
    alice.clear_objects()  # the stored pointer goes, and with it the data it owned on bob
    assert alice.object_count() == 0  # an observation of alice waits for what it forwarded
    assert bob.object_count() == 0


# ------------------------------------------------------------------ data=

def test_data_is_stored_at_start_with_its_tags_and_found_by_search(hook):
    x11 = torch.tensor([-1, 2.0]).tag("input_data")
    x12 = torch.tensor([1, -2.0]).tag("input_data2").describe("the second")
    with started_workers(hook, "device_1", data=(x11, x12)) as (device,):
        assert sorted(t.tolist() for t in device._objects.values()) == [[-1.0, 2.0], [1.0, -2.0]]
        first = device.search("input_data")[0]  # tutorial part 8's line
        assert first.tags == {"input_data"} and first.shape == torch.Size([2])
        second = device.search("input_data2")[0]
        assert second.description == "the second"
        del first, second
        gc.collect()
        assert device.object_count() == 2  # neither data nor search pointers delete
        assert torch.equal(device.search("input_data")[0].get(), torch.tensor([-1, 2.0]))
        assert [t.tolist() for t in device._objects.values()] == [[1.0, -2.0]]


def test_data_must_be_local_tensors(hook, bob):
    with pytest.raises(TypeError, match="data= takes local tensors"):
        sy.VirtualWorker(hook, id="never_started", data=([1, 2],))
    with pytest.raises(TypeError, match="data= takes local tensors"):
        sy.VirtualWorker(hook, id="never_started", data=(torch.tensor([1]).send(bob),))
    assert "never_started" not in [h.id for h in sy.default_session()._handles.values()]


# ------------------------------------------------------------------ object_store, _tensors

def test_object_store_reads_the_workers_store(bob):
    x = torch.tensor([1.0, 2.0]).send(bob)
    chain = torch.tensor([3.0]).send(bob).send(bob)  # a stored pointer is a tensor too

    @sy.func2plan()
    def double(t):
        return t * 2
    double.build(torch.tensor([1.0]))
    plan = double.send(bob)  # stores the plan's code: an object, not a tensor

    store = bob.object_store
    objects = store._objects
    assert len(objects) == 4 and torch.equal(objects[x.id_at_location], torch.tensor([1.0, 2.0]))
    tensors = store._tensors
    assert len(tensors) == 3 and x.id_at_location in tensors
    assert set(bob._tensors) == set(tensors)
    assert any(isinstance(t, sy.PointerTensor) for t in tensors.values())
    assert torch.equal(store.get_obj(x.id_at_location), torch.tensor([1.0, 2.0]))
    assert bob.object_count() == 4  # get_obj leaves the object where it is
    missing = x.id_at_location + 1_000_001
    with pytest.raises(sy.ObjectNotFoundError,
                       match=f'^Object "{missing}" not found on worker! Worker \'bob\''):
        store.get_obj(missing)
    assert torch.equal(x.get(), torch.tensor([1.0, 2.0]))
    with pytest.raises(sy.ObjectNotFoundError, match=f'Object "{x.id_at_location}" not found'):
        store.get_obj(x.id_at_location)
    del chain, plan
    gc.collect()


# ------------------------------------------------------------------ add_workers

def test_add_workers_remembers_them_and_returns_the_worker(bob, alice, charlie):
    assert bob.add_workers([alice, charlie]) is bob
    assert bob._known_workers["alice"] is alice and bob._known_workers["charlie"] is charlie
    assert bob.add_worker(alice) is bob  # the same worker again: no warning
    stand_in = sy.Worker._for_ref(sy.default_session(), charlie.ref)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bob.add_workers([stand_in])
    assert [str(w.message) for w in caught] == [
        "Worker charlie already exists. Replacing old worker which could cause unexpected behavior"]
    assert bob._known_workers["charlie"] is stand_in
    with pytest.raises(TypeError, match="add_worker\\(\\) takes a worker"):
        bob.add_worker("dave")


# ------------------------------------------------------------------ the hook

def test_verbose_hook_prints_each_message_sent(bob, capsys):
    session = sy.default_session()
    hook = sy.TorchHook(torch, verbose=True)
    try:
        assert hook.verbose is True
        x = torch.tensor([1.0]).send(bob)
        assert torch.equal((x + 1).get(), torch.tensor([2.0]))
    finally:
        session.set_verbose(False)
    lines = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith("syftzmq: me -> bob:")]
    assert lines[0] == "syftzmq: me -> bob: store"
    assert lines[-1].startswith("syftzmq: me -> bob: get")
    assert sum("cmd" in line for line in lines) == 1  # the add, queued, then carried
    sent_before = sy.stats().messages_sent
    del x
    gc.collect()
    assert bob.object_count() == 0
    assert sy.stats().messages_sent > sent_before
    assert "syftzmq:" not in capsys.readouterr().out  # off again


def test_local_worker_is_client_worker_is_accepted(hook):
    assert hook.local_worker.is_client_worker is True
    hook.local_worker.is_client_worker = False  # tutorial part 8; the client stores nothing
    assert hook.local_worker.is_client_worker is False
    assert sy.TorchHook(torch, is_client=False).local_worker.is_client_worker is False
    assert hook.local_worker._objects == {}
