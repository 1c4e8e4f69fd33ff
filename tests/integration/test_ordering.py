"""Operations return at once; observations reflect every command issued before them."""

from __future__ import annotations

import torch

import syftzmq as sy


def test_operations_send_one_message_each_and_wait_for_nothing(bob):
    x = torch.zeros(4).send(bob)
    before = sy.stats()
    for _ in range(200):
        x = x + 1
    spent = sy.stats() - before
    assert spent.round_trips == 0
    assert spent.messages_sent <= 200 + 200  # one command each, plus batched deletes
    assert torch.equal(x.get(), torch.full((4,), 200.0))
    assert (sy.stats() - before).round_trips == 1


def test_observing_the_holder_sees_commands_forwarded_through_a_chain(bob, alice):
    """client -> alice -> bob versus client -> bob: nothing orders these paths but the flush."""
    for _ in range(5):
        p2p = torch.zeros(3).send(bob).send(alice)
        results = [p2p + i for i in range(100)]   # all forwarded by alice to bob
        assert len(bob._objects) == 101           # observed on bob directly, at once
        middles = [r.get() for r in results[:3]]
        assert [m.get().tolist() for m in middles] == [[0.0] * 3, [1.0] * 3, [2.0] * 3]
        del results, p2p
        assert bob._objects == {} and alice._objects == {}


def test_observation_flushes_the_other_workers_in_one_extra_round_trip(bob, alice):
    x = torch.ones(2).send(bob)
    y = torch.ones(2).send(alice)
    for _ in range(50):
        y = y * 2
    x = x + 1
    before = sy.stats()
    assert torch.equal(x.get(), torch.full((2,), 2.0))
    assert (sy.stats() - before).round_trips == 2       # flush alice, then get from bob
    before = sy.stats()
    assert torch.equal(y.get(), torch.full((2,), 2.0 ** 50))
    assert (sy.stats() - before).round_trips == 1       # alice is already flushed
