"""Lending received shared-memory pages, in one process: which objects may be lent
(syftzmq/worker/handover.py), and what lending and making private do to the pages
(syftzmq/wire/shm_map.py). A second mapping of a lent reference stands for the receiver."""

from __future__ import annotations

import pytest
import torch

from syftzmq.wire import serde, shm, shm_map
from syftzmq.worker import handover
from syftzmq.worker.store import ObjectStore

pytestmark = pytest.mark.skipif(not shm.enabled(), reason="no /dev/shm on this host")

MiB = 1 << 20


@pytest.fixture
def lending(monkeypatch):
    monkeypatch.setattr(shm_map, "_lending", True)
    monkeypatch.setattr(shm_map, "_max_kept", 1 << 10)


def _received(values: torch.Tensor) -> torch.Tensor:
    """``values`` as a worker holds them after receiving them through shared memory."""
    header, buffers = serde.dumps(values)
    return serde.loads(header, [shm.take(shm.export(memoryview(b))) for b in buffers])


def _lent_copy(obj) -> torch.Tensor:
    """What a receiver of ``obj`` (sent as the store offered it) maps: the same pages if lent."""
    header, buffers = serde.dumps(obj)
    return serde.loads(header, [shm.take(shm.export(memoryview(b))) for b in buffers])


def test_a_tensor_only_the_store_holds_is_lent_and_shares_its_pages(lending):
    store = ObjectStore()
    store.put(1, _received(torch.arange(float(MiB)).reshape(4, -1)), "owner")
    offered = handover.offer(store, 1)
    assert isinstance(offered, serde.Lent)
    theirs = _lent_copy(offered)
    del offered
    assert torch.equal(theirs, store.get(1))
    theirs.add_(1)  # the very same pages
    assert torch.equal(store.get(1), theirs)


@pytest.mark.parametrize("alias", ["view", "list", "detached"])
def test_a_tensor_shared_with_anything_else_is_not_lent(lending, alias):
    store = ObjectStore()
    tensor = _received(torch.arange(float(MiB)))
    store.put(1, tensor, "owner")
    other = {"view": lambda: tensor[: MiB // 2], "list": lambda: [tensor],
             "detached": lambda: tensor.detach()}[alias]()
    store.put(2, other, "owner")
    del tensor
    assert not isinstance(handover.offer(store, 1), serde.Lent)


def test_a_tensor_not_received_through_shared_memory_is_not_lent(lending):
    store = ObjectStore()
    store.put(1, torch.arange(float(MiB)), "owner")
    assert not isinstance(handover.offer(store, 1), serde.Lent)


def test_a_client_does_not_lend(monkeypatch):
    monkeypatch.setattr(shm_map, "_lending", False)
    store = ObjectStore()
    store.put(1, _received(torch.arange(float(MiB))), "owner")
    assert not isinstance(handover.offer(store, 1), serde.Lent)


def test_making_private_keeps_the_values_and_stops_the_sharing(lending):
    store = ObjectStore()
    store.put(1, _received(torch.arange(float(MiB))), "owner")
    offered = handover.offer(store, 1)
    mapping = handover.mapping_of(offered)
    theirs = _lent_copy(offered)
    del offered
    mine = store.get(1)
    mapping.make_private()
    assert torch.equal(mine, torch.arange(float(MiB)))
    theirs.add_(1)
    assert torch.equal(mine, torch.arange(float(MiB))), "a private copy saw the receiver's write"
    mine.mul_(2)
    assert torch.equal(theirs, torch.arange(float(MiB)) + 1)


def test_a_lent_reference_to_anything_but_an_unlinked_segment_is_refused(lending, tmp_path):
    import os
    from syftzmq.errors import ProtocolError
    path = tmp_path / "not-a-segment"
    path.write_bytes(b"\0" * 4096)
    fd = os.open(path, os.O_RDONLY)
    try:
        name = f"fd-{os.getpid()}-{fd}-{os.fstat(fd).st_ino}"
        with pytest.raises(ProtocolError):
            shm.take([(name, 4096)])
    finally:
        os.close(fd)
