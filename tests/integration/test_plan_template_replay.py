"""Plan calls replayed from a template stored on the worker (syftzmq.plan.replay), on real
workers: the same results as the template travelling, never a stale template, and the stored
copy deleted when what it served is gone."""

from __future__ import annotations

import copy
import gc

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import syftzmq as sy


def _steps(model, batches, lr):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for inputs, targets in batches:
        optimizer.zero_grad()
        F.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
    return model(batches[0][0]).sum()


def _batches(count: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(6, 4, generator=generator), torch.randint(0, 3, (6,), generator=generator))
            for _ in range(count)]


# Module classes of torch only: a worker cannot import this test module (a plan's function
# travels by value; a module argument's class by name).
def _leaky() -> nn.Module:
    """A module with a plain attribute (``negative_slope``) that changes what it computes."""
    return nn.Sequential(nn.Linear(4, 3), nn.LeakyReLU(0.1))


def _shared() -> nn.Module:
    """The same submodule reachable by two paths: a replay's copy must keep it shared."""
    inner = nn.Linear(4, 4)
    return nn.Sequential(inner, nn.ReLU(), inner, nn.ReLU(), nn.Linear(4, 3))


def test_replayed_calls_train_as_local_and_carry_no_template(bob):
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    local = copy.deepcopy(model)
    model.send(bob)
    data = _batches(3, seed=1)
    batches = [(x.send(bob), y.send(bob)) for x, y in data]
    plan = sy.func2plan()(_steps)
    sizes = []
    for _ in range(5):
        before = sy.stats()
        got = plan(model, batches, 0.1)
        sizes.append((sy.stats() - before).bytes_sent)
        torch.testing.assert_close(got.get(), _steps(local, data, 0.1).detach())
    # calls 1 and 2 carry the function and the template (2 stores it); 3 on name the stored one
    assert sizes[3] == sizes[4] and sizes[3] < sizes[0] / 2, sizes
    model.get()
    for got, want in zip(model.parameters(), local.parameters()):
        torch.testing.assert_close(got.data, want.data)


def test_the_call_that_stores_the_template_is_still_one_message(bob):
    x = torch.arange(3.0).send(bob)
    plan = sy.func2plan()(lambda t: t * 2)
    plan(x).get()                       # learns the result layout (a round trip)
    for _ in range(3):                  # stores the template, then replays it
        before = sy.stats()
        result = plan(x)
        used = sy.stats() - before
        assert (used.messages_sent, used.round_trips) == (1, 0)
        torch.testing.assert_close(result.get(), torch.arange(3.0) * 2)


def test_a_changed_module_attribute_is_not_replayed_stale(bob):
    torch.manual_seed(2)
    model = _leaky()
    local = copy.deepcopy(model)
    model.send(bob)
    x = torch.randn(2, 4)
    x_ptr = x.send(bob)
    forward = sy.func2plan()(lambda m, t: m(t))
    for slope in (0.1, 0.1, 0.1, 0.5, 0.5, 0.01):
        model[1].negative_slope = local[1].negative_slope = slope
        torch.testing.assert_close(forward(model, x_ptr).get(), local(x).detach())
    model.eval()                         # the training flag is in the template too
    local.eval()
    torch.testing.assert_close(forward(model, x_ptr).get(), local(x).detach())
    model.get()


def test_what_a_run_does_to_its_module_does_not_reach_the_next_run(bob):
    torch.manual_seed(3)
    model = _leaky()
    local = copy.deepcopy(model)
    model.send(bob)
    x = torch.randn(2, 4)
    x_ptr = x.send(bob)

    def steeper(m, t):
        m[1].negative_slope *= 2  # changes the worker's copy of the module, for this run only
        return m(t)

    forward = sy.func2plan()(steeper)
    want = steeper(copy.deepcopy(local), x).detach()  # from the client's slope, every time
    for _ in range(5):
        torch.testing.assert_close(forward(model, x_ptr).get(), want)
    assert model[1].negative_slope == 0.1
    model.get()


def test_a_shared_submodule_stays_shared_in_a_replay(bob):
    torch.manual_seed(4)
    model = _shared()
    local = copy.deepcopy(model)
    model.send(bob)
    data = _batches(2, seed=5)
    batches = [(x.send(bob), y.send(bob)) for x, y in data]
    plan = sy.func2plan()(_steps)
    for _ in range(4):
        torch.testing.assert_close(plan(model, batches, 0.05).get(),
                                   _steps(local, data, 0.05).detach())
    model.get()
    for got, want in zip(model.parameters(), local.parameters()):
        torch.testing.assert_close(got.data, want.data)


def test_local_tensors_and_hooks_are_never_replayed(bob):
    x_ptr = torch.ones(3).send(bob)
    add = sy.func2plan()(lambda t, offset: t + offset)
    for value in range(5):  # a local tensor's values are not in the template's key
        torch.testing.assert_close(add(x_ptr, torch.full((3,), float(value))).get(),
                                   torch.full((3,), 1.0 + value))
    torch.manual_seed(6)
    model = nn.Linear(3, 2)
    local = copy.deepcopy(model)
    for module in (model, local):
        module.register_forward_hook(lambda m, args, out: out * 2)
    model.send(bob)
    forward = sy.func2plan()(lambda m, t: m(t))
    for _ in range(4):
        torch.testing.assert_close(forward(model, x_ptr).get(), local(torch.ones(3)).detach())
    model.get()


def test_an_error_in_a_replayed_call_raises_at_the_next_observation(bob):
    @sy.func2plan()
    def checked(t):
        if (t < 0).any():
            raise ValueError("negative input to checked")
        return t * 1

    good = torch.ones(3).send(bob)
    for _ in range(3):
        checked(good).get()
    bad = (-torch.ones(3)).send(bob)
    result = checked(bad)                # replayed: nothing waits, nothing raises here
    with pytest.raises(ValueError, match="negative input to checked"):
        result.get()
    torch.testing.assert_close(checked(good).get(), torch.ones(3))


def test_the_stored_template_goes_with_the_operands_it_served(bob):
    baseline = bob.object_count()
    plan = sy.func2plan()(lambda t: t + 1)
    x = torch.zeros(2).send(bob)
    for _ in range(3):
        plan(x).get()
    assert bob.object_count() == baseline + 2  # x and the stored template
    del x
    gc.collect()
    assert bob.object_count() == baseline      # the template went with its last operand
    y = torch.zeros(2).send(bob)               # and a later call stores it again
    for _ in range(3):
        torch.testing.assert_close(plan(y).get(), torch.ones(2))
    del plan
    gc.collect()
    assert bob.object_count() == baseline + 1  # the plan gone: only y is left


def test_replayed_calls_on_a_pointer_chain_run_where_the_data_is(bob, alice):
    chain = torch.arange(3.0).send(bob).send(alice)
    plan = sy.func2plan()(lambda t, offset: t * 2 + offset)
    for offset in (1.0, 1.0, 1.0, 1.0, 2.0):
        torch.testing.assert_close(plan(chain, offset).get().get(), torch.arange(3.0) * 2 + offset)
