"""The client's outbox (syftzmq/client/outbox.py) between several chain holders."""

from __future__ import annotations

import torch


def test_interleaved_commands_to_two_chain_holders(bob, alice, carol):
    """Two workers that both hold pointers (chains to carol) with commands queued for each:
    sending to one releases the other's queue first, which must not bounce back forever."""
    on_carol = [torch.ones(3).send(carol), torch.ones(3).send(carol)]
    chains = [on_carol[0].send(bob), on_carol[1].send(alice)]
    results = list(chains)
    for step in range(1, 5):
        results = [r + step for r in results]  # queued for bob, then for alice, alternately
    for result in results:
        middle = result.get()                   # a pointer on carol: the ops reached the data
        assert torch.equal(middle.get(), torch.full((3,), 11.0))
    del on_carol, chains, results
