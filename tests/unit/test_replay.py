"""Replayed inference with gradients: a remembered operation's results join the mirrors'
autograd graph so that ``backward()`` gives exactly the leaves the worker's backward gives a
``.grad`` — and whatever a replay could get wrong is inferred every time instead."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from syftzmq.tensor import remote_call as dispatcher
from syftzmq.tensor.inference_cache import InferenceCache
from test_inference_cache import Pointer, Session, meta


class GradSession(Session):
    uncertain = 0

    def grads_became_uncertain(self, location) -> None:
        self.uncertain += 1


@pytest.fixture
def fresh(monkeypatch) -> InferenceCache:
    replacement = InferenceCache()
    monkeypatch.setattr(dispatcher, "INFERRED", replacement)
    return replacement


def leaf(*shape: int) -> torch.Tensor:
    return meta(*shape).requires_grad_()


def step(session, batch: int, weight, bias, hidden):
    """A tiny training step's forward on pointers; returns the loss pointer."""
    x = Pointer(session, meta(batch, 4))
    target = Pointer(session, meta(batch, dtype=torch.int64))
    h = dispatcher.call_function(F.linear, (x, weight, bias), {})
    h = dispatcher.call_function(F.relu, (h,), {})
    values, _ = dispatcher.call_function(torch.max, (h, 1), {"keepdim": True})
    logits = dispatcher.call_method("__mul__", (h, values), {})
    logits = dispatcher.call_function(F.linear, (logits, hidden), {})
    return dispatcher.call_function(F.cross_entropy, (logits, target), {})


def test_a_replayed_step_gives_the_same_gradients_as_an_inferred_one(fresh):
    session = GradSession()
    grads = []
    for _ in range(3):
        weight, bias, hidden = (Pointer(session, leaf(5, 4)), Pointer(session, leaf(5)),
                                Pointer(session, leaf(3, 5)))
        frozen = Pointer(session, meta(3, 5))   # an operand without grad gets none
        loss = step(session, 8, weight, bias, hidden)
        extra = dispatcher.call_method("__add__", (loss, dispatcher.call_function(
            torch.sum, (frozen,), {})), {})
        dispatcher.call_method("backward", (extra,), {})
        grads.append([None if p._mirror.grad is None else p._mirror.grad.shape
                      for p in (weight, bias, hidden, frozen)])
        assert loss._mirror.requires_grad and not loss._mirror.is_leaf
    assert grads[0] == grads[1] == grads[2] == [torch.Size([5, 4]), torch.Size([5]),
                                                torch.Size([3, 5]), None]
    assert fresh.hits >= 12 and session.uncertain == 0


def test_gradients_accumulate_and_stop_where_the_graph_stops(fresh):
    session = GradSession()
    for _ in range(2):
        a, b = Pointer(session, leaf(3)), Pointer(session, leaf(3))
        used = dispatcher.call_method("__mul__", (a, 2), {})
        unused = dispatcher.call_method("__mul__", (b, 2), {})
        dispatcher.call_method("backward", (dispatcher.call_function(torch.sum, (used,), {}),),
                               {"retain_graph": True})
        dispatcher.call_method("backward", (dispatcher.call_function(torch.sum, (used,), {}),), {})
        assert a._mirror.grad.shape == torch.Size([3]) and b._mirror.grad is None
        assert unused._mirror.requires_grad
    assert fresh.hits > 0


def test_a_replayed_step_whose_shapes_change_is_inferred_again(fresh):
    session = GradSession()
    weight, bias, hidden = (Pointer(session, leaf(5, 4)), Pointer(session, leaf(5)),
                            Pointer(session, leaf(3, 5)))
    step(session, 8, weight, bias, hidden)
    misses = fresh.misses
    x = Pointer(session, meta(6, 4))     # a short last batch
    h = dispatcher.call_function(F.linear, (x, weight, bias), {})
    assert fresh.misses == misses + 1 and h._mirror.shape == torch.Size([6, 5])
    with pytest.raises(RuntimeError):    # a wrong shape raises as local torch does
        dispatcher.call_function(F.linear, (Pointer(session, meta(6, 7)), weight, bias), {})


@pytest.mark.parametrize("make", [
    lambda h: dispatcher.call_method("view", (h, 10), {}),                   # a view
    lambda h: dispatcher.call_function(F.relu, (h,), {"inplace": True}),     # an alias
])
def test_results_a_replay_could_not_rebuild_are_inferred_every_time(fresh, make):
    session = GradSession()
    for _ in range(2):
        w = Pointer(session, leaf(2, 5))
        h = dispatcher.call_method("__mul__", (w, 1), {})
        entries = len(fresh._entries)
        result = make(h)
        assert len(fresh._entries) == entries and result._mirror.requires_grad


# torch warns about the reference cycle backward(create_graph=True) makes; it is what is tested
@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
def test_differentiating_a_replayed_node_twice_asks_the_worker(fresh):
    session = GradSession()
    for _ in range(2):
        w = Pointer(session, leaf(3))
        loss = dispatcher.call_function(torch.sum, (dispatcher.call_method("__mul__", (w, w), {}),), {})
    assert fresh.hits == 2
    dispatcher.call_method("backward", (loss,), {"create_graph": True})
    assert session.uncertain == 1
