"""Plans (``sy.func2plan``): a function run on a worker as one command, on real workers."""

from __future__ import annotations

import copy
import gc

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import syftzmq as sy
from support.workers import started_workers
from syftzmq.errors import OperationRefused


@sy.func2plan()
def affine(x, y, scale=2.0):
    return x * scale + y, (x.sum(), None)


@sy.func2plan(args_shape=[(3,)])  # built at once, on zeros(3)
def checked_sqrt(x):
    if (x < 0).any():  # data-dependent Python: fine inside a plan
        raise ValueError("negative input to checked_sqrt")
    return x.sqrt()


def sgd_steps(model, batches, lr):
    """The plan body of the training tests: one SGD step per batch, made inside the plan."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for inputs, targets in batches:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), targets)
        loss.backward()
        optimizer.step()
    return loss


def _data(steps: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 5, generator=generator), torch.randint(0, 3, (8,), generator=generator))
            for _ in range(steps)]


def test_plan_result_equals_local_result(bob):
    x, y = torch.arange(4.0), torch.ones(4)
    want_sum, (want_total, none) = affine(x, y)  # local values: runs here
    assert none is None
    x_ptr, y_ptr = x.send(bob), y.send(bob)
    for _ in range(2):  # the first call learns the result layout; the second reuses it
        got_sum, (got_total, got_none) = affine(x_ptr, y_ptr)
        assert isinstance(got_sum, sy.PointerTensor) and got_none is None
        assert got_sum.shape == want_sum.shape  # shapes reported by the worker: no round trip
        torch.testing.assert_close(got_sum.get(), want_sum)
        torch.testing.assert_close(got_total.get(), want_total)
    torch.testing.assert_close(affine(x_ptr, y_ptr, scale=3.0)[0].get(), x * 3 + y)


def test_local_call_sends_nothing_and_a_repeated_call_is_one_message(bob):
    x = torch.arange(3.0)
    before = sy.stats()
    torch.testing.assert_close(checked_sqrt(x), x.sqrt())
    assert (sy.stats() - before).messages_sent == 0
    x_ptr = x.send(bob)
    checked_sqrt(x_ptr).get()  # first call with this signature
    before = sy.stats()
    result = checked_sqrt(x_ptr)
    used = sy.stats() - before
    assert (used.messages_sent, used.round_trips) == (1, 0)
    torch.testing.assert_close(result.get(), x.sqrt())


def test_training_a_sent_model_equals_local_training_step_for_step(bob):
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    local = copy.deepcopy(model)
    weight_param = model.weight
    model.send(bob)
    step = sy.func2plan()(sgd_steps)
    data = _data(4)
    for inputs, targets in data:
        remote_loss = step(model, [(inputs.send(bob), targets.send(bob))], 0.1)
        local_loss = sgd_steps(local, [(inputs, targets)], 0.1)
        torch.testing.assert_close(remote_loss.get(), local_loss.detach().requires_grad_())
        torch.testing.assert_close(model.weight.detach().get(), local.weight.detach())
        torch.testing.assert_close(model.bias.detach().get(), local.bias.detach())
    model.get()
    assert model.weight is weight_param  # the same Parameter object, now local and trained
    torch.testing.assert_close(model.weight.data, local.weight.data)
    torch.testing.assert_close(model.weight.grad, local.weight.grad)
    torch.testing.assert_close(model.bias.grad, local.bias.grad)


def test_whole_loop_plan_leaves_parameter_pointers_valid(bob):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    local = copy.deepcopy(model)
    model.send(bob)
    pointers = [p._pointer for p in model.parameters()]
    data = _data(3, seed=2)
    batches = [(x.send(bob), y.send(bob)) for x, y in data]
    train = sy.func2plan()(sgd_steps)
    train(model, batches, 0.05)
    train(model, batches, 0.05)  # the steady path: one command
    for _ in range(2):
        sgd_steps(local, data, 0.05)
    assert [p._pointer for p in model.parameters()] == pointers
    doubled = (model[0].weight * 2).get()  # an ordinary op on a parameter pointer after the plan
    torch.testing.assert_close(doubled, local[0].weight.detach() * 2)
    model.get()
    for got, want in zip(model.parameters(), local.parameters()):
        torch.testing.assert_close(got.data, want.data)


def test_grad_after_a_plan_is_asked_of_the_worker(bob):
    torch.manual_seed(3)
    x = torch.randn(4, requires_grad=True)
    x_ptr = x.send(bob)
    assert x_ptr.grad is None  # known locally: nothing ran backward yet

    @sy.func2plan()
    def backward_only(t):
        (t * t).sum().backward()

    assert backward_only(x_ptr) is None
    torch.testing.assert_close(x_ptr.grad.get(), 2 * x.detach())

    model = nn.Linear(5, 3)
    local = copy.deepcopy(model)
    model.send(bob)
    inputs, targets = _data(1, seed=4)[0]

    @sy.func2plan()
    def loss_backward(m, a, b):
        F.cross_entropy(m(a), b).backward()

    loss_backward(model, inputs.send(bob), targets.send(bob))
    F.cross_entropy(local(inputs), targets).backward()
    torch.testing.assert_close(model.weight.grad.get(), local.weight.grad)
    model.get()


def test_error_in_a_plan_raises_at_the_next_observation(bob):
    good, bad = torch.tensor([1.0, 4.0, 9.0]).send(bob), torch.tensor([1.0, -4.0, 9.0]).send(bob)
    torch.testing.assert_close(checked_sqrt(good).get(), torch.tensor([1.0, 2.0, 3.0]))
    result = checked_sqrt(bad)  # fire-and-forget: nothing raised yet
    with pytest.raises(ValueError, match="negative input") as info:
        result.get()
    assert isinstance(info.value, sy.RemoteError)
    assert info.value.remote_type == "builtins.ValueError" and info.value.worker == "bob"
    torch.testing.assert_close((good + 1).get(), torch.tensor([2.0, 5.0, 10.0]))  # bob serves on


def test_error_in_a_first_call_raises_at_the_call(bob):
    @sy.func2plan()
    def broken(x):
        return x @ x.t() @ torch.ones(7)

    x_ptr = torch.ones(2, 3).send(bob)
    with pytest.raises(RuntimeError) as info:
        broken(x_ptr)
    assert isinstance(info.value, sy.RemoteError)


def test_plan_with_pointers_on_two_workers_raises(bob, alice):
    x_ptr, y_ptr = torch.ones(3).send(bob), torch.ones(3).send(alice)
    before = sy.stats()
    with pytest.raises(sy.WorkerMismatchError, match="bob.*alice"):
        affine(x_ptr, y_ptr)
    assert (sy.stats() - before).messages_sent == 0
    model = nn.Linear(3, 2).send(alice)
    with pytest.raises(sy.WorkerMismatchError):
        sy.func2plan()(lambda m, x: m(x))(model, x_ptr)
    model.get()


def test_sent_plan_is_stored_once_and_released_with_the_plan(bob):
    def scaled(x, k):
        return x * k

    by_value = sy.func2plan()(scaled)
    stored = sy.func2plan()(scaled)
    stored.build(torch.zeros(3), 2)  # a plan is built before it is sent (PySyft's rule)
    stored = stored.send(bob)
    assert len(bob._objects) == 1
    x_ptr = torch.arange(3.0).send(bob)
    by_value(x_ptr, 2).get(), stored(x_ptr, 2).get()  # first calls learn the layout
    sizes = []
    for plan in (by_value, stored):
        before = sy.stats()
        result = plan(x_ptr, 3)
        sizes.append((sy.stats() - before).bytes_sent)
        torch.testing.assert_close(result.get(), torch.arange(3.0) * 3)
    assert sizes[1] < sizes[0]  # the stored plan's command does not carry the function
    del stored, plan  # the loop variable holds it too
    gc.collect()
    del x_ptr
    assert bob._objects == {}


def test_plan_on_a_pointer_chain_runs_where_the_data_is(bob, alice):
    chain = torch.arange(3.0).send(bob).send(alice)
    result = affine(chain, 1.0)[0]
    torch.testing.assert_close(result.get().get(), torch.arange(3.0) * 2 + 1)


@pytest.fixture(scope="module")
def safe_worker(hook):
    with started_workers(hook, "plan_safe", safe=True) as (worker,):
        yield worker


def test_safe_worker_refuses_plans_and_keeps_serving(safe_worker):
    x_ptr = torch.arange(3.0).send(safe_worker)
    with pytest.raises(OperationRefused, match="safe mode"):
        affine(x_ptr, x_ptr)
    with pytest.raises(OperationRefused, match="safe mode"):
        sy.func2plan(args_shape=[(3,)])(torch.neg).send(safe_worker)
    torch.testing.assert_close((x_ptr + 1).get(), torch.arange(3.0) + 1)

    # Even a client that skips its check gets a refusal naming the reason: the worker never
    # unpickles the function.
    safe_worker.session._safe_modes[safe_worker.ref.incarnation] = False
    try:
        with pytest.raises(sy.RemoteError, match="safe mode") as info:
            checked_sqrt(x_ptr).get()
        assert info.value.remote_type.endswith("RefusedByPolicy")
    finally:
        safe_worker.session._safe_modes[safe_worker.ref.incarnation] = True
    torch.testing.assert_close((x_ptr * 2).get(), torch.arange(3.0) * 2)
    del x_ptr, info  # the error's traceback holds the frames that held x_ptr
    gc.collect()
    assert safe_worker.object_count() == 0


def test_module_buffers_are_updated_in_place_and_the_training_flag_travels(bob):
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4))
    local = copy.deepcopy(model)
    model.send(bob)
    forward = sy.func2plan()(lambda m, x: m(x))
    inputs = torch.randn(8, 5)
    x_ptr = inputs.send(bob)
    torch.testing.assert_close(forward(model, x_ptr).get(), local(inputs))  # train mode
    model.eval()
    local.eval()
    torch.testing.assert_close(forward(model, x_ptr).get(), local(inputs))  # running stats used
    model.get()
    torch.testing.assert_close(model[1].running_mean, local[1].running_mean)
    assert int(model[1].num_batches_tracked) == 1
