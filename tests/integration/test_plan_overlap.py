"""Plan calls to different workers run at the same time: the client waits for none of them.

A FedAvg round calls one plan per worker, then moves each model to an aggregator. If a plan
call (or the move after it) waited for the worker to finish, the workers would train one after
the other and the round would cost the sum of their training times instead of the longest.
Here each plan meets the other one halfway: it leaves a marker file and waits (with a
deadline) for the other worker's marker. Both meet only if both calls were sent before either
plan finished; a client that serialized them would make the first plan give up. (The first
call for an argument signature does wait, for the result layout: each test makes it first,
with the same plain arguments, which are part of the signature.)
"""

from __future__ import annotations

import os
import time

import torch
from torch import nn

import syftzmq as sy

MEET_WITHIN_SECONDS = 20.0  # far above any scheduling delay; only a serialized call reaches it


def _meet(model: nn.Module, go: torch.Tensor, directory: str, me: str, other: str) -> torch.Tensor:
    """The plan body: with ``go`` zero, return at once (the call that learns the layout);
    else leave marker ``me`` and wait for ``other``: one if it appeared, zero on the deadline.
    ``model`` rides along so a model moved afterwards is what the plan had."""
    if go.item() == 0:
        return torch.zeros(1)
    open(os.path.join(directory, me), "w").close()
    deadline = time.monotonic() + MEET_WITHIN_SECONDS
    while not os.path.exists(os.path.join(directory, other)):
        if time.monotonic() > deadline:
            return torch.zeros(1)
        time.sleep(0.001)  # polling the condition, with the deadline above
    model.weight.data.add_(1.0)  # proof that the plan ran on the model that moves next
    return torch.ones(1)


def _send_model(worker) -> nn.Linear:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    model.send(worker)
    return model


def test_plan_calls_to_two_workers_overlap(bob, alice, tmp_path):
    meet = sy.func2plan()(_meet)
    models = {bob.id: _send_model(bob), alice.id: _send_model(alice)}
    pairs = ((bob, "bob", "alice"), (alice, "alice", "bob"))
    for worker, mine, theirs in pairs:  # first calls: each waits for its layout report
        assert meet(models[worker.id], torch.zeros(1).send(worker), str(tmp_path), mine,
                    theirs).get().item() == 0
    met = [meet(models[worker.id], torch.ones(1).send(worker), str(tmp_path), mine, theirs)
           for worker, mine, theirs in pairs]
    assert [flag.get().item() for flag in met] == [1.0, 1.0]


def test_moving_the_first_model_does_not_hold_back_the_second_plan(bob, alice, charlie,
                                                                  tmp_path):
    """The round's order: plan on bob, bob's model to the aggregator, plan on alice. The move
    waits for bob's plan on bob; the client must not wait for it before alice's call."""
    meet = sy.func2plan()(_meet)
    models = {bob.id: _send_model(bob), alice.id: _send_model(alice)}
    for worker, mine, theirs in ((bob, "bob", "alice"), (alice, "alice", "bob")):
        meet(models[worker.id], torch.zeros(1).send(worker), str(tmp_path), mine, theirs).get()
    first = meet(models[bob.id], torch.ones(1).send(bob), str(tmp_path), "bob", "alice")
    models[bob.id].move(charlie)
    second = meet(models[alice.id], torch.ones(1).send(alice), str(tmp_path), "alice", "bob")
    models[alice.id].move(charlie)
    assert (first.get().item(), second.get().item()) == (1.0, 1.0)
    torch.manual_seed(0)
    want = nn.Linear(3, 2).weight.detach() + 1.0  # each plan added one to its own copy
    for model in models.values():
        assert model.weight.location.id == charlie.id
        torch.testing.assert_close(model.weight.copy().get(), want)
