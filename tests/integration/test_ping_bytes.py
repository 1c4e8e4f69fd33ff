"""A worker's ``bytes_stored``: a PING answers it only when asked (``ping(vitals=True)``, as
``syftzmq cluster status`` asks), since it is a walk over the store and a plain PING is how
clients wait for a worker. Held here to the bytes actually stored after every way a tensor
arrives and leaves, on real worker processes."""

from __future__ import annotations

import itertools

import pytest
import torch

import syftzmq as sy

_names = itertools.count()


@pytest.fixture
def pair(hook):
    """Two fresh workers (the session's shared ones hold other tests' objects)."""
    workers = [sy.VirtualWorker(hook, id=f"bytes{next(_names)}") for _ in range(2)]
    yield workers
    for worker in workers:
        worker.shutdown()


def _stored(worker) -> tuple[int, int]:
    """(objects, bytes_stored) once everything this client sent has been applied (an
    observation flushes the deletes and commands still queued; a PING alone does not)."""
    count = worker.object_count()
    assert "bytes_stored" not in worker.ping(), "a plain PING walked the store"
    return count, worker.ping(vitals=True)["bytes_stored"]


def test_bytes_stored_follow_send_results_get_move_and_delete(pair):
    bob, alice = pair
    assert _stored(bob) == (0, 0)
    x = torch.ones(1000).send(bob)                                     # 4000 bytes
    y = x + x                                                          # a result: 4000 more
    z = torch.ones(10, dtype=torch.float64).send(bob)                  # 80
    assert _stored(bob) == (3, 8080)
    assert torch.equal(y.get(), torch.full((1000,), 2.0))              # leaves with the get
    assert _stored(bob) == (2, 4080)
    x.move(alice)                                                      # bob -> alice
    assert _stored(bob) == (1, 80) and _stored(alice) == (1, 4000)
    del z                                                              # the owner's delete
    assert _stored(bob) == (0, 0)
    bob.clear_objects()
    assert _stored(bob) == (0, 0)                                      # nothing subtracted twice
    alice.clear_objects()
    assert _stored(alice) == (0, 0)


def test_bytes_stored_count_large_sends_through_shared_memory_and_many_objects(pair):
    bob, _ = pair
    big = torch.zeros(1 << 20).send(bob)                               # 4 MiB: shared memory
    small = [torch.ones(4).send(bob) for _ in range(2000)]             # 16 bytes each
    assert _stored(bob) == (2001, (4 << 20) + 2000 * 16)
    del small[::2]
    assert _stored(bob) == (1001, (4 << 20) + 1000 * 16)
    del big, small
    assert _stored(bob) == (0, 0)
